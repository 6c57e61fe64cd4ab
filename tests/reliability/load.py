"""HTTP load while ingest runs: N clients loop over search, metadata and audio streaming; one more
thread uploads recordings. Shared by tests/reliability/test_load.py (20 clients, ~8 s) and
tests/soak/test_load_soak.py (100 clients)."""

from __future__ import annotations

import random
import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import LiveServer


@dataclass
class LoadResult:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"search": [], "metadata": [], "audio": []})
    errors: list[str] = field(default_factory=list)
    ingested: int = 0
    ingest_seconds: list[float] = field(default_factory=list)

    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def summary(self) -> str:
        everything = sorted(x for v in self.latencies.values() for x in v)
        parts = [f"{kind} {_pcts(sorted(v))}" for kind, v in self.latencies.items()]
        return (f"{self.requests()} requests, {len(self.errors)} errors, {self.ingested} ingested meanwhile "
                f"(upload {_pcts(sorted(self.ingest_seconds))}); all {_pcts(everything)}; " + "; ".join(parts))


def _pcts(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else [xs[0]] * 99
    return f"p50 {q[49] * 1000:.0f} ms / p95 {q[94] * 1000:.0f} ms / p99 {q[98] * 1000:.0f} ms"


def run_load(server: LiveServer, *, clients: int, seconds: float, seed_recordings: int = 5) -> LoadResult:
    result = LoadResult()
    lock = threading.Lock()
    with server.client("admin") as admin, server.client("alice") as alice:
        ids = [upload(admin, wav_bytes(1.0, seed=500 + i), metadata()).json()["id"] for i in range(seed_recordings)]
        alice_auth = str(alice.headers["Authorization"])
        admin_auth = str(admin.headers["Authorization"])
    stop = time.monotonic() + seconds
    start_gate = threading.Barrier(clients + 1)

    def reader(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=server.base_url, timeout=60, headers={"Authorization": alice_auth}) as c:
            start_gate.wait()
            while time.monotonic() < stop:
                kind = rng.choice(("search", "metadata", "audio"))
                rec = rng.choice(ids)
                t0 = time.perf_counter()
                try:
                    if kind == "search":
                        resp = c.get("/api/v1/recordings", params={"limit": 20})
                    elif kind == "metadata":
                        resp = c.get(f"/api/v1/recordings/{rec}")
                    else:
                        resp = c.get(f"/api/v1/recordings/{rec}/audio", params={"purpose": "self_review"})
                    ok = resp.status_code == 200 and (kind != "audio" or len(resp.content) > 1000)
                    detail = f"{kind} {resp.status_code} {resp.text[:200] if not ok else ''}"
                except httpx.HTTPError as exc:
                    ok, detail = False, f"{kind} {type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - t0
                with lock:
                    if ok:
                        result.latencies[kind].append(elapsed)
                    else:
                        result.errors.append(detail)

    def ingester() -> None:
        i = 0
        with httpx.Client(base_url=server.base_url, timeout=60, headers={"Authorization": admin_auth}) as c:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    resp = upload(c, wav_bytes(2.0, seed=1000 + i), metadata())
                    ok, detail = resp.status_code == 201, f"upload {resp.status_code} {resp.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, f"upload {type(exc).__name__}: {exc}"
                with lock:
                    if ok:
                        result.ingested += 1
                        result.ingest_seconds.append(time.perf_counter() - t0)
                    else:
                        result.errors.append(detail)
                i += 1

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    ingest_thread = threading.Thread(target=ingester)
    ingest_thread.start()
    for t in [*threads, ingest_thread]:
        t.join()
    return result
