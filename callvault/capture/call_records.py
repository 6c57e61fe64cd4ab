"""A PBX's or SBC's call-detail records (CDR), read strictly, for reconciliation against what was stored.

Three layouts (``FORMATS``):

* ``generic``: CSV with a header row naming, in any order (case-insensitive):
  ``call_id`` (the telephony system's id; the one capture stores when it is the same system),
  ``start`` (ISO 8601 *with* its zone: ``2026-03-02T15:00:00+00:00`` or ``...Z``),
  ``duration`` (seconds, whole or decimal), ``direction`` (``inbound`` or ``outbound``),
  ``caller`` and ``called`` (a phone number, international or in the deployment's region, or an extension;
  empty or ``anonymous``/``withheld``/``restricted``/``unknown`` for a number the caller withheld),
  ``extension`` (the agent's extension; may be empty), and optionally ``team`` and ``agent``.
* ``asterisk``: Asterisk ``cdr_csv``'s ``Master.csv``, no header: ``accountcode, src, dst, dcontext, clid,
  channel, dstchannel, lastapp, lastdata, start, answer, end, duration, billsec, disposition, amaflags``, then
  ``uniqueid`` (``loguniqueid``), ``userfield`` (``loguserfield``), ``peeraccount, linkedid, sequence``
  (``newcdrcolumns``): 17, 18, 20 or 21 columns; ``uniqueid`` is required (it is the call id); a ``src`` or
  ``dst`` that is neither a number nor an extension (``s``, a feature code) is read as unknown. Times are the
  PBX's local time (``tz``). Only ``ANSWERED`` rows are conversations; the others are counted, not checked.
  Direction: a call whose ``src`` is an extension (digits, at most ``EXTENSION_MAX_DIGITS``) is outbound from
  that extension; any other is inbound, answered by the extension in ``dstchannel`` (``PJSIP/2001-0000002a``)
  or, failing that, ``dst``. The duration is ``billsec`` (the talk time).
* ``freeswitch``: FreeSWITCH ``mod_cdr_csv`` with the stock template, no header: ``caller_id_name,
  caller_id_number, destination_number, context, start_stamp, answer_stamp, end_stamp, duration, billsec,
  hangup_cause, uuid, bleg_uuid, accountcode, read_codec, write_codec``, optionally followed by
  ``${callvault_extension}`` (the agent's extension; the column PBX imports document): 15 or 16 columns.
  ``uuid`` is the call id (PBX imports store ``freeswitch:<uuid>``). Times are local (``tz``). A row with no
  ``answer_stamp`` was not answered (counted, not checked). With ``legs="ab"`` each bridged call also has a B-leg
  row, whose ``uuid`` is its A leg's ``bleg_uuid``: the same conversation, so it is not a call of its own; its
  ``destination_number`` is the extension that answered. Direction as for Asterisk: a call from an extension is
  outbound from it; any other is inbound, answered by ``${callvault_extension}``, else the B leg's destination,
  else ``destination_number`` when it is an extension (a DID leaves it unknown).

The whole file is refused when any line is wrong (``InvalidInput``, each problem naming its line and field):
reconciling half a file would report the other half's calls as neither recorded nor missing, and the officer
could not tell which. Fix the lines and run it again; reconciling is idempotent.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import phonenumbers

from callvault.core.errors import FieldProblem, InvalidInput

FORMATS = ("generic", "asterisk", "freeswitch")
GENERIC_REQUIRED = ("call_id", "start", "duration", "direction", "caller", "called", "extension")
GENERIC_OPTIONAL = ("team", "agent")
EXTENSION_MAX_DIGITS = 6
MAX_CDR_BYTES = 64 * 1024 * 1024
MAX_PROBLEMS_SHOWN = 50
_ASTERISK_BASE = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
                  "start", "answer", "end", "duration", "billsec", "disposition", "amaflags")
_ASTERISK_TAIL = {17: ("uniqueid",), 18: ("uniqueid", "userfield"),
                  20: ("uniqueid", "peeraccount", "linkedid", "sequence"),
                  21: ("uniqueid", "userfield", "peeraccount", "linkedid", "sequence")}
_FREESWITCH = ("caller_id_name", "caller_id_number", "destination_number", "context", "start_stamp", "answer_stamp",
               "end_stamp", "duration", "billsec", "hangup_cause", "uuid", "bleg_uuid", "accountcode", "read_codec",
               "write_codec", "callvault_extension")
_CHANNEL_EXTENSION = re.compile(r"^[A-Za-z0-9_]+/(\d{1,10})-[0-9a-fA-F]+")
_EXTENSION = re.compile(r"^\d{1,10}$")
T = TypeVar("T")


@dataclass(frozen=True)
class CallRecord:
    """One call as the telephony system saw it. Times are aware UTC; numbers E.164 or extension digits."""

    line: int
    call_id: str
    started_at: datetime
    duration_seconds: float
    direction: str
    caller: str
    called: str
    extension: str | None
    team: str | None = None
    agent: str | None = None

    @property
    def remote_number(self) -> str:
        return self.caller if self.direction == "inbound" else self.called

    @property
    def local_number(self) -> str:
        """Our side's number: the dialled number of an inbound call, the presented one of an outbound call."""
        return self.called if self.direction == "inbound" else self.caller


@dataclass
class CallRecords:
    """The conversations in a file, and the rows that were not conversations (Asterisk: not answered)."""

    records: list[CallRecord]
    not_answered: int = 0


class _Problems:
    def __init__(self) -> None:
        self.items: list[FieldProblem] = []

    def add(self, line: int, field: str, message: str) -> None:
        self.items.append(FieldProblem(field, message, line))


def _parsed(problems: _Problems, line: int, name: str, parse: Callable[[str], T], value: str) -> T | None:
    try:
        return parse(value)
    except ValueError as exc:
        problems.add(line, name, str(exc))
        return None


WITHHELD = ("", "anonymous", "unknown", "withheld", "restricted", "private", "unavailable")
"""How call records write a number the caller withheld: read as unknown (""), never as an error."""


def _number(value: str, region: str) -> str:
    """E.164 for a phone number, the digits for an extension, "" for a withheld number; ValueError otherwise."""
    text = value.strip()
    if text.lower() in WITHHELD:
        return ""
    if _EXTENSION.match(text) and len(text) <= EXTENSION_MAX_DIGITS:
        return text
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{text!r} is neither a phone number nor an extension (digits, at most "
                         f"{EXTENSION_MAX_DIGITS})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{text!r} is not a valid phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def _lenient_number(value: str, region: str) -> str:
    try:
        return _number(value, region)
    except ValueError:
        return ""


def _duration(value: str) -> float:
    try:
        seconds = float(value.strip())
    except ValueError:
        raise ValueError(f"{value.strip()!r} is not a number of seconds") from None
    if not 0 <= seconds <= 7 * 24 * 3600 or seconds != seconds:
        raise ValueError(f"{value.strip()!r} is not between 0 and 604800 seconds")
    return seconds


def _zoned_start(value: str) -> datetime:
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date and time like 2026-03-02T15:00:00+00:00") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add it (+00:00, Z, +01:00)")
    return parsed.astimezone(UTC)


def _extension(value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    if not _EXTENSION.match(text):
        raise ValueError(f"{text!r} is not an extension (digits only)")
    return text


def _decode(data: bytes) -> str:
    if len(data) > MAX_CDR_BYTES:
        raise InvalidInput(f"the call records are larger than {MAX_CDR_BYTES // (1024 * 1024)} MiB; split the file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the call records were not read: the file is not UTF-8 text:",
                           [FieldProblem("file", f"byte {exc.start} cannot be read as UTF-8")]) from None


def _refuse(problems: _Problems) -> InvalidInput:
    shown = problems.items[:MAX_PROBLEMS_SHOWN]
    more = len(problems.items) - len(shown)
    lines = len({p.line for p in problems.items})
    tail = f" ({more} more problem(s) not shown)" if more else ""
    return InvalidInput(f"the call records were not read: {lines} line(s) are wrong, so nothing was reconciled; "
                        f"fix them and run it again{tail}:", shown)


def _rows(text: str) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    try:
        for values in reader:
            if values and any(v.strip() for v in values):
                rows.append((reader.line_num, values))
    except csv.Error as exc:
        raise InvalidInput("the call records were not read:",
                           [FieldProblem("file", f"not CSV: {exc}", reader.line_num)]) from None
    return rows


def _call_id(problems: _Problems, seen: dict[str, int], line: int, field: str, call_id: str) -> None:
    """A call id must be there, at most 200 characters, and on one line only (the others are named)."""
    if not call_id or len(call_id) > 200:
        problems.add(line, field, "is empty" if not call_id else "is longer than 200 characters")
    elif call_id in seen:
        problems.add(line, field, f"{call_id!r} is also on line {seen[call_id]}")
    else:
        seen[call_id] = line


def read_generic(data: bytes, *, region: str) -> CallRecords:
    """The generic layout (module docstring); ``region`` reads numbers written without a country code."""
    rows = _rows(_decode(data))
    problems = _Problems()
    if not rows:
        raise InvalidInput("the call records were not read: the file is empty (a header line is needed: "
                           f"{','.join(GENERIC_REQUIRED)})")
    header_line, header = rows[0]
    names = [h.strip().lower() for h in header]
    missing = [c for c in GENERIC_REQUIRED if c not in names]
    if missing:
        raise InvalidInput("the call records were not read: the header line lacks columns:",
                           [FieldProblem(c, "required column is missing", header_line) for c in missing])
    records: list[CallRecord] = []
    seen: dict[str, int] = {}
    for line, values in rows[1:]:
        if len(values) != len(names):
            problems.add(line, "line", f"has {len(values)} fields, the header has {len(names)}")
            continue
        row = dict(zip(names, (v.strip() for v in values), strict=True))
        before = len(problems.items)
        call_id = row["call_id"]
        _call_id(problems, seen, line, "call_id", call_id)
        start = _parsed(problems, line, "start", _zoned_start, row["start"])
        duration = _parsed(problems, line, "duration", _duration, row["duration"])
        extension = _parsed(problems, line, "extension", _extension, row["extension"])
        caller = _parsed(problems, line, "caller", lambda v: _number(v, region), row["caller"])
        called = _parsed(problems, line, "called", lambda v: _number(v, region), row["called"])
        direction = row["direction"].lower()
        if direction not in ("inbound", "outbound"):
            problems.add(line, "direction", f"{row['direction']!r} is not inbound or outbound")
        if len(problems.items) > before or start is None or duration is None or caller is None or called is None:
            continue
        records.append(CallRecord(
            line=line, call_id=call_id, started_at=start, duration_seconds=duration, direction=direction,
            caller=caller, called=called, extension=extension, team=row.get("team") or None,
            agent=row.get("agent") or None,
        ))
    if problems.items:
        raise _refuse(problems)
    return CallRecords(records)


def _local_time(value: str, tz: ZoneInfo) -> datetime:
    text = value.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=tz).astimezone(UTC)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a time like 2026-03-02 15:00:00")


def read_asterisk(data: bytes, *, tz: ZoneInfo, region: str) -> CallRecords:
    """Asterisk ``Master.csv`` (module docstring), its local times in ``tz``."""
    problems = _Problems()
    records: list[CallRecord] = []
    not_answered = 0
    seen: dict[str, int] = {}
    for line, values in _rows(_decode(data)):
        tail = _ASTERISK_TAIL.get(len(values))
        if tail is None:
            problems.add(line, "line", f"has {len(values)} fields; Master.csv lines have 17, 18, 20 or 21 (with "
                                       "loguniqueid = yes)")
            continue
        row = dict(zip((*_ASTERISK_BASE, *tail), (v.strip() for v in values), strict=True))
        if row["disposition"].upper() != "ANSWERED":
            not_answered += 1
            continue
        before = len(problems.items)
        call_id = row["uniqueid"]
        _call_id(problems, seen, line, "uniqueid", call_id)
        try:
            started = _local_time(row["start"], tz)
        except ValueError as exc:
            problems.add(line, "start", str(exc))
        try:
            seconds = _duration(row["billsec"])
        except ValueError as exc:
            problems.add(line, "billsec", str(exc))
        if len(problems.items) > before:
            continue
        # src/dst are what the dialplan saw: "s", a feature code, a name. Only a number or an extension says
        # anything; anything else is unknown rather than an error, so real Master.csv files are read.
        src, dst = _lenient_number(row["src"], region), _lenient_number(row["dst"], region)
        if src and not src.startswith("+"):
            direction, extension = "outbound", src
        else:
            direction = "inbound"
            channel = _CHANNEL_EXTENSION.match(row["dstchannel"])
            extension = channel.group(1) if channel else (dst if not dst.startswith("+") else "")
        records.append(CallRecord(line=line, call_id=call_id, started_at=started, duration_seconds=seconds,
                                  direction=direction, caller=src, called=dst, extension=extension or None))
    if problems.items:
        raise _refuse(problems)
    return CallRecords(records, not_answered=not_answered)


def _is_extension(number: str) -> bool:
    return bool(number) and not number.startswith("+")


def read_freeswitch(data: bytes, *, tz: ZoneInfo, region: str) -> CallRecords:
    """FreeSWITCH ``mod_cdr_csv``, stock template (module docstring), its local times in ``tz``."""
    problems = _Problems()
    rows: list[tuple[int, dict[str, str]]] = []
    for line, values in _rows(_decode(data)):
        if len(values) not in (15, 16):
            problems.add(line, "line", f"has {len(values)} fields; mod_cdr_csv's stock template writes 15 (or 16 "
                                       "with ${callvault_extension})")
            continue
        rows.append((line, dict(zip(_FREESWITCH, (v.strip() for v in values), strict=False))))
    b_legs = {row["bleg_uuid"] for _, row in rows if row["bleg_uuid"]}
    answered_by = {row["uuid"]: _lenient_number(row["destination_number"], region) for _, row in rows
                   if row["uuid"] in b_legs}
    records: list[CallRecord] = []
    not_answered = 0
    seen: dict[str, int] = {}
    for line, row in rows:
        if row["uuid"] in b_legs:
            continue  # the B leg of a call already listed: its agent is read with the A leg
        if not row["answer_stamp"]:
            not_answered += 1
            continue
        before = len(problems.items)
        call_id = row["uuid"]
        _call_id(problems, seen, line, "uuid", call_id)
        started = _parsed(problems, line, "start_stamp", lambda v: _local_time(v, tz), row["start_stamp"])
        seconds = _parsed(problems, line, "billsec", _duration, row["billsec"])
        explicit = _parsed(problems, line, "callvault_extension", _extension, row.get("callvault_extension", ""))
        if len(problems.items) > before or started is None or seconds is None:
            continue
        src, dst = _lenient_number(row["caller_id_number"], region), _lenient_number(row["destination_number"], region)
        b_dst = answered_by.get(row["bleg_uuid"], "")
        if _is_extension(src):
            direction, extension = "outbound", explicit or src
        else:
            direction = "inbound"
            extension = explicit or (b_dst if _is_extension(b_dst) else "") or (dst if _is_extension(dst) else "")
        records.append(CallRecord(line=line, call_id=call_id, started_at=started, duration_seconds=seconds,
                                  direction=direction, caller=src, called=dst, extension=extension or None))
    if problems.items:
        raise _refuse(problems)
    return CallRecords(records, not_answered=not_answered)


def read_records(data: bytes, *, fmt: str, region: str, tz: ZoneInfo | None = None) -> CallRecords:
    """Read ``data`` in layout ``fmt``; InvalidInput naming every bad line and field (nothing is half-read)."""
    if fmt == "generic":
        return read_generic(data, region=region)
    if fmt == "asterisk":
        return read_asterisk(data, tz=tz or ZoneInfo("UTC"), region=region)
    if fmt == "freeswitch":
        return read_freeswitch(data, tz=tz or ZoneInfo("UTC"), region=region)
    raise InvalidInput(f"unknown call-record format {fmt!r}:",
                       [FieldProblem("format", f"use one of {', '.join(FORMATS)}")])


TOLERANCE = timedelta(seconds=120)
"""How far a stored recording's start may lie from the call record's and still be the same call (matched by
extension when the call ids differ): telephony and recorder clocks, and ring time before the answer."""
