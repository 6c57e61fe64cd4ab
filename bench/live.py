"""Live monitoring across processes: how soon a listener is cut off when the call turns personal, and how
late live audio arrives.

    .venv/bin/python -m bench.live [--calls 5] [--listen 2.0]

(As a module: ``bench/http.py`` would shadow the standard library's ``http`` for a script run from bench/.)

Starts the capture process (``callvault capture siprec --tap``) and the API server (``callvault serve``)
as two separate processes over one throw-away data directory, as two nodes would run. For each call it
sends a SIPREC INVITE (RFC 7865 metadata, agent extension 2001) and streams 20 ms G.711 packets to both
m-lines; a supervisor's token waits for the call in ``GET /api/v1/live/calls``, opens the listening
WebSocket with purpose ``spot_check`` and records, for ``--listen`` seconds, how late each frame arrives
(arrival time minus the wall-clock instant of its position in the call); then the agent's token POSTs
``personal`` and the time until the listener's WebSocket is closed (code 4001) is taken.

Reference, measured in the same run: the control POST's own round trip (what the cut-off costs without
the live path). The difference is the capture process's poll wait (at most 200 ms) plus the relay.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from bench.siprec import _in_dialog, _invite, _sip_exchange
from tests.support.env import wait_until_serving

POLICY = Path(__file__).resolve().parents[1] / "examples" / "policies" / "policy-a.yaml"
BOUND_CUTOFF_MS = 500
BOUND_LATENCY_MS = 1000


def _setup(root: Path) -> dict[str, str]:
    """A data directory with an agent (alice, 2001) and a supervisor (lead), both with a bearer token."""
    importlib.import_module("callvault.cli.main")
    from callvault.cli.commands import initialise
    from callvault.core.settings import load_settings
    from callvault.identity import service as identity
    from callvault.policy import service as policy_service
    from callvault.runtime import build_runtime

    settings = load_settings(root)
    initialise(settings, policy_file=POLICY, admin_user="admin", admin_password="bench-password-123")
    runtime = build_runtime(settings)
    tokens = {}
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        for name, role, ext in (("alice", "specialist", "2001"), ("lead", "support_lead", None)):
            user = identity.create_user(session, actor="bench", policy=policy, username=name, role=role,
                                        password="bench-password-123", extension=ext, team="customer_support")
            identity.acknowledge_policy(session, user=user, policy=policy)
            tokens[name] = identity.issue_token(session, user=user, ttl_seconds=3600).token
    runtime.close()
    return tokens


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stream(ports: list[int], stop: threading.Event) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytes([0xFF ^ (i & 0x7F) for i in range(160)])
    start, i = time.monotonic(), 0
    while not stop.is_set():
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for n, port in enumerate(ports):
            sock.sendto(struct.pack(">BBHII", 0x80, 0, i & 0xFFFF, (i * 160) & 0xFFFFFFFF, n) + payload,
                        ("127.0.0.1", port))
        i += 1
    sock.close()


def one_call(n: int, sip_port: int, base: str, tokens: dict[str, str], listen_s: float) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    local = sock.getsockname()[1]
    server = ("127.0.0.1", sip_port)
    sip_call_id = f"live-bench-{n}-{os.getpid()}"
    reply = _sip_exchange(sock, _invite(sip_call_id, local, sip_port), server, sip_call_id)
    if not reply.startswith("SIP/2.0 200"):
        raise RuntimeError(f"call refused: {reply.splitlines()[0]}")
    found = re.search(r"(?im)^To:.*;tag=([^;\s]+)", reply)
    assert found is not None
    tag = found.group(1)
    sock.sendto(_in_dialog("ACK", sip_call_id, 1, tag, local, sip_port), server)
    stop = threading.Event()
    sender = threading.Thread(target=_stream, args=([int(p) for p in re.findall(r"m=audio (\d+)", reply)], stop))
    sender.start()
    call_id = f"siprec:{sip_call_id}"
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            lead = {"Authorization": f"Bearer {tokens['lead']}"}
            deadline = time.monotonic() + 10
            def listed() -> bool:
                calls = http.get("/api/v1/live/calls", headers=lead).json()["calls"]
                return any(c["call_id"] == call_id for c in calls)

            while not listed():
                if time.monotonic() > deadline:
                    raise RuntimeError("the call never showed in the live view")
                time.sleep(0.05)
            url = base.replace("http://", "ws://") + f"/api/v1/live/calls/{call_id}/listen?purpose=spot_check"
            latencies: list[float] = []
            with connect(url, additional_headers=lead, max_size=1 << 20) as ws:
                hello = json.loads(ws.recv(timeout=10))
                if hello.get("type") != "hello":
                    raise RuntimeError(f"listening refused: {hello}")
                rate, started_ms = hello["rate"], hello["started_ms"]
                until = time.monotonic() + listen_s
                while time.monotonic() < until:
                    frame = ws.recv(timeout=5)
                    if isinstance(frame, bytes):
                        pos = struct.unpack_from("<I", frame, 4)[0]
                        latencies.append(time.time() * 1000 - (started_ms + pos / rate * 1000))
                agent = {"Authorization": f"Bearer {tokens['alice']}"}
                sent = time.perf_counter()
                resp = http.post(f"/api/v1/calls/{call_id}/control", json={"action": "personal"}, headers=agent)
                answered = time.perf_counter()
                resp.raise_for_status()
                ended = None
                try:
                    while True:
                        message = ws.recv(timeout=5)
                        if isinstance(message, str) and json.loads(message).get("type") == "ended":
                            ended = json.loads(message)["reason"]
                except ConnectionClosed:
                    pass
                closed = time.perf_counter()
                code = ws.close_code
    finally:
        stop.set()
        sender.join()
        _sip_exchange(sock, _in_dialog("BYE", sip_call_id, 2, tag, local, sip_port), server, sip_call_id)
        sock.close()
    latencies.sort()
    return {"cutoff_ms": (closed - sent) * 1000, "post_ms": (answered - sent) * 1000, "reason": ended, "code": code,
            "frames": len(latencies), "p50_ms": latencies[len(latencies) // 2],
            "p95_ms": latencies[int(len(latencies) * 0.95)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--listen", type=float, default=2.0, help="seconds of audio taken per call")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="callvault-bench-live-") as tmp:
        root = Path(tmp) / "data"
        tokens = _setup(root)
        env = {**os.environ, "CALLVAULT_DATA_DIR": str(root)}
        sip_port, http_port, tap_port = _free_port(socket.SOCK_DGRAM), _free_port(), _free_port()
        cli = [sys.executable, "-c", "from callvault.cli.main import main; main()"]
        capture = subprocess.Popen([*cli, "capture", "siprec", "--listen", f"127.0.0.1:{sip_port}",
                                    "--rtp-ports", "30000-30400", "--tap", f"127.0.0.1:{tap_port}"],
                                   env=env, stderr=subprocess.DEVNULL)
        api = subprocess.Popen([*cli, "serve", "--port", str(http_port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{http_port}"
        try:
            wait_until_serving(base, api)
            time.sleep(1.0)  # the capture process's start-up (policy read, sockets)
            print(f"capture process pid {capture.pid} and API server pid {api.pid}: two processes, one database; "
                  f"{os.cpu_count()} CPU cores")
            print(f"{'call':>4} {'cut-off ms':>10} {'POST ms':>8} {'frames':>7} {'lat p50':>8} {'lat p95':>8}  end")
            results = []
            for n in range(args.calls):
                r = one_call(n, sip_port, base, tokens, args.listen)
                results.append(r)
                print(f"{n:>4} {r['cutoff_ms']:>10.0f} {r['post_ms']:>8.0f} {r['frames']:>7} {r['p50_ms']:>8.0f} "
                      f"{r['p95_ms']:>8.0f}  {r['reason']} ({r['code']})", flush=True)
            cut = statistics.median(r["cutoff_ms"] for r in results)
            post = statistics.median(r["post_ms"] for r in results)
            worst = max(r["cutoff_ms"] for r in results)
            p95 = max(r["p95_ms"] for r in results)
            print(f"\ncontrol POST -> listener cut off: median {cut:.0f} ms, worst {worst:.0f} ms "
                  f"(bound {BOUND_CUTOFF_MS} ms); reference: the POST's own round trip, median {post:.0f} ms, so the "
                  f"live path adds {cut - post:.0f} ms (poll wait <= 200 ms + relay)")
            print(f"live audio arrival latency (capture -> listener): worst p95 {p95:.0f} ms; with the browser's "
                  f"150 ms jitter buffer {p95 + 150:.0f} ms (bound {BOUND_LATENCY_MS} ms)")
        finally:
            for proc in (api, capture):
                proc.terminate()
            for proc in (api, capture):
                proc.wait(60)


if __name__ == "__main__":
    main()
