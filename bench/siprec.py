"""How many concurrent two-stream G.711 SIPREC calls one capture process records without loss.

    .venv/bin/python bench/siprec.py [--start 200] [--step 200] [--max 1000] [--hold 4] [--senders 1]

Starts ``callvault capture siprec`` (one capture process, the real server: SIP, RTP receive,
G.711 decode, timeline mixer, streaming AES-256-GCM spool, recording at BYE) on loopback in a
throw-away data directory, then ramps: for each level it sets up N SIPREC calls (INVITE with
RFC 7865 metadata and two sendonly m-lines, ACK) from this process, streams 20 ms G.711 packets
to both m-lines of every call from ``--senders`` load-generator processes for ``--hold`` seconds,
reads the server's counters (packets received, sequence-gap loss, late samples, CPU seconds),
hangs up, and goes on until loss appears or the sender cannot keep pace. It prints, per level,
the packet rate, loss and the capture process's CPU, then the largest level with zero loss and
CPU per call, against the anchor of 193 G.711 calls per core (a commercial recorder's sizing page).

The reference, measured in the same run on the same packets: at the largest loss-free level the same
sender streams the same number of packets to a bare UDP receiver (uvloop when installed, else asyncio:
one datagram endpoint per m-line, counting packets and nothing else). The CPU ratio capture / bare
receiver is what SIP, the jitter timeline, decode, mixing and encryption cost on top of receiving.
The sender's own limit is reported too: its CPU per call (``time.process_time`` in the sender), so a
ramp that stops because the sender fell behind its 20 ms schedule is told apart from capture loss.

On a small machine the load generator competes with the capture process for cores; the report
says how many cores there are so the figure can be read accordingly. The default ramp (200 to 1,000
calls, 4 s each) runs in under two minutes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ANCHOR_CALLS_PER_CORE = 193
POLICY = Path(__file__).resolve().parents[1] / "examples" / "policies" / "policy-a.yaml"
METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>complete</datamode>
<participant participant_id="c"><nameID aor="sip:+16135550100@carrier"/></participant>
<participant participant_id="a"><nameID aor="sip:2001@pbx"/></participant>
<stream stream_id="s1"><label>1</label></stream><stream stream_id="s2"><label>2</label></stream>
<participantstreamassoc participant_id="c"><send>s1</send></participantstreamassoc>
<participantstreamassoc participant_id="a"><send>s2</send></participantstreamassoc>
<extensiondata><announcement-played-at>{announced}</announcement-played-at>
<announcement-version>1</announcement-version></extensiondata>
</recording>"""


def _setup_data_dir(root: Path) -> dict[str, str]:
    # The CLI's entry module first: it imports the command modules in the order they expect.
    importlib.import_module("callvault.cli.main")
    from callvault.cli.commands import initialise
    from callvault.core.settings import load_settings
    from callvault.identity import service as identity
    from callvault.policy import service as policy_service
    from callvault.runtime import build_runtime

    settings = load_settings(root)
    initialise(settings, policy_file=POLICY, admin_user="admin", admin_password="bench-password-123")
    runtime = build_runtime(settings)
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        identity.create_user(session, actor="bench", policy=policy, username="alice", role="specialist",
                             password="bench-password-123", extension="2001", team="customer_support")
    runtime.close()
    return {"CALLVAULT_DATA_DIR": str(root)}


def _metadata() -> str:
    """The call's metadata, its announcement dated now: the consent check quarantines one outside the call."""
    return METADATA.format(announced=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def _invite(call_id: str, local_port: int, server_port: int) -> bytes:
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=audio 9 RTP/AVP 0\r\na=sendonly\r\na=label:1\r\nm=audio 11 RTP/AVP 0\r\na=sendonly\r\na=label:2\r\n")
    body = (f"--b\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n--b\r\n"
            f"Content-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n"
            f"{_metadata()}\r\n--b--\r\n").encode()
    head = (f"INVITE sip:srs@127.0.0.1:{server_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:src@127.0.0.1>;tag=f{call_id}\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:src@127.0.0.1:{local_port}>;+sip.src\r\nRequire: siprec\r\n"
            f"Content-Type: multipart/mixed;boundary=b\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _in_dialog(method: str, call_id: str, cseq: int, to_tag: str, local_port: int, server_port: int) -> bytes:
    return (f"{method} sip:srs@127.0.0.1:{server_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{call_id}{method}{cseq}\r\n"
            f"From: <sip:src@127.0.0.1>;tag=f{call_id}\r\nTo: <sip:srs@127.0.0.1>;tag={to_tag}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n").encode()


def _sip_exchange(sock: socket.socket, data: bytes, server: tuple[str, int], call_id: str) -> str:
    sock.sendto(data, server)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        reply = sock.recv(65535).decode("latin-1")
        if f"Call-ID: {call_id}" in reply and reply.startswith("SIP/2.0 ") and not reply.startswith("SIP/2.0 1"):
            return reply
    raise TimeoutError(f"no final response for {call_id}")


def _sender(targets: list[int], seconds: float, counter: Any, cpu: Any) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    payload = bytes([0xFF ^ (i & 0x7F) for i in range(160)])
    pack = struct.Struct(">BBHII").pack
    addrs = [("127.0.0.1", p) for p in targets]
    start = time.monotonic()
    sent = behind = 0
    i = 0
    while True:
        due = start + i * 0.02
        now = time.monotonic()
        if now - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        elif now - due > 0.1:
            behind += 1
        seq, ts = i & 0xFFFF, (i * 160) & 0xFFFFFFFF
        for n, addr in enumerate(addrs):
            sock.sendto(pack(0x80, 0, seq, ts, n) + payload, addr)
        sent += len(addrs)
        i += 1
    with counter.get_lock():
        counter.value += sent if behind < 10 else -10**9  # a sender that fell behind invalidates the level
    with cpu.get_lock():
        cpu.value += time.process_time()


def _stats(path: Path) -> dict[str, float]:
    for _ in range(50):
        try:
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            time.sleep(0.05)
    raise RuntimeError("capture process wrote no stats")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_level(calls: int, server_port: int, stats_file: Path, pid: int, hold: float, senders: int,
              level: int) -> dict[str, float]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    local_port = sock.getsockname()[1]
    server = ("127.0.0.1", server_port)
    dialogs = []
    ports: list[int] = []
    for n in range(calls):
        call_id = f"bench-{level}-{n}"
        reply = _sip_exchange(sock, _invite(call_id, local_port, server_port), server, call_id)
        if not reply.startswith("SIP/2.0 200"):
            raise RuntimeError(f"call refused: {reply.splitlines()[0]}")
        found = re.search(r"(?im)^To:.*;tag=([^;\s]+)", reply)
        assert found is not None
        tag = found.group(1)
        ports += [int(p) for p in re.findall(r"m=audio (\d+)", reply)]
        sock.sendto(_in_dialog("ACK", call_id, 1, tag, local_port, server_port), server)
        dialogs.append((call_id, tag))
    time.sleep(1.0)
    before, cpu0, t0 = _stats(stats_file), _cpu_seconds(pid), time.monotonic()
    counter, sender_cpu = multiprocessing.Value("q", 0), multiprocessing.Value("d", 0.0)
    _send(ports, hold, senders, counter, sender_cpu)
    time.sleep(1.5)  # let the reorder window drain
    after, cpu1, t1 = _stats(stats_file), _cpu_seconds(pid), time.monotonic()
    for call_id, to_tag in dialogs:
        _sip_exchange(sock, _in_dialog("BYE", call_id, 2, to_tag, local_port, server_port), server, call_id)
    while True:  # wait until every call of this level is stored, so levels don't overlap
        now = _stats(stats_file)
        if not now["active_calls"] and now["stored"] + now["discarded"] >= now["started"]:
            break
        time.sleep(0.2)
    sent = counter.value
    received = after["packets"] - before["packets"]
    return {"calls": calls, "sent": sent, "received": received, "lost": after["lost"] - before["lost"],
            "late": after["late_samples"] - before["late_samples"], "cpu": (cpu1 - cpu0) / (t1 - t0),
            "sender_ok": sent > 0, "sender_cpu": sender_cpu.value / hold,
            # Saturated: the stats file (rewritten about once a second by the capture's housekeeping) did not
            # change over the window, or counted nothing of what was sent.
            "saturated": after["time"] == before["time"] or received <= 0 < sent}


def _send(ports: list[int], hold: float, senders: int, counter: Any, cpu: Any) -> None:
    procs = [multiprocessing.Process(target=_sender, args=(ports[i::senders], hold, counter, cpu))
             for i in range(senders)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def _raw_receiver(streams: int, conn: Any) -> None:
    """The reference: bare datagram endpoints on the same event loop the capture server would use."""
    import asyncio

    loop: asyncio.AbstractEventLoop
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    count = [0]

    class Counter(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            count[0] += 1

    async def serve() -> None:
        ports = []
        for _ in range(streams):
            transport, _protocol = await loop.create_datagram_endpoint(Counter, local_addr=("127.0.0.1", 0))
            ports.append(transport.get_extra_info("sockname")[1])
        conn.send(ports)
        while True:
            await asyncio.sleep(0.05)
            if conn.poll():
                conn.recv()
                conn.send(count[0])

    loop.run_until_complete(serve())


def run_reference(calls: int, hold: float, senders: int) -> dict[str, float]:
    """The same sender, the same packets (2 streams per call), to a bare UDP receiver: its CPU and count."""
    ours, theirs = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_raw_receiver, args=(calls * 2, theirs), daemon=True)
    proc.start()
    try:
        ports = ours.recv()
        assert proc.pid is not None
        counter, sender_cpu = multiprocessing.Value("q", 0), multiprocessing.Value("d", 0.0)
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        _send(ports, hold, senders, counter, sender_cpu)
        time.sleep(0.5)
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        ours.send("count")
        received = ours.recv()
    finally:
        proc.terminate()
        proc.join(10)
    return {"sent": counter.value, "received": received, "cpu": (cpu1 - cpu0) / (t1 - t0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=200)
    parser.add_argument("--step", type=int, default=200)
    parser.add_argument("--max", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=4.0)
    parser.add_argument("--senders", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="callvault-bench-siprec-") as tmp:
        root = Path(tmp) / "data"
        env = {**os.environ, **_setup_data_dir(root)}
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        stats_file = Path(tmp) / "stats.json"
        server = subprocess.Popen(
            [sys.executable, "-c", "from callvault.cli.main import main; main()", "capture", "siprec",
             "--listen", f"127.0.0.1:{port}", "--rtp-ports", "20000-29000", "--stats-file", str(stats_file),
             "--max-calls", str(max(args.max, 1000))],  # the admission limit (503 above it) is not what we measure
            env=env, stderr=subprocess.DEVNULL)
        try:
            _stats(stats_file)
            try:
                import uvloop  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
                loop_name = "uvloop"
            except ImportError:
                loop_name = "asyncio (uvloop not installed)"
            print(f"capture process pid {server.pid}, event loop {loop_name}, {os.cpu_count()} CPU cores on this "
                  f"machine (shared with {args.senders} load-generator process(es))")
            print(f"{'calls':>6} {'pps in':>9} {'lost':>6} {'late':>7} {'CPU %':>6} {'sender CPU %':>13}")
            best: dict[str, float] | None = None
            calls = args.start
            while calls <= args.max:
                result = run_level(calls, port, stats_file, server.pid, args.hold, args.senders, calls)
                pps = result["received"] / args.hold
                print(f"{calls:>6} {pps:>9.0f} {result['lost']:>6.0f} {result['late']:>7.0f} "
                      f"{result['cpu'] * 100:>6.1f} {result['sender_cpu'] * 100:>13.1f}", flush=True)
                if not result["sender_ok"]:
                    print("load generator fell behind its 20 ms schedule: stopping the ramp here")
                    break
                if result["saturated"]:
                    print(f"capture process saturated at {calls} calls (its stats did not count the window: no time "
                          "left for housekeeping): counts for this level are not measured")
                    break
                if result["lost"] > 0 or result["late"] > 0 or result["received"] < 0.999 * result["sent"]:
                    break
                best = result
                calls += args.step
            if best is None:
                print("loss already at the first level")
                return
            cpu_per_call = best["cpu"] / best["calls"]
            print(f"\nmax concurrent calls at 0 loss (one capture process): {best['calls']:.0f}"
                  f"{' (the top of the ramp: raise --max)' if best['calls'] + args.step > args.max else ''}")
            print(f"CPU per call: {cpu_per_call * 100:.3f}% of a core -> {1 / cpu_per_call:.0f} calls per core "
                  f"if CPU-bound (anchor: {ANCHOR_CALLS_PER_CORE} G.711 calls/core; ratio "
                  f"{(1 / cpu_per_call) / ANCHOR_CALLS_PER_CORE:.2f}; goal 1000/core)")
            sender_per_call = best["sender_cpu"] / best["calls"]
            print(f"sender's own limit: {sender_per_call * 100:.3f}% of a core per call -> about "
                  f"{args.senders / sender_per_call:.0f} calls with {args.senders} sender process(es)")
            ref = run_reference(int(best["calls"]), args.hold, args.senders)
            ref_per_call = ref["cpu"] / best["calls"]
            print(f"reference, same run and packets: bare {loop_name.split()[0]} UDP receiver received "
                  f"{ref['received']:.0f} of {ref['sent']:.0f} packets at {ref['cpu'] * 100:.1f}% CPU "
                  f"({ref_per_call * 100:.4f}% per call -> {1 / ref_per_call:.0f} calls per core)")
            print(f"ratio capture / bare receiver CPU per call: {cpu_per_call / ref_per_call:.1f}x "
                  f"(capture reaches {ref_per_call / cpu_per_call:.2f} of the bare receiver's calls per core)")
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    main()
