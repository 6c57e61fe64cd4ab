"""SDP offers from SRCs and the SRS's answers (RFC 4566, RFC 3264 as profiled by RFC 7866).

The answer has exactly one m-line per offered m-line, in order. Audio we can decode (PCMU, PCMA,
G.722) is accepted ``recvonly`` (``inactive`` when the offer is inactive or on hold with
``c=0.0.0.0``); anything else (video, SRTP, an unknown codec) is refused with port 0. Labels are
echoed (OpenSIPS needs them). RFC 4733 ``telephone-event`` is never selected: events are not audio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

MAX_SDP: Final = 16384
MAX_MEDIA: Final = 16


class SdpError(ValueError):
    """The SDP cannot be understood. ``str(err)`` is safe to send back in a reason phrase."""


@dataclass(frozen=True)
class Codec:
    name: str
    """Upper-case encoding name: PCMU, PCMA, G722."""
    payload_type: int
    clock_rate: int
    sample_rate: int
    """Audio samples per second after decoding (G.722: 16000 on an 8000 RTP clock)."""


STATIC: Final = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000), 13: ("CN", 8000)}
SUPPORTED: Final = {"PCMU": 8000, "PCMA": 8000, "G722": 16000}
PREFERENCE: Final = ("G722", "PCMU", "PCMA")


@dataclass
class Media:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    direction: str | None = None
    label: str | None = None
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)

    def effective_direction(self, session_direction: str | None, session_connection: str | None) -> str:
        conn = self.connection or session_connection or ""
        if _is_hold_address(conn):
            return "inactive"
        return self.direction or session_direction or "sendrecv"

    def codec_for(self, pt: int) -> Codec | None:
        name, rate = self.rtpmap.get(pt) or STATIC.get(pt, ("", 0))
        name = name.upper()
        if name in SUPPORTED and rate == 8000:
            return Codec(name, pt, rate, SUPPORTED[name])
        return None


@dataclass
class SessionDescription:
    origin: str = ""
    connection: str | None = None
    direction: str | None = None
    media: list[Media] = field(default_factory=list)


def _is_hold_address(addr: str) -> bool:
    parts = addr.split()
    return len(parts) >= 3 and parts[2].split("/")[0] in ("0.0.0.0", "::")  # noqa: S104 - hold address, not a bind


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body; SdpError names the first line that makes no sense."""
    if len(data) > MAX_SDP:
        raise SdpError("SDP too large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8") from None
    sdp = SessionDescription()
    current: Media | None = None
    seen_version = False
    for raw in re.split(r"\r?\n", text):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"malformed SDP line {line[:30]!r}")
        kind, value = line[0], line[2:]
        if kind == "v":
            seen_version = True
        elif kind == "o":
            sdp.origin = value
        elif kind == "c":
            if current is None:
                sdp.connection = value
            else:
                current.connection = value
        elif kind == "m":
            parts = value.split()
            if len(parts) < 3:
                raise SdpError(f"malformed m-line {value[:30]!r}")
            try:
                port = int(parts[1].split("/")[0])
            except ValueError:
                raise SdpError(f"malformed port in m-line {value[:30]!r}") from None
            if not 0 <= port <= 65535:
                raise SdpError(f"port out of range in m-line {value[:30]!r}")
            current = Media(parts[0].lower(), port, parts[2], parts[3:])
            sdp.media.append(current)
            if len(sdp.media) > MAX_MEDIA:
                raise SdpError("too many m-lines")
        elif kind == "a":
            name, _, attr = value.partition(":")
            name = name.strip().lower()
            if name in ("sendonly", "recvonly", "sendrecv", "inactive"):
                if current is None:
                    sdp.direction = name
                else:
                    current.direction = name
            elif name == "label" and current is not None:
                current.label = attr.strip()
            elif name == "rtpmap" and current is not None:
                m = re.match(r"^(\d+)\s+([^/\s]+)/(\d+)", attr.strip())
                if m:
                    current.rtpmap[int(m.group(1))] = (m.group(2), int(m.group(3)))
    if not seen_version:
        raise SdpError("SDP has no v= line")
    return sdp


@dataclass(frozen=True)
class StreamPlan:
    """What the answer agreed for one offered m-line."""

    index: int
    label: str | None
    accepted: bool
    active: bool
    """False when paused/inactive (media is not expected and would not be kept)."""
    codecs: tuple[Codec, ...]
    local_port: int
    reason: str = ""


def plan_answer(offer: SessionDescription, ports: list[int | None]) -> list[StreamPlan]:
    """Decide each m-line: ``ports[i]`` is our receive port for stream i (None: none available)."""
    plans = []
    for i, m in enumerate(offer.media):
        port = ports[i] if i < len(ports) else None
        direction = m.effective_direction(offer.direction, offer.connection)
        if m.media != "audio":
            plans.append(StreamPlan(i, m.label, False, False, (), 0, f"{m.media} is not recorded"))
            continue
        if m.proto.upper() not in ("RTP/AVP", "RTP/AVPF"):
            plans.append(StreamPlan(i, m.label, False, False, (), 0, f"transport {m.proto} is not supported"))
            continue
        if m.port == 0:
            plans.append(StreamPlan(i, m.label, False, False, (), 0, "stream removed by the offer"))
            continue
        codecs = []
        for fmt in m.formats:
            if fmt.isdigit() and (codec := m.codec_for(int(fmt))) is not None:
                codecs.append(codec)
        if not codecs:
            plans.append(StreamPlan(i, m.label, False, False, (), 0, "no supported audio codec offered"))
            continue
        codecs = codecs[:1]  # one codec per m-line: the SRC's first supported choice (RFC 3264 answer)
        if port is None:
            plans.append(StreamPlan(i, m.label, False, False, (), 0, "no receive port available"))
            continue
        active = direction in ("sendonly", "sendrecv")
        plans.append(StreamPlan(i, m.label, True, active, tuple(codecs), port))
    return plans


def build_answer(offer: SessionDescription, plans: list[StreamPlan], *, address: str, session_id: int,
                 version: int) -> bytes:
    """The answer SDP (application/sdp only), one m-line per offered one, in order."""
    ip_kind = "IP6" if ":" in address else "IP4"
    lines = ["v=0", f"o=callvault {session_id} {version} IN {ip_kind} {address}", "s=callvault SRS",
             f"c=IN {ip_kind} {address}", "t=0 0"]
    for m, plan in zip(offer.media, plans, strict=True):
        if not plan.accepted:
            fmts = " ".join(m.formats) or "0"
            lines.append(f"m={m.media} 0 {m.proto} {fmts}")
        else:
            pts = [c.payload_type for c in plan.codecs]
            lines.append(f"m=audio {plan.local_port} RTP/AVP {' '.join(str(p) for p in pts)}")
            for c in plan.codecs:
                lines.append(f"a=rtpmap:{c.payload_type} {c.name}/{c.clock_rate}")
            offered = m.effective_direction(offer.direction, offer.connection)
            lines.append("a=recvonly" if offered in ("sendonly", "sendrecv") else "a=inactive")
        if m.label is not None:
            lines.append(f"a=label:{m.label}")
    return ("\r\n".join(lines) + "\r\n").encode()
