"""Admission, timers and TCP framing of the SIPREC server, as an SBC sees them (issue 25, points 1, 3, 7).

* A call that cannot be recorded is refused so the SBC fails over: ``503`` + ``Retry-After`` at
  capacity (a flood against a small ``max_calls``: every ``200`` is a stored recording, no ``503``
  is), ``503`` when the RTP ports run out, ``488`` for an offer with no codec we record.
* Calls that never end: media stops and no BYE comes -> ended after the RTP inactivity timeout and
  stored, the reason in its audit entry; a paused call (``a=inactive``, ``c=0.0.0.0``) is not ended by
  that timer; RFC 4028 session timers: ``Session-Expires`` answered, the call ended when no refresh came.
* TCP: a body over the limit gets ``413`` before the close; a CRLFCRLF ping gets a CRLF pong (RFC 5626).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.capture.siprec import sip
from callvault.recordings.models import Recording
from tests.siprec.dialogs import SrcCall, header, offer
from tests.siprec.support import (
    HELPER,
    SCENARIOS,
    free_media_ports,
    free_sip_port,
    running_server,
    sipp_or_skip,
    stored_recording,
)
from tests.support.env import CallvaultEnv


def _end_reason(env: CallvaultEnv, recording_id: str) -> str:
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "recording.captured",
                                                         AuditEntry.object_id == recording_id)).one()
        return str(entry.details["end"])


def _wait_stored(env: CallvaultEnv, call_id: str, timeout: float = 60.0) -> None:
    """Wait until the call's recording is in the catalog as available (the timer ended and stored it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with env.runtime.db.unit_of_work() as session:
            state = session.scalar(select(Recording.state).where(Recording.call_id == f"siprec:{call_id}"))
        if state == "available":
            return
        time.sleep(0.05)
    raise AssertionError(f"call {call_id} was never ended and stored")


def _received(trace: str, status: int) -> set[str]:
    """Call-IDs of the INVITEs sipp got a ``status`` final response to (from its ``-trace_msg`` log)."""
    found = set()
    for block in trace.split("-" * 47 + " ")[1:]:
        lines = [line for line in block.splitlines()[1:] if line.strip()]
        if len(lines) < 2 or "message received" not in lines[0] or not lines[1].startswith(f"SIP/2.0 {status} "):
            continue
        text = "\n".join(lines[1:])
        if header(text, "CSeq") is not None and "INVITE" in (header(text, "CSeq") or ""):
            call_id = header(text, "Call-ID") or header(text, "i")
            assert call_id is not None
            found.add(call_id)
    return found


def test_a_flood_beyond_the_admission_limit_gets_503_and_every_200_is_stored(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    sipp = sipp_or_skip()
    runtime = isolated_env.runtime
    calls = 16
    with running_server(runtime, rtp_base=34000, max_calls=3) as server:
        cmd = [sipp, "-sf", str(SCENARIOS / "flood_admission.xml"), "-m", str(calls), "-r", "4", "-l", str(calls),
               "-i", "127.0.0.1", "-p", str(free_sip_port()), "-mp", str(free_media_ports()), "-t", "t1",
               "-nostdin", "-timeout", "120", "-timeout_error", "-key", "python", sys.executable,
               "-key", "helper", str(HELPER), "-trace_msg", "-trace_err", f"127.0.0.1:{server.port}"]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
        assert proc.returncode == 0, f"sipp failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        server.wait_idle(60)
        refused_metric = server.manager.snapshot()["refused_capacity"]
    trace = next(tmp_path.glob("*_messages.log")).read_text(errors="replace")
    answered, refused = _received(trace, 200), _received(trace, 503)
    assert len(answered) + len(refused) == calls and not answered & refused
    # At 4 calls/s of 1.6 s each, more than 3 overlap: some are refused, and calls are admitted again as others end.
    assert refused, "no INVITE was refused although more calls than the limit overlapped"
    assert len(answered) > 3
    stored = {rec.row.call_id for rec in stored_recording(runtime)}
    assert stored == {f"siprec:{cid}" for cid in answered}, "a 200 without a recording, or a 503 with one"
    assert refused_metric == len(refused)
    assert "Retry-After: " in trace


def test_503_when_the_rtp_ports_run_out_and_488_for_an_unsupported_codec(isolated_env: CallvaultEnv) -> None:
    runtime = isolated_env.runtime
    # One call's worth of ports: two even ports in [rtp_base, rtp_base + 5).
    with running_server(runtime, rtp_base=34600, rtp_ports=(34600, 34605)) as server:
        ilbc = SrcCall(server.port)
        status, head, body = ilbc.invite(offer(formats="97", rtpmap="97 iLBC/8000"))
        assert status == 488 and "codec" in (header(head, "Warning") or "")
        first = SrcCall(server.port)
        assert first.invite(offer())[0] == 200
        second = SrcCall(server.port)
        status, head, body = second.invite(offer())
        assert status == 503 and header(head, "Retry-After") is not None and not body
        snapshot = server.manager.snapshot()
        assert first.in_dialog("BYE")[0] == 200
        for call in (first, second, ilbc):
            call.close()
        server.wait_idle()
    assert snapshot["refused_capacity"] == 1 and snapshot["refused_media"] == 1


def test_a_call_whose_media_stops_without_bye_is_ended_and_stored(isolated_env: CallvaultEnv) -> None:
    runtime = isolated_env.runtime
    with running_server(runtime, rtp_base=34700, rtp_timeout=2.0) as server:
        call = SrcCall(server.port)
        assert call.invite(offer())[0] == 200
        call.send_media(1.5)
        server.wait_idle(60)  # ends when the timer fires; no BYE is ever sent
        assert call.in_dialog("BYE")[0] == 481, "the SBC's late BYE must find the dialog gone"
        call.close()
    [rec] = stored_recording(runtime)
    assert rec.row.duration_seconds >= 1.0
    assert _end_reason(isolated_env, rec.row.id) == "rtp timeout"


def test_paused_calls_are_not_ended_by_the_inactivity_timer(isolated_env: CallvaultEnv) -> None:
    runtime = isolated_env.runtime
    with running_server(runtime, rtp_base=34800, rtp_timeout=2.0) as server:
        inactive = SrcCall(server.port)
        assert inactive.invite(offer(direction="inactive"))[0] == 200
        held = SrcCall(server.port)  # BroadWorks-style pause: c=0.0.0.0
        assert held.invite(offer(address="0.0.0.0"))[0] == 200
        # The witness: a call placed after both, whose media stops. When the timer has ended it, the paused
        # calls have been silent for longer than the timeout.
        witness = SrcCall(server.port)
        assert witness.invite(offer())[0] == 200
        witness.send_media(1.0)
        _wait_stored(isolated_env, witness.client.call_id)
        assert witness.in_dialog("BYE")[0] == 481
        # The paused calls are still up: resuming one records again, and both end with the SBC's BYE.
        assert inactive.in_dialog("INVITE", sdp=offer(version=2))[0] == 200
        assert held.in_dialog("BYE")[0] == 200
        assert inactive.in_dialog("BYE")[0] == 200
        for call in (inactive, held, witness):
            call.close()
        server.wait_idle()


def test_session_timer_is_answered_and_the_call_ends_when_no_refresh_comes(isolated_env: CallvaultEnv) -> None:
    runtime = isolated_env.runtime
    with running_server(runtime, rtp_base=34900, min_session_expires=1) as server:
        call = SrcCall(server.port)
        started = time.monotonic()
        status, head, _ = call.invite(offer(), extra="Supported: timer\r\nSession-Expires: 6;refresher=uac\r\n")
        assert status == 200
        assert (header(head, "Session-Expires") or "").replace(" ", "") == "6;refresher=uac"
        assert "timer" in (header(head, "Require") or "")
        call.send_media(1.0)
        refreshed = time.monotonic() - started
        status, head, _ = call.in_dialog("UPDATE", extra="Supported: timer\r\nSession-Expires: 6;refresher=uac\r\n")
        assert status == 200 and (header(head, "Session-Expires") or "").startswith("6")
        server.wait_idle(60)  # no BYE, no further refresh
        assert call.in_dialog("BYE")[0] == 481
        call.close()
    [rec] = stored_recording(runtime)
    assert _end_reason(isolated_env, rec.row.id) == "session expired"
    # Ended no sooner than the refresh's interval less min(32 s, a third) after the refresh.
    assert rec.row.duration_seconds >= refreshed + 4.0 - 0.3


def test_session_expires_below_the_minimum_gets_422_with_min_se(isolated_env: CallvaultEnv) -> None:
    with running_server(isolated_env.runtime, rtp_base=35000) as server:
        call = SrcCall(server.port)
        status, head, _ = call.invite(offer(), extra="Supported: timer\r\nSession-Expires: 30\r\n")
        assert status == 422 and header(head, "Min-SE") == "90"
        call.close()


def _raw_tcp(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=20)


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65535):
        data += chunk
    return data


def test_tcp_body_over_the_limit_gets_413_then_the_connection_closes(isolated_env: CallvaultEnv) -> None:
    with running_server(isolated_env.runtime, rtp_base=35100) as server:
        sock = _raw_tcp(server.port)
        local = sock.getsockname()
        head = (f"INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local[0]}:{local[1]};branch=z9hG4bKbig1\r\n"
                f"From: <sip:src@127.0.0.1>;tag=a\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: {uuid.uuid4()}\r\n"
                f"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n"
                f"Content-Length: {sip.MAX_MESSAGE + 1}\r\n\r\n")
        sock.sendall(head.encode() + b"v=0\r\n" * 100)
        answer = _read_until_closed(sock).decode("latin-1")
        sock.close()
    assert answer.startswith("SIP/2.0 413 "), answer[:200]
    assert "branch=z9hG4bKbig1" in answer and "CSeq: 1 INVITE" in answer


def test_tcp_crlf_ping_gets_a_crlf_pong(isolated_env: CallvaultEnv) -> None:
    with running_server(isolated_env.runtime, rtp_base=35200) as server:
        sock = _raw_tcp(server.port)
        sock.sendall(b"\r\n\r\n")
        assert sock.recv(16) == b"\r\n"
        # A ping split over two segments, then a request on the same connection: still one pong, and the
        # request answered after it.
        sock.sendall(b"\r\n")
        sock.sendall(b"\r\n")
        assert sock.recv(16) == b"\r\n"
        local = sock.getsockname()
        sock.sendall((f"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\n"
                      f"Via: SIP/2.0/TCP {local[0]}:{local[1]};branch=z9hG4bKo1\r\n"
                      f"From: <sip:p@127.0.0.1>;tag=p\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: {uuid.uuid4()}\r\n"
                      f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode())
        assert sock.recv(65535).startswith(b"SIP/2.0 200 ")
        sock.close()


@pytest.fixture(autouse=True)
def _need_sipp() -> None:
    sipp_or_skip()


def test_a_process_whose_event_loop_falls_behind_refuses_new_calls_with_503_until_it_catches_up(
        isolated_env: CallvaultEnv) -> None:
    """A saturated capture process (more calls than its core can mix) would answer 200 and then drop packets
    it never read: it refuses new INVITEs with 503 while its event loop runs late, so the SBC fails over."""
    with running_server(isolated_env.runtime, rtp_base=34700, max_loop_lag=0.5) as server:
        server.loop.call_soon_threadsafe(time.sleep, 1.5)  # the loop does nothing else for 1.5 s
        deadline = time.monotonic() + 30
        while server.manager.snapshot()["loop_lag"] < 1.0:
            assert time.monotonic() < deadline, "the housekeeping never measured the loop's delay"
            time.sleep(0.05)
        late = SrcCall(server.port)
        status, head, body = late.invite(offer())
        assert status == 503 and not body, status
        assert "event loop" in (header(head, "Warning") or "") and header(head, "Retry-After") is not None
        assert server.manager.snapshot()["refused_capacity"] == 1
        while server.manager.snapshot()["loop_lag"] >= 0.5:  # caught up: the window of late ticks has passed
            assert time.monotonic() < deadline, "the measured delay never went back down"
            time.sleep(0.05)
        fresh = SrcCall(server.port)
        assert fresh.invite(offer())[0] == 200
        assert fresh.in_dialog("BYE")[0] == 200
        for call in (late, fresh):
            call.close()
        server.wait_idle()
