"""SIP messages for a recording server: tolerant parsing, exact serialising, TCP framing, bodies.

Only what an SRS (RFC 7866) needs. Parsing is tolerant where real SRCs deviate (compact header
names, no space after the colon, bare LF line ends, parameters on content types, multipart parts
in any order) and strict where a mistake would mislead us (no request line, no Call-ID/CSeq/Via,
a Content-Length that disagrees with the datagram). Every problem is a ``SipParseError`` whose
message can go into a ``400`` reason phrase; nothing here raises anything else on hostile input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

MAX_MESSAGE: Final = 65535
"""Largest SIP message accepted (UDP reads are 64 KiB; TCP messages are held to the same bound)."""
MAX_HEADERS: Final = 200
MAX_PARTS: Final = 8

COMPACT: Final = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length", "c": "content-type",
    "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via", "o": "event", "u": "allow-events",
    "r": "refer-to", "b": "referred-by", "x": "session-expires", "a": "accept-contact", "j": "reject-contact",
    "d": "request-disposition", "y": "identity",
}
_CANONICAL: Final = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "mime-version": "MIME-Version",
}
_REQUEST_LINE: Final = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_STATUS_LINE: Final = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?$")
_TOKEN: Final = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")


class SipParseError(ValueError):
    """The bytes are not a SIP message we can act on. ``str(err)`` is safe to send back."""


def canonical_name(name: str) -> str:
    low = name.strip().lower()
    low = COMPACT.get(low, low)
    return _CANONICAL.get(low, "-".join(p.capitalize() for p in low.split("-")))


@dataclass
class SipMessage:
    """A request (``method`` set) or a response (``status`` set). Header names are canonical."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name)
        for n, v in self.headers:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (not inside quotes or <>)."""
        key = canonical_name(name)
        out: list[str] = []
        for n, v in self.headers:
            if n == key:
                out.extend(split_list(v))
        return out

    def set(self, name: str, value: str) -> None:
        key = canonical_name(name)
        self.headers = [(n, v) for n, v in self.headers if n != key]
        self.headers.append((key, value))

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        raw = self.get("CSeq") or ""
        num, _, method = raw.strip().partition(" ")
        return int(num), method.strip().upper()

    @property
    def branch(self) -> str:
        via = self.get_all("Via")
        return param(via[0], "branch") or "" if via else ""

    @property
    def content_type(self) -> str:
        """Lower-case media type without parameters (``application/sdp``)."""
        return media_type(self.get("Content-Type") or "")

    def to_bytes(self) -> bytes:
        first = f"{self.method} {self.uri} SIP/2.0" if self.is_request else f"SIP/2.0 {self.status} {self.reason}"
        lines = [first]
        lines += [f"{n}: {v}" for n, v in self.headers if n != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and angle brackets."""
    parts: list[str] = []
    depth = 0
    quoted = False
    cur: list[str] = []
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        if ch == "," and not quoted and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    tail = "".join(cur).strip()
    if tail:
        parts.append(tail)
    return [p for p in parts if p]


def media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def param(value: str, name: str) -> str | None:
    """A ``;name=value`` parameter outside the ``<...>`` URI (``;name`` alone gives ``""``)."""
    outside = value.rsplit(">", 1)[-1] if ">" in value else value
    for piece in outside.split(";")[1:]:
        key, eq, val = piece.partition("=")
        if key.strip().lower() == name.lower():
            return val.strip().strip('"') if eq else ""
    return None


def has_param_anywhere(value: str, name: str) -> bool:
    """True if ``;name`` occurs as a parameter inside or outside the URI (Avaya puts +sip.src inside)."""
    return any(piece.split("=", 1)[0].strip().lower() == name.lower()
               for piece in re.split(r"[;>]", value)[1:])


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            other = data.find(b"\n\n" if sep == b"\r\n\r\n" else b"\r\n\r\n")
            if other >= 0 and other < idx:  # the other separator occurs first
                sep2 = b"\n\n" if sep == b"\r\n\r\n" else b"\r\n\r\n"
                return data[:other], data[other + len(sep2):]
            return data[:idx], data[idx + len(sep):]
    return data, b""


def parse_headers(head: str) -> list[tuple[str, str]]:
    """Header lines (with folding) into canonical (name, value) pairs; SipParseError on garbage."""
    headers: list[tuple[str, str]] = []
    for raw in re.split(r"\r?\n", head):
        if not raw:
            continue
        if raw[0] in " \t":
            if not headers:
                raise SipParseError("continuation line before any header")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {raw.strip()}")
            continue
        name, colon, value = raw.partition(":")
        if not colon or not _TOKEN.match(name.strip()):
            raise SipParseError(f"malformed header line {raw[:40]!r}")
        headers.append((canonical_name(name), value.strip()))
        if len(headers) > MAX_HEADERS:
            raise SipParseError("too many headers")
    return headers


def parse_message(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one complete message. ``stream`` (TCP) means the body was already cut by Content-Length."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError("message too large")
    head_bytes, body = _split_head(data)
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        head = head_bytes.decode("latin-1")
    if "\x00" in head:
        raise SipParseError("NUL in headers")
    first, _, rest = head.lstrip("\r\n").partition("\n")
    first = first.rstrip("\r").strip()
    msg = SipMessage()
    if m := _REQUEST_LINE.match(first):
        msg.method, msg.uri = m.group(1).upper(), m.group(2)
    elif m := _STATUS_LINE.match(first):
        msg.status, msg.reason = int(m.group(1)), m.group(2) or ""
    else:
        raise SipParseError("not a SIP request or status line")
    msg.headers = parse_headers(rest)
    for required in ("Call-ID", "CSeq", "Via"):
        if not msg.get(required):
            raise SipParseError(f"missing {required} header")
    try:
        num, method = msg.cseq
    except ValueError:
        raise SipParseError("malformed CSeq header") from None
    if not (0 <= num < 2**31) or not _TOKEN.match(method or "-") or not method:
        raise SipParseError("malformed CSeq header")
    length_header = msg.get("Content-Length")
    if length_header is not None:
        try:
            length = int(length_header)
        except ValueError:
            raise SipParseError("malformed Content-Length header") from None
        if length < 0:
            raise SipParseError("malformed Content-Length header")
        if length > len(body):
            raise SipParseError("body shorter than Content-Length (truncated datagram?)")
        body = body[:length]
    elif stream:
        body = b""
    msg.body = body
    return msg


class MessageTooLarge(SipParseError):
    """A stream message whose Content-Length goes past ``MAX_MESSAGE``: ``head`` is its header block,
    so the sender can be told (413) before the connection is closed."""

    def __init__(self, why: str, head: bytes) -> None:
        super().__init__(why)
        self.head = head


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (RFC 3261 §18.3).

    ``feed`` returns complete messages' bytes. Keep-alives between messages are skipped; each
    double-CRLF "ping" (RFC 5626 §3.5.1) is counted in ``pings`` for the caller to answer with a
    CRLF "pong" (a single CRLF, a pong or stray line end, is not). A header block over
    ``MAX_MESSAGE`` or a missing/garbage Content-Length raises SipParseError, a body over it
    ``MessageTooLarge``: the connection cannot be resynchronised and should be closed.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.pings = 0

    def _skip_keepalives(self) -> None:
        crlfs = 0
        while self._buf[crlfs * 2:crlfs * 2 + 2] == b"\r\n":
            crlfs += 1
        at_end = crlfs * 2 == len(self._buf)
        self.pings += crlfs // 2
        # An odd CRLF at the end may be the first half of a ping whose second half is still in flight.
        del self._buf[: crlfs * 2 - (2 if at_end and crlfs % 2 else 0)]
        while self._buf[:1] == b"\n":
            del self._buf[:1]

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            self._skip_keepalives()
            end = self._buf.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end = self._buf.find(b"\n\n")
                sep = 2
            if end < 0:
                if len(self._buf) > MAX_MESSAGE:
                    raise SipParseError("header block too large")
                return out
            head = bytes(self._buf[:end]).decode("latin-1")
            match = re.search(r"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", head)
            if match is None:
                raise SipParseError("missing Content-Length on a stream transport")
            total = end + sep + int(match.group(1))
            if total > MAX_MESSAGE:
                raise MessageTooLarge("message too large", bytes(self._buf[:end]))
            if len(self._buf) < total:
                return out
            out.append(bytes(self._buf[:total]))
            del self._buf[:total]


@dataclass(frozen=True)
class BodyPart:
    content_type: str
    """Lower-case media type, no parameters."""
    disposition: str
    body: bytes


def body_parts(msg_content_type: str, body: bytes) -> list[BodyPart]:
    """The parts of a body: one for a simple body, several for multipart/mixed (any order)."""
    ctype = media_type(msg_content_type)
    if not body:
        return []
    if not ctype.startswith("multipart/"):
        return [BodyPart(ctype, "", body)]
    boundary = param(msg_content_type, "boundary")
    if not boundary:
        raise SipParseError("multipart body without a boundary parameter")
    delim = b"--" + boundary.encode("latin-1")
    pieces = body.split(delim)
    parts: list[BodyPart] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        # Strip the line break after the delimiter and before the next one; keep the body's own bytes.
        if piece.startswith(b"\r\n"):
            piece = piece[2:]
        elif piece.startswith(b"\n"):
            piece = piece[1:]
        if piece.endswith(b"\r\n"):
            piece = piece[:-2]
        elif piece.endswith(b"\n"):
            piece = piece[:-1]
        head, _, content = _split_part(piece)
        try:
            headers = parse_headers(head.decode("latin-1"))
        except SipParseError as exc:
            raise SipParseError(f"multipart part: {exc}") from None
        hmap = dict(headers)
        parts.append(BodyPart(media_type(hmap.get("Content-Type", "text/plain")),
                              media_type(hmap.get("Content-Disposition", "")), content))
        if len(parts) > MAX_PARTS:
            raise SipParseError("too many multipart parts")
    if not parts:
        raise SipParseError("multipart body has no parts")
    return parts


def _split_part(piece: bytes) -> tuple[bytes, bytes, bytes]:
    # Part headers may be indented (documentation captures) or have no space after the colon.
    crlf, lf = piece.find(b"\r\n\r\n"), piece.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return piece[:crlf], b"", piece[crlf + 4:]
    if lf >= 0:
        return piece[:lf], b"", piece[lf + 2:]
    return piece, b"", b""


def make_response(request: SipMessage, status: int, reason: str, *, to_tag: str | None = None,
                  headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                  content_type: str | None = None) -> SipMessage:
    """A response copying Via/From/To/Call-ID/CSeq (RFC 3261 §8.2.6), adding a To tag if given."""
    resp = SipMessage(status=status, reason=reason)
    for name, value in request.headers:
        if name in ("Via", "From", "Call-ID", "CSeq", "Record-Route") or name == "To":
            if name == "To" and to_tag and param(value, "tag") is None:
                value = f"{value};tag={to_tag}"
            resp.headers.append((name, value))
    for name, value in headers or []:
        resp.headers.append((canonical_name(name), value))
    if body:
        resp.headers.append(("Content-Type", content_type or "application/sdp"))
    resp.body = body
    return resp
