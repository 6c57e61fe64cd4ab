"""PBX file names: untrusted input (they carry caller ids), checked before anything is opened.

A file is taken only when every component of its path below the configured root is printable
UTF-8 without control characters, no longer than ``max_name_bytes``, not ``..``, and not a symbolic
link. Anything else is quarantined in the ledger with the reason and never opened or followed.
Then the name is parsed for the PBX's channel id (the correlation key) and whatever call details it holds.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

MAX_REL_PATH_BYTES = 1024
AUDIO_SUFFIXES = (b".wav", b".WAV")

_FREEPBX = re.compile(
    r"^(?P<kind>in|out|internal|exten|rg|q|force|ondemand|external|conf)-(?P<dst>[0-9A-Za-z+*#]*)-"
    r"(?P<src>[0-9A-Za-z+*#]*)-(?P<date>\d{8})-(?P<time>\d{6})-(?P<uniqueid>\d{6,}\.\d{1,9})\.wav$", re.IGNORECASE)
_ASTERISK_ID = re.compile(r"(?:^|[-_])(?P<uniqueid>\d{6,}\.\d{1,9})\.wav$", re.IGNORECASE)
_FREESWITCH_ID = re.compile(
    r"(?:^|[-_])(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.wav$", re.IGNORECASE)


def printable(raw: bytes) -> str:
    """A name for people and the ledger: undecodable bytes and control characters escaped."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)[:2000]


def name_problem(component: bytes, *, max_name_bytes: int) -> str | None:
    """Why this path component is refused, or None."""
    if len(component) > max_name_bytes:
        return f"name is {len(component)} bytes long (limit {max_name_bytes})"
    if component in (b"..", b"."):
        return "path contains '.' or '..'"
    if b"\x00" in component:
        return "name contains a NUL byte"
    try:
        text = component.decode("utf-8")
    except UnicodeDecodeError:
        return "name is not valid UTF-8"
    if any(not ch.isprintable() for ch in text):
        return "name contains control or non-printable characters"
    return None


def relative_problem(root: bytes, rel: bytes, *, max_name_bytes: int) -> str | None:
    """Check a path below ``root`` component by component, without following any link."""
    if rel.startswith(b"/") or len(rel) > MAX_REL_PATH_BYTES:
        return "path is absolute or too long"
    current = root
    for component in rel.split(b"/"):
        problem = name_problem(component, max_name_bytes=max_name_bytes)
        if problem is not None:
            return problem
        current = os.path.join(current, component)
        try:
            info = os.lstat(current)
        except OSError as exc:
            return f"cannot be examined ({exc.strerror})"
        if stat.S_ISLNK(info.st_mode):
            return "symbolic link (never followed)"
    return None


def within_root(root: Path, given: bytes) -> bytes | None:
    """The path of ``given`` relative to ``root`` (both made absolute, no link resolved), or None if outside."""
    root_b = os.path.abspath(os.fsencode(root))
    raw = given if given.startswith(b"/") else os.path.join(os.getcwdb(), given)
    if b"/../" in raw + b"/" or raw.endswith(b"/.."):
        return None
    path = os.path.normpath(raw)
    if not path.startswith(root_b.rstrip(b"/") + b"/"):
        return None
    return path[len(root_b.rstrip(b"/")) + 1:]


@dataclass(frozen=True)
class NameInfo:
    """What a file name says about its call. Numbers are as written (untrusted, validated later)."""

    uniqueid: str
    kind: str | None = None
    dst: str | None = None
    src: str | None = None
    local_time: datetime | None = None

    @property
    def started_at_from_id(self) -> datetime | None:
        """Asterisk UNIQUEIDs start with the channel's creation time in Unix seconds (UTC)."""
        head = self.uniqueid.split(".")[0]
        if head.isdigit() and len(head) >= 9:
            return datetime.fromtimestamp(int(head), tz=UTC)
        return None


def parse_name(flavour: str, name: str, tz: ZoneInfo) -> NameInfo | None:
    """Parse a (checked) file name; None when it carries no channel id we can correlate on."""
    if flavour == "freeswitch":
        fs = _FREESWITCH_ID.search(name)
        return NameInfo(uniqueid=fs.group("uuid").lower()) if fs else None
    match = _FREEPBX.match(name)
    if match is not None:
        try:
            local = datetime.strptime(match.group("date") + match.group("time"), "%Y%m%d%H%M%S").replace(tzinfo=tz)
        except ValueError:
            local = None
        return NameInfo(uniqueid=match.group("uniqueid"), kind=match.group("kind").lower(),
                        dst=match.group("dst") or None, src=match.group("src") or None, local_time=local)
    plain = _ASTERISK_ID.search(name)
    return NameInfo(uniqueid=plain.group("uniqueid")) if plain else None
