"""A minimal SIPREC recording client (SRC): what an SBC sends the capture server, in a few lines.

Why in the product: the demo places real calls through the SIPREC server (issue 27) so that live
monitoring, pause and "personal" can be tried without telephony. It speaks the same protocol an SBC
does, over a real socket on loopback: SIP over TCP (or TLS), an INVITE with a multipart body (SDP
offer with two ``sendonly`` labelled streams, RFC 7865 metadata), RTP/PCMU for each party, BYE. The
test suite's hand-made dialogs use ``StreamSipClient`` too. It is deliberately small: no UDP
retransmissions, no authentication, no handling of requests the server might send mid-call (the
capture server sends none on a call this short).
"""

from __future__ import annotations

import random
import re
import socket
import ssl
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from callvault.capture.siprec.rtp import ULAW

FRAME: Final = 160
"""Samples per 20 ms RTP packet at 8 kHz."""
_ULAW_ORDER: Final = np.argsort(ULAW.astype(np.int32), kind="stable")
_ULAW_SORTED: Final = ULAW.astype(np.int32)[_ULAW_ORDER]


class SipError(RuntimeError):
    """The server refused or broke the dialog; ``str(err)`` says how."""


class StreamSipClient:
    """A minimal SIP UAC over one TCP connection, or TLS when ``cafile`` is given (the server's
    certificate is then verified, IP SAN included, as an SBC would)."""

    def __init__(self, port: int, *, host: str = "127.0.0.1", cafile: Path | None = None,
                 timeout: float = 10.0) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        self.host = host
        self.tls = cafile is not None
        if cafile is not None:
            ctx = ssl.create_default_context(cafile=str(cafile))
            self.sock: socket.socket = ctx.wrap_socket(raw, server_hostname=host)
        else:
            self.sock = raw
        self.local = self.sock.getsockname()
        self.buffer = b""
        self.call_id = f"{uuid.uuid4()}@{host}"
        self.branch = 0

    def request(self, method: str, cseq: int, *, to_tag: str = "", content_type: str = "", body: str = "",
                extra: str = "") -> None:
        """Send one request in the dialog; ``body`` is written with LF and sent with CRLF."""
        self.branch += 1
        host, port = self.local[0], self.local[1]
        scheme, transport = ("sips", "TLS") if self.tls else ("sip", "TCP")
        head = (f"{method} {scheme}:srs@{self.host} SIP/2.0\r\n"
                f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK{self.call_id[:8]}{self.branch}\r\n"
                f"From: <sip:src@{host}>;tag=src1\r\nTo: <sip:srs@{self.host}>{to_tag}\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n{extra}")
        data = body.replace("\n", "\r\n").encode()
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        self.sock.sendall((head + f"Content-Length: {len(data)}\r\n\r\n").encode() + data)

    def _recv(self) -> None:
        chunk = self.sock.recv(65535)
        if not chunk:
            raise SipError("the server closed the connection")
        self.buffer += chunk

    def response(self) -> tuple[int, str, str]:
        """The next message from the server as (status, head, body)."""
        while b"\r\n\r\n" not in self.buffer:
            self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        text = head.decode()
        found = re.search(r"(?im)^(?:content-length|l)\s*:\s*(\d+)", text)
        length = int(found.group(1)) if found else 0
        while len(rest) < length:
            self.buffer = head + b"\r\n\r\n" + rest
            self._recv()
            rest = self.buffer.partition(b"\r\n\r\n")[2]
        self.buffer = rest[length:]
        return int(text.split()[1]), text, rest[:length].decode()

    def final_response(self) -> tuple[int, str, str]:
        """Skip provisional (1xx) responses."""
        status, head, body = self.response()
        while status < 200:
            status, head, body = self.response()
        return status, head, body

    def close(self) -> None:
        self.sock.close()


# -------------------------------------------------------------------------------- the SIPREC offer
@dataclass(frozen=True)
class CallParties:
    """Who the recorded call is between, as the SBC's metadata names them."""

    extension: str
    """The agent's extension (``sip:EXT@pbx``): how the capture server finds the agent."""
    agent_name: str
    caller_number: str
    """The customer's number, E.164."""
    dialled_number: str | None = None
    """The number the customer dialled (a recorded trunk), if the policy names any."""
    announced_at: datetime | None = None
    """When the consent announcement played (the IVR's evidence), if it did."""
    announcement_version: str | None = None
    """Which version of the policy's announcement prompt played: without it the announcement is no evidence
    (the call is quarantined, A5/B2)."""


def sdp_offer(media_port: int, *, host: str = "127.0.0.1") -> str:
    """Two ``sendonly`` PCMU streams, label 1 (the agent) and 2 (the caller), as an SBC offers them."""
    streams = "".join(f"m=audio {media_port + 2 * i} RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=ptime:20\na=sendonly\n"
                      f"a=label:{i + 1}\n" for i in range(2))
    return f"v=0\no=- 1 1 IN IP4 {host}\ns=callvault demo\nc=IN IP4 {host}\nt=0 0\n{streams}"


def rs_metadata(parties: CallParties) -> str:
    """RFC 7865 metadata: the agent sends label 1, the caller label 2; consent evidence as extension data."""
    evidence = ""
    if parties.announced_at is not None:
        version = parties.announcement_version
        evidence = ("    <extensiondata xmlns:cv=\"urn:callvault:siprec:1\">\n"
                    f"      <cv:announcement-played-at>{parties.announced_at.isoformat()}"
                    "</cv:announcement-played-at>\n"
                    + (f"      <cv:announcement-version>{escape(version)}</cv:announcement-version>\n"
                       if version is not None else "")
                    + "    </extensiondata>\n")
    caller_aor = quoteattr(f"sip:{parties.caller_number}@carrier.invalid")
    agent_aor = quoteattr(f"sip:{parties.extension}@pbx.invalid")
    dialled = ""
    if parties.dialled_number:
        dialled_aor = quoteattr(f"tel:{parties.dialled_number}")
        dialled = f"  <participant participant_id=\"PDIALLED\"><nameID aor={dialled_aor}/></participant>\n"
    return (
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\">\n"
        "  <datamode>complete</datamode>\n"
        f"  <session session_id=\"S1\">\n{evidence}  </session>\n"
        f"  <participant participant_id=\"PCALLER\"><nameID aor={caller_aor}/></participant>\n"
        f"  <participant participant_id=\"PAGENT\"><nameID aor={agent_aor}>"
        f"<name xml:lang=\"en\">{escape(parties.agent_name)}</name></nameID></participant>\n"
        f"{dialled}"
        "  <stream stream_id=\"STR1\" session_id=\"S1\"><label>1</label></stream>\n"
        "  <stream stream_id=\"STR2\" session_id=\"S1\"><label>2</label></stream>\n"
        "  <participantstreamassoc participant_id=\"PAGENT\"><send>STR1</send><recv>STR2</recv>"
        "</participantstreamassoc>\n"
        "  <participantstreamassoc participant_id=\"PCALLER\"><send>STR2</send><recv>STR1</recv>"
        "</participantstreamassoc>\n"
        "</recording>\n")


def multipart(sdp: str, metadata: str, boundary: str = "cvdemo") -> str:
    return (f"--{boundary}\nContent-Type: application/sdp\n\n{sdp}--{boundary}\n"
            f"Content-Type: application/rs-metadata+xml\nContent-Disposition: recording-session\n\n"
            f"{metadata}--{boundary}--\n")


# ------------------------------------------------------------------------------------------- media
def ulaw_encode(pcm: np.ndarray) -> bytes:
    """16-bit PCM → G.711 µ-law, the code whose decoded value is nearest (the product's own table)."""
    values = np.clip(pcm.astype(np.int32), -32768, 32767)
    idx = np.clip(np.searchsorted(_ULAW_SORTED, values), 1, len(_ULAW_SORTED) - 1)
    nearer_left = (values - _ULAW_SORTED[idx - 1]) <= (_ULAW_SORTED[idx] - values)
    chosen = np.where(nearer_left, idx - 1, idx)
    return bytes(_ULAW_ORDER[chosen].astype(np.uint8))


def send_rtp(host: str, ports: tuple[int, int], streams: tuple[np.ndarray, np.ndarray], *,
             stop: threading.Event) -> float:
    """Send two int16 8 kHz signals as PCMU RTP (20 ms packets, paced on the wall clock) to ``ports``.

    Stops early when ``stop`` is set (the demo is shutting down). Returns the seconds sent.
    """
    rng = random.Random()  # noqa: S311 - RTP header fields, not security
    payloads = [ulaw_encode(s) for s in streams]
    count = min(len(p) for p in payloads) // FRAME
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in ports]
    state = [[rng.randrange(1 << 16), rng.randrange(1 << 32), rng.randrange(1 << 32)] for _ in ports]
    start = time.monotonic()
    try:
        for i in range(count):
            delay = start + i * 0.02 - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return i * 0.02
            for sock, port, payload, st in zip(socks, ports, payloads, state, strict=True):
                seq, ts, ssrc = st
                header = struct.pack(">BBHII", 0x80, 0x80 if i == 0 else 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
                sock.sendto(header + payload[i * FRAME:(i + 1) * FRAME], (host, port))
                st[0], st[1] = seq + 1, ts + FRAME
    finally:
        for sock in socks:
            sock.close()
    return count * 0.02


def place_call(host: str, port: int, parties: CallParties, audio: tuple[np.ndarray, np.ndarray], *,
               stop: threading.Event, connect_timeout: float = 10.0) -> str:
    """One recorded call: INVITE (SDP + metadata), ACK, RTP for both parties, BYE.

    ``audio`` is (agent, caller), int16 at 8 kHz. Returns the SIP Call-ID (the capture server's
    recordings are named ``siprec:<Call-ID>``). Raises ``SipError`` when the server refuses the call,
    ``OSError`` when it cannot be reached.
    """
    client = StreamSipClient(port, host=host, timeout=connect_timeout)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a port pair for our (unused) media
            probe.bind((host, 0))
            media = probe.getsockname()[1] & ~1
        body = multipart(sdp_offer(media, host=client.local[0]), rs_metadata(parties))
        client.request("INVITE", 1, content_type="multipart/mixed;boundary=cvdemo", body=body,
                       extra=f"Require: siprec\r\nContact: <sip:src@{client.local[0]}:{client.local[1]};"
                             "transport=tcp>;+sip.src\r\n")
        status, head, answer = client.final_response()
        tag = re.search(r"(?im)^(?:to|t)\s*:.*(;tag=[^;\s]+)", head)
        to_tag = tag.group(1) if tag else ""
        client.request("ACK", 1, to_tag=to_tag)
        if status != 200:
            raise SipError(f"the SIPREC server answered {head.splitlines()[0]}")
        answered = [int(p) for p in re.findall(r"m=audio (\d+) RTP/AVP", answer)]
        if len(answered) < 2:
            raise SipError("the SIPREC server's answer has fewer than two audio streams")
        send_rtp(host, (answered[0], answered[1]), audio, stop=stop)
        client.request("BYE", 2, to_tag=to_tag)
        client.final_response()
        return client.call_id
    finally:
        client.close()
