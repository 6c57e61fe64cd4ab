"""SDP offers from SRCs and the SRS's answers (RFC 4566, RFC 3264 as profiled by RFC 7866).

The answer has exactly one m-line per offered m-line, in order. Audio we can decode (PCMU, PCMA,
G.722, G.729 where PyAV's FFmpeg has it, Opus) is accepted ``recvonly`` (``inactive`` when the offer
is inactive or on hold with ``c=0.0.0.0``); anything else (video, an unknown codec, SRTP without a
crypto suite we support) is refused with port 0. Labels are echoed (OpenSIPS needs them). RFC 4733
``telephone-event`` is never selected: events are not audio, so they never reach the decoder (they are
counted as ignored).

SRTP (SDES, RFC 4568): an ``RTP/SAVP`` m-line is accepted when one of its ``a=crypto`` lines uses a
suite libsrtp decrypts (``SUITES``) without MKI or session parameters that change the protection.
The answer carries the same tag and suite with a fresh key of our own (we never send, but RFC 4568
requires it); the offer's key is what decrypts the SRC's media. Keys are ``repr=False`` everywhere,
so neither a log line nor an exception message can carry them.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field
from typing import Final

MAX_SDP: Final = 16384
MAX_MEDIA: Final = 16


class SdpError(ValueError):
    """The SDP cannot be understood. ``str(err)`` is safe to send back in a reason phrase."""


def g729_available() -> bool:
    """Whether PyAV's FFmpeg can decode G.729 here (the wheels have shipped it for years; checked, not assumed)."""
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency
        return False
    return "g729" in av.codecs_available


@dataclass(frozen=True)
class Codec:
    name: str
    """Upper-case encoding name: PCMU, PCMA, G722, G729, OPUS."""
    payload_type: int
    clock_rate: int
    sample_rate: int
    """Audio samples per second we keep (G.722: 16000 on an 8000 RTP clock; Opus: decoded at 48 kHz on a
    48000 clock and kept at 16000, see rtp.py)."""

    @property
    def rtpmap(self) -> str:
        """The ``a=rtpmap`` encoding (RFC 7587 requires ``opus/48000/2`` whatever the real channels)."""
        return "opus/48000/2" if self.name == "OPUS" else f"{self.name}/{self.clock_rate}"


STATIC: Final = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000), 13: ("CN", 8000), 18: ("G729", 8000)}
SUPPORTED: Final = {"PCMU": (8000, 8000), "PCMA": (8000, 8000), "G722": (8000, 16000), "OPUS": (48000, 16000),
                    **({"G729": (8000, 8000)} if g729_available() else {})}
"""Encoding name → (RTP clock rate it must be offered with, sample rate we record it at). G.729 only
where PyAV's FFmpeg has its decoder (checked once, at import): otherwise it is refused as before."""

SUITES: Final = {
    "AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30, "AEAD_AES_128_GCM": 28, "AEAD_AES_256_GCM": 44,
}
"""SDES crypto suites pylibsrtp (libsrtp 2) can decrypt → key‖salt length in bytes (RFC 4568, RFC 7714)."""
SECURE_PROTOS: Final = ("RTP/SAVP", "RTP/SAVPF")
_HARMLESS_SESSION_PARAMS: Final = ("UNENCRYPTED_SRTCP",)
"""Session parameters that change nothing for a receiver of RTP (we ignore RTCP); any other one
(UNENCRYPTED_SRTP, UNAUTHENTICATED_SRTP, KDR, FEC_*, WSH) makes the line unusable for us."""
_LIFETIME: Final = re.compile(r"(2\^\d{1,2}|\d{1,20})")
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@dataclass(frozen=True)
class CryptoAttribute:
    """One parsed ``a=crypto`` line (RFC 4568 §9.1) we can use."""

    tag: int
    suite: str
    key: bytes = field(repr=False)
    """Master key ‖ master salt, raw bytes. Never logged, never stored."""


def parse_crypto(value: str) -> CryptoAttribute:
    """Parse the value of an ``a=crypto:`` attribute; SdpError (never quoting key material) if unusable.

    ``<tag> <suite> inline:<base64 key‖salt>[|lifetime][|MKI:len][;more keys] [session params]``.
    Multiple keys and MKIs are refused (libsrtp would need an MKI policy per key; SBCs do not send
    them for SIPREC), as are unknown suites and session parameters that weaken protection.
    """
    parts = value.split()
    if len(parts) < 3:
        raise SdpError("crypto attribute needs a tag, a suite and key parameters")
    tag_text, suite, key_params, *session_params = parts
    if not (tag_text.isascii() and tag_text.isdigit()) or len(tag_text) > 9:
        raise SdpError("crypto tag must be a number of at most 9 digits")
    length = SUITES.get(suite)
    if length is None:
        raise SdpError(f"crypto suite {suite[:40]!r} is not supported")
    for param in session_params:
        if param not in _HARMLESS_SESSION_PARAMS:
            raise SdpError(f"crypto session parameter {param.split('=')[0][:30]!r} is not supported")
    if ";" in key_params:
        raise SdpError("several master keys in one crypto attribute are not supported")
    method, sep, info = key_params.partition(":")
    if method != "inline" or not sep:
        raise SdpError("crypto key method must be inline")
    key_text, *extras = info.split("|")
    if len(extras) > 2 or any(":" in e for e in extras):
        raise SdpError("crypto keys with an MKI are not supported")
    if not all(_LIFETIME.fullmatch(e) for e in extras):
        raise SdpError("crypto key lifetime is malformed")
    if not _BASE64.fullmatch(key_text):
        raise SdpError("crypto key is not base64")
    try:
        key = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        raise SdpError("crypto key is not base64") from None
    if len(key) != length:
        raise SdpError(f"crypto key for {suite} must be {length} bytes of key and salt")
    return CryptoAttribute(int(tag_text), suite, key)


@dataclass(frozen=True)
class SrtpAgreement:
    """The crypto of one accepted SRTP stream: theirs decrypts their media, ours goes in the answer."""

    tag: int
    suite: str
    remote_key: bytes = field(repr=False)
    local_key: bytes = field(repr=False)

    def answer_line(self) -> str:
        return f"a=crypto:{self.tag} {self.suite} inline:{base64.b64encode(self.local_key).decode()}"


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
    crypto: list[CryptoAttribute] = field(default_factory=list)
    crypto_problems: list[str] = field(default_factory=list)
    """Why offered ``a=crypto`` lines could not be used (no key material in these strings)."""

    def effective_direction(self, session_direction: str | None, session_connection: str | None) -> str:
        conn = self.connection or session_connection or ""
        if _is_hold_address(conn):
            return "inactive"
        return self.direction or session_direction or "sendrecv"

    def codec_for(self, pt: int) -> Codec | None:
        name, rate = self.rtpmap.get(pt) or STATIC.get(pt, ("", 0))
        name = name.upper()
        if name in SUPPORTED and rate == SUPPORTED[name][0]:
            return Codec(name, pt, rate, SUPPORTED[name][1])
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
            elif name == "crypto" and current is not None:
                if len(current.crypto) + len(current.crypto_problems) < 16:
                    try:
                        current.crypto.append(parse_crypto(attr.strip()))
                    except SdpError as exc:
                        current.crypto_problems.append(str(exc))
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
    srtp: SrtpAgreement | None = None
    """Set for an accepted ``RTP/SAVP`` stream: its packets are decrypted before anything else."""


def plan_answer(offer: SessionDescription, ports: list[int | None]) -> list[StreamPlan]:
    """Decide each m-line: ``ports[i]`` is our receive port for stream i (None: none available)."""
    plans = []
    for i, m in enumerate(offer.media):
        port = ports[i] if i < len(ports) else None
        direction = m.effective_direction(offer.direction, offer.connection)
        if m.media != "audio":
            plans.append(StreamPlan(i, m.label, False, False, (), 0, f"{m.media} is not recorded"))
            continue
        proto = m.proto.upper()
        srtp = None
        if proto in SECURE_PROTOS:
            if not m.crypto:
                why = m.crypto_problems[0] if m.crypto_problems else "no a=crypto line"
                plans.append(StreamPlan(i, m.label, False, False, (), 0, f"SRTP without usable crypto: {why}"))
                continue
            chosen = m.crypto[0]  # the offerer's order is its preference (RFC 4568 §7.1)
            srtp = SrtpAgreement(chosen.tag, chosen.suite, chosen.key, secrets.token_bytes(len(chosen.key)))
        elif proto not in ("RTP/AVP", "RTP/AVPF"):
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
        plans.append(StreamPlan(i, m.label, True, active, tuple(codecs), port, srtp=srtp))
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
            proto = m.proto if plan.srtp is not None else "RTP/AVP"
            lines.append(f"m=audio {plan.local_port} {proto} {' '.join(str(p) for p in pts)}")
            for c in plan.codecs:
                lines.append(f"a=rtpmap:{c.payload_type} {c.rtpmap}")
            if plan.srtp is not None:
                lines.append(plan.srtp.answer_line())
            offered = m.effective_direction(offer.direction, offer.connection)
            lines.append("a=recvonly" if offered in ("sendonly", "sendrecv") else "a=inactive")
        if m.label is not None:
            lines.append(f"a=label:{m.label}")
    return ("\r\n".join(lines) + "\r\n").encode()


def channel_count(offer: SessionDescription) -> int:
    """1 when the SRC offers one audio m-line: a mixed stream (Metaswitch, BroadWorks and Oracle "mono"
    modes, mod_siprec) that cannot be split into parties, so it is stored as one channel, not as stereo
    with a silent one. 2 otherwise: left = remote party, right = agent."""
    return 1 if sum(1 for m in offer.media if m.media == "audio") == 1 else 2
