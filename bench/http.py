"""HTTP throughput and tail latency of search and metadata under 100 concurrent clients.

    .venv/bin/python -m bench.http [--count 100000] [--clients 100] [--seconds 10] [--think-ms 1000]
                                   [--database-url URL]

Starts the real server (`callvault serve` in its own process(es), ``--server-workers``) on loopback
over a catalog of ``count`` recordings; 100 concurrent keep-alive clients then request
``GET /api/v1/recordings?agent=…`` and ``GET /api/v1/recordings/{id}`` for ``seconds`` each, in two
ways:

* **saturation**: every client sends its next request the moment the last one is answered (no
  think time). This finds the most the server does per second; with 100 clients always waiting,
  latency is queueing (Little's law: mean = 100 / throughput), so p99 here mostly says how many
  cores the machine has.
* **with think time**: every client waits ``--think-ms`` (uniformly 0.5 to 1.5 times that) between its
  requests, as people at a search page do; latency is then the server's own answer time under
  that load.

Reference in the same run: the same clients against ``/healthz`` (routing + one SELECT 1), the
floor this server and client pair can reach. Target: p99 <= 200 ms.

Clients: ``--client wrk`` (the default when Debian's ``wrk`` is installed: the connections come
from a C load generator in its own process, so the load costs the server's cores little; think time
is wrk's ``delay()`` hook) or ``--client threads`` (Python threads with httpx in this process:
portable, but the clients then take much of the CPU the server would use).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import select

from bench.catalog import AGENTS, catalog
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.recordings.models import Recording
from callvault.runtime import Runtime
from tests.support.env import _free_port, wait_until_serving


def hammer(base: str, token: str, paths: list[str], clients: int, seconds: float,
           think_ms: float = 0.0) -> tuple[int, list[float]]:
    """``clients`` threads, each a keep-alive connection, requesting random ``paths`` for ``seconds``.

    Threads with blocking clients rather than one asyncio client: httpx's asyncio pool became the
    bottleneck at 100 connections (measured: it, not the server, capped the rate).
    """
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                resp = client.get(rng.choice(paths))
                resp.raise_for_status()
                mine.append((time.perf_counter() - start) * 1000)
                if think_ms:
                    time.sleep(think_ms * rng.uniform(0.5, 1.5) / 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return len(latencies), latencies


WRK_SCRIPT = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], {["Authorization"] = "Bearer %s"})
end
%s
"""

WRK_QUANTILES = """
done = function(summary, latency, requests)
  for q = 1, 1000 do
    io.write(string.format("quantile %d %d\\n", q, latency:percentile(q / 10)))
  end
end
"""
"""Appended to every wrk script: each run prints its latency at every 0.1 % quantile, so runs against
several nodes at once are merged from these, weighted by their request counts."""

THINK = """
delay = function()
  return math.random(%d, %d)
end
"""


def hammer_wrk(bases: list[str], token: str, paths: list[str], clients: int, seconds: float,
               think_ms: float = 0.0) -> tuple[int, float, float]:
    """``wrk`` with ``clients`` connections over ``paths`` in turn; (requests, p50 ms, p99 ms).

    With several ``bases`` (nodes), one ``wrk`` per node runs at the same time with an equal share of
    the connections, as a least-connections load balancer keeps them; the percentiles are those of
    all requests together."""
    shuffled = random.Random(1).sample(paths, len(paths))
    think = THINK % (int(think_ms * 0.5), int(think_ms * 1.5)) if think_ms else ""
    script = WRK_SCRIPT % (", ".join(f'"{p}"' for p in shuffled), token, think)
    return run_wrk(bases, lambda _node: script, clients, seconds)


@contextmanager
def serve_nodes(runtime: Runtime, workers: list[int]) -> Iterator[list[str]]:
    """``callvault serve`` processes over ``runtime``'s database and data dir, one per entry of ``workers``
    (its ``--workers``), each on its own loopback port; yields their base URLs once all answer, and
    stops them afterwards."""
    env = {**os.environ, "CALLVAULT_DATABASE_URL": runtime.settings.database_url}
    ports = [_free_port() for _ in workers]
    servers = [subprocess.Popen(
        [str(Path(sys.executable).parent / "callvault"), "serve", "--port", str(port), "--workers", str(count),
         "--data-dir", str(runtime.settings.data_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port, count in zip(ports, workers, strict=True)]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base, server in zip(bases, servers, strict=True):
            wait_until_serving(base, server)
        yield bases
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=60)


def run_wrk(bases: list[str], script_for: Callable[[int], str], clients: int, seconds: float,
            threads_per_node: int | None = None) -> tuple[int, float, float]:
    """One ``wrk`` per node (``script_for(node index)``), all at once; (requests, p50 ms, p99 ms).

    Exits naming the output when any request was answered with an error."""
    share = max(1, clients // len(bases))
    threads = threads_per_node or min(2 if len(bases) == 1 else 1, share)
    scripts = []
    try:
        for node in range(len(bases)):
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
                script.write(script_for(node) + WRK_QUANTILES)
            scripts.append(script.name)
        runs = [subprocess.Popen(["wrk", "-t", str(threads), "-c", str(share), "-d", f"{seconds:g}s", "--timeout",
                                  "30s", "-s", name, base],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for base, name in zip(bases, scripts, strict=True)]
        outs = [run.communicate()[0] for run in runs]
    finally:
        for name in scripts:
            os.unlink(name)
    weighted: list[tuple[float, float]] = []  # (latency ms, share of all requests)
    total = 0
    for out in outs:
        if "Non-2xx" in out or "requests in" not in out or re.search(r"Socket errors:.*timeout [1-9]", out):
            raise SystemExit(f"errors under load:\n{out[:3000]}")
        total += int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    for out in outs:
        done = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
        quantiles = [int(us) / 1000 for us in re.findall(r"^quantile \d+ (\d+)$", out, re.MULTILINE)]
        weighted += [(ms, done / total / len(quantiles)) for ms in quantiles]
    weighted.sort()

    def percentile(fraction: float) -> float:
        seen = 0.0
        for ms, weight in weighted:
            seen += weight
            if seen >= fraction - 1e-9:
                return ms
        return weighted[-1][0]

    return total, percentile(0.50), percentile(0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--think-ms", type=float, default=1000.0,
                        help="each client's pause between requests in the second pass (0: skip that pass)")
    parser.add_argument("--client", choices=["wrk", "threads"], default="wrk" if shutil.which("wrk") else "threads")
    parser.add_argument("--server-workers", type=int, default=os.cpu_count() or 1, help="server processes")
    parser.add_argument("--nodes", action="store_true",
                        help="as deploy/ runs it: --server-workers single-process `serve` nodes, each on its own "
                             "port, the clients split evenly across them (nginx least_conn); default: one "
                             "`serve --workers N`, whose processes share one listening socket")
    args = parser.parse_args()
    with catalog(args.count, args.database_url) as (runtime, _):
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            user = identity.create_user(session, actor="bench", policy=policy, username="lead",
                                        role="support_lead", password="quiet-harbour-bench-7")
            identity.acknowledge_policy(session, user=user, policy=policy)
            token = identity.issue_token(session, user=user, ttl_seconds=3600).token
            ids = list(session.scalars(select(Recording.id).limit(500)))
        layout = [1] * args.server_workers if args.nodes else [args.server_workers]
        with serve_nodes(runtime, layout) as bases:
            cases = {
                "reference /healthz": ["/healthz"],
                "search by agent": [f"/api/v1/recordings?agent={a}&limit=50" for a, _ in AGENTS],
                "recording metadata": [f"/api/v1/recordings/{i}" for i in ids],
            }
            print(f"database: {runtime.db.dialect}; catalog {args.count:,}; {args.clients} concurrent clients; "
                  f"{args.seconds:g} s per case; {args.server_workers} server process(es)"
                  f"{' as single-process nodes, clients split evenly' if args.nodes else ' of one serve'}; "
                  f"clients: {args.client}")
            passes = [("saturation (no think time)", 0.0)]
            if args.think_ms:
                passes.append((f"think time {args.think_ms:g} ms (0.5-1.5x)", args.think_ms))
            for title, think_ms in passes:
                print(f"-- {title}")
                results = {}
                for name, paths in cases.items():
                    if args.client == "wrk":
                        done, p50, p99 = hammer_wrk(bases, token, paths, args.clients, args.seconds, think_ms)
                    else:
                        if args.nodes:
                            raise SystemExit("--nodes needs --client wrk")
                        done, lat = hammer(bases[0], token, paths, args.clients, args.seconds, think_ms)
                        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
                    rps = done / args.seconds
                    results[name] = (rps, p99)
                    ref_rps, ref_p99 = results["reference /healthz"]
                    ratio = (f"  ({rps / ref_rps:.2f} of reference req/s; p99 {p99 / ref_p99:.1f}x)"
                             if name != "reference /healthz" else "")
                    print(f"{name:22s} {rps:8.0f} req/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms{ratio}")
    print("target: p99 <= 200 ms")


if __name__ == "__main__":
    main()
