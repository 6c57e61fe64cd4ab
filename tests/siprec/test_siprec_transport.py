"""SIPREC transports and hosting: a real INVITE over TLS, and the server started by ``callvault serve``.

Debian's sipp is built without TLS (``-t l1`` is refused), so the TLS peer is a small SIP client on
Python's ``ssl`` that verifies the server's certificate, as an SBC would, and sends a real SIPREC
INVITE, ACK and BYE over one TLS connection, with RTP from rtp_send.py.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.siprec.support import (
    HELPER,
    StreamSipClient,
    dominant_frequency,
    free_port,
    free_sip_port,
    running_server,
    stored_recording,
)
from tests.support.certs import self_signed
from tests.support.env import CallvaultEnv

METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="S1=="/>
  <participant participant_id="PC"><nameID aor="sip:+16135550100@carrier.example"/></participant>
  <participant participant_id="PA"><nameID aor="sip:2001@pbx.example"/></participant>
  <stream stream_id="T1" session_id="S1=="><label>1</label></stream>
  <stream stream_id="T2" session_id="S1=="><label>2</label></stream>
  <participantstreamassoc participant_id="PA"><send>T1</send></participantstreamassoc>
  <participantstreamassoc participant_id="PC"><send>T2</send></participantstreamassoc>
</recording>
"""


def test_siprec_call_over_tls_is_recorded(isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    runtime = isolated_env.runtime
    cert, key = self_signed(tmp_path)
    media = free_port()
    sdp = (f"v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
           f"m=audio {media} RTP/AVP 0\na=sendonly\na=label:1\n"
           f"m=audio {media + 2} RTP/AVP 0\na=sendonly\na=label:2\n")
    body = (f"--b1\nContent-Type: application/sdp\n\n{sdp}--b1\nContent-Type: application/rs-metadata+xml\n"
            f"Content-Disposition: recording-session\n\n{METADATA}--b1--\n")
    with running_server(runtime, rtp_base=38000, tls=(cert, key)) as server:
        assert server.tls_port is not None
        client = StreamSipClient(server.tls_port, cafile=cert)
        client.request("INVITE", 1, content_type="multipart/mixed;boundary=b1", body=body,
                       extra="Require: siprec\r\nContact: <sip:src@127.0.0.1;transport=tls>;+sip.src\r\n")
        status, head, answer = client.response()
        while status < 200:
            status, head, answer = client.response()
        assert status == 200
        contact = re.search(r"(?im)^contact:\s*(.+)$", head).group(1)  # type: ignore[union-attr]
        assert f":{server.tls_port};transport=tls" in contact and "+sip.srs" in contact
        to_tag = re.search(r"(?im)^to:.*(;tag=[^;\s]+)", head).group(1)  # type: ignore[union-attr]
        ports = re.findall(r"m=audio (\d+) RTP/AVP", answer)
        client.request("ACK", 1, to_tag=to_tag)
        subprocess.run([sys.executable, str(HELPER), "127.0.0.1", ports[0], ports[1], "2.5", "440", "1000"],
                       check=True, timeout=30)
        client.request("BYE", 2, to_tag=to_tag)
        assert client.response()[0] == 200
        client.sock.close()
        server.wait_idle()
    [rec] = stored_recording(runtime)
    assert rec.row.agent == "alice" and 2.0 <= rec.row.duration_seconds <= 4.5
    talk = slice(int(0.3 * rec.rate), int(2.0 * rec.rate))
    assert abs(dominant_frequency(rec.audio[talk, 0], rec.rate) - 1000) < 20
    assert abs(dominant_frequency(rec.audio[talk, 1], rec.rate) - 440) < 20


def _options(port: int, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
        msg = (f"OPTIONS sip:srs@127.0.0.1:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex[:12]}\r\n"
               f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: {uuid.uuid4()}\r\n"
               f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), ("127.0.0.1", port))
        try:
            return s.recvfrom(65535)[0]
        except TimeoutError:
            return None


def _wait_options(port: int, seconds: float) -> bytes | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = _options(port, 0.5)
        if reply is not None:
            return reply
    return None


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _capture_child(serve_pid: int) -> int | None:
    for pid in _children(serve_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"capture" in cmdline and b"siprec" in cmdline:
            return pid
    return None


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find the supervised child")
def test_callvault_serve_starts_and_supervises_the_siprec_server(isolated_env: CallvaultEnv) -> None:
    sip_port, http_port = free_sip_port(), free_sip_port()
    env = {**os.environ, **isolated_env.cli_env, "CALLVAULT_SIPREC_LISTEN": f"127.0.0.1:{sip_port}",
           "CALLVAULT_SIPREC_RTP_PORTS": "39000-39100"}
    serve = subprocess.Popen([sys.executable, "-c", "from callvault.cli.main import main; main()", "serve",
                              "--no-workers", "--port", str(http_port)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        reply = _wait_options(sip_port, 40)
        assert reply is not None and reply.startswith(b"SIP/2.0 200"), "serve did not start the SIPREC server"
        first = _capture_child(serve.pid)
        assert first is not None
        os.kill(first, signal.SIGKILL)  # a crash: the supervisor starts a new one
        time.sleep(0.5)
        assert _wait_options(sip_port, 40) is not None, "the SIPREC server was not restarted"
        second = _capture_child(serve.pid)
        assert second is not None and second != first
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    assert _options(sip_port, 1.0) is None, "stopping serve must stop the SIPREC server too"
    assert second is not None and not Path(f"/proc/{second}").exists()
