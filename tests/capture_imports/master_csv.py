"""Asterisk ``Master.csv`` lines as ``cdr_csv`` writes them (loguniqueid, loguserfield, newcdrcolumns all on)."""

from __future__ import annotations

import csv
import io


def master_line(*, src: str, dst: str, channel: str, dstchannel: str, start: str, answer: str, end: str,
                uniqueid: str, linkedid: str | None = None, userfield: str = "", disposition: str = "ANSWERED") -> str:
    """One 21-column line: the 16 base columns, uniqueid, userfield, peeraccount, linkedid, sequence."""
    row = ["", src, dst, "from-internal", f'"{src}" <{src}>', channel, dstchannel, "Dial", dstchannel, start, answer,
           end, "60", "55", disposition, "DOCUMENTATION", uniqueid, userfield, "", linkedid or uniqueid, "12"]
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(row)
    return out.getvalue()
