"""CDR rows from CSV files, indexed by the channel id a recording's file name carries.

Asterisk ``cdr_csv`` (``Master.csv``) has no header. Its columns, from ``cdr_csv.c``, are
``accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start, answer, end,
duration, billsec, disposition, amaflags``, then ``uniqueid`` (``loguniqueid = yes``), ``userfield``
(``loguserfield = yes``), then ``peeraccount, linkedid, sequence`` (``newcdrcolumns = yes``). Which
optional groups are present is read from the column count (17, 18, 20, 21). A CSV *with* a header
row (a FreePBX ``asteriskcdrdb.cdr`` export, ``cdr_adaptive_odbc``/``cdr_custom`` output) is read by
column name, and its ``recordingfile`` column (``CDR(recordingfile)``) is also used for matching.

FreeSWITCH ``mod_cdr_csv`` with the stock ``example`` template has no header either:
``caller_id_name, caller_id_number, destination_number, context, start_stamp, answer_stamp,
end_stamp, duration, billsec, hangup_cause, uuid, bleg_uuid, accountcode, read_codec, write_codec``,
optionally followed by one column we document (``${callvault_extension}``, the agent's extension).

Times are local PBX time (``CALLVAULT_PBX_TIMEZONE``) unless the CSV writes UTC (``usegmtime``: set
the zone to UTC). A line that cannot be read is skipped and counted, never fatal: one bad row must
not hold back every other call.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

MAX_CDR_BYTES = 512 * 1024 * 1024
_UNIQUEID = re.compile(r"^(?:[A-Za-z0-9_.-]+-)?\d{6,}\.\d{1,9}$")
_ASTERISK_BASE = ["accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
                  "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags"]
_FREESWITCH = ["clid", "src", "dst", "dcontext", "start", "answer", "end", "duration", "billsec", "disposition",
               "uniqueid", "bleg_uuid", "accountcode", "read_codec", "write_codec", "extension"]


@dataclass(frozen=True)
class CdrRow:
    uniqueid: str
    linkedid: str
    src: str
    dst: str
    channel: str
    dstchannel: str
    start: datetime | None
    answer: datetime | None
    end: datetime | None
    disposition: str
    userfield: str = ""
    recordingfile: str = ""
    extension: str = ""


@dataclass
class CdrIndex:
    by_id: dict[str, list[CdrRow]] = field(default_factory=dict)
    by_file: dict[str, list[CdrRow]] = field(default_factory=dict)
    skipped_lines: int = 0

    def add(self, row: CdrRow) -> None:
        self.by_id.setdefault(row.uniqueid, []).append(row)
        if row.linkedid and row.linkedid != row.uniqueid:
            self.by_id.setdefault(row.linkedid, []).append(row)
        if row.recordingfile:
            self.by_file.setdefault(row.recordingfile.rsplit("/", 1)[-1], []).append(row)

    def find(self, uniqueid: str, file_name: str) -> list[CdrRow]:
        """The rows of the recorded channel: by ``recordingfile``, else its uniqueid, else its linkedid group."""
        rows = self.by_file.get(file_name) or self.by_id.get(uniqueid) or []
        return sorted(rows, key=lambda r: r.start or datetime.max.replace(tzinfo=ZoneInfo("UTC")))


def _time(value: str, tz: ZoneInfo) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            parsed = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed
    raise ValueError(f"unreadable time {value!r}")


def _asterisk_columns(count: int, row: list[str]) -> list[str] | None:
    base = list(_ASTERISK_BASE)
    if count == 17:
        return [*base, "uniqueid"] if _UNIQUEID.match(row[16]) else None
    if count == 18:
        return [*base, "uniqueid", "userfield"]
    if count == 20:
        return [*base, "uniqueid", "peeraccount", "linkedid", "sequence"]
    if count == 21:
        return [*base, "uniqueid", "userfield", "peeraccount", "linkedid", "sequence"]
    return None


def _row(values: dict[str, str], tz: ZoneInfo) -> CdrRow:
    uniqueid = values.get("uniqueid", "").strip()
    if not uniqueid:
        raise ValueError("no uniqueid")
    return CdrRow(
        uniqueid=uniqueid, linkedid=values.get("linkedid", "").strip(), src=values.get("src", "").strip(),
        dst=values.get("dst", "").strip(), channel=values.get("channel", "").strip(),
        dstchannel=values.get("dstchannel", "").strip(), start=_time(values.get("start", ""), tz),
        answer=_time(values.get("answer", ""), tz), end=_time(values.get("end", ""), tz),
        disposition=values.get("disposition", "").strip(), userfield=values.get("userfield", "").strip(),
        recordingfile=values.get("recordingfile", "").strip(), extension=values.get("extension", "").strip(),
    )


def read_cdr(path: Path, *, flavour: str, tz: ZoneInfo) -> CdrIndex:
    """Index a CDR CSV. A missing file is an empty index (the CDR may simply not be written yet)."""
    index = CdrIndex()
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CDR_BYTES + 1)
    except FileNotFoundError:
        return index
    text = raw[:MAX_CDR_BYTES].decode("utf-8", errors="replace")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header: list[str] | None = None
    first = [c.strip().lower() for c in rows[0]] if rows else []
    if "uniqueid" in first or "uuid" in first:
        header = ["uniqueid" if c == "uuid" else c for c in first]
        rows = rows[1:]
    for values in rows:
        if not values:
            continue
        if header is not None:
            names: list[str] | None = header if len(values) == len(header) else None
        elif flavour == "freeswitch":
            names = _FREESWITCH[:len(values)] if len(values) in (15, 16) else None
        else:
            names = _asterisk_columns(len(values), values)
        if names is None:
            index.skipped_lines += 1
            continue
        try:
            index.add(_row(dict(zip(names, values, strict=True)), tz))
        except ValueError:
            index.skipped_lines += 1
    return index
