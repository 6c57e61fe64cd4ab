"""CDR CSV layouts and file-name parsing: the PBX's formats, read exactly, and garbage counted, not fatal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from callvault.capture.imports.cdr import read_cdr
from callvault.capture.imports.names import parse_name, within_root
from callvault.capture.imports.orient import Internal, build_metadata
from tests.capture_imports.master_csv import master_line

UTC_ZONE = ZoneInfo("UTC")
BASE16 = '"","6135550123","2001","from-pstn","""Caller"" <6135550123>","PJSIP/trunk-1","PJSIP/2001-2","Dial",' \
         '"PJSIP/2001","2026-11-20 09:00:00","2026-11-20 09:00:05","2026-11-20 09:01:00","60","55","ANSWERED",' \
         '"DOCUMENTATION"'


def test_master_csv_column_counts_follow_cdr_conf(tmp_path: Path) -> None:
    cdr = tmp_path / "Master.csv"
    cdr.write_text("\n".join([
        BASE16,                                                   # loguniqueid=no: nothing to correlate
        BASE16 + ',"1763640000.1"',                               # loguniqueid
        BASE16 + ',"1763640000.2","cv_announcement=1"',           # + loguserfield
        BASE16 + ',"1763640000.3","","1763640000.0","7"',         # + newcdrcolumns (no userfield)
        master_line(src="1", dst="2", channel="c", dstchannel="d", start="2026-11-20 09:00:00", answer="",
                    end="2026-11-20 09:01:00", uniqueid="1763640000.4", linkedid="1763640000.0").strip(),
        "not,a,cdr",
        BASE16.replace("2026-11-20 09:00:00", "yesterday") + ',"1763640000.5"',
    ]) + "\n")
    index = read_cdr(cdr, flavour="asterisk", tz=UTC_ZONE)
    assert index.skipped_lines == 3
    [two] = index.find("1763640000.2", "x.wav")
    assert (two.userfield, two.dstchannel, two.start) == ("cv_announcement=1", "PJSIP/2001-2",
                                                          datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    assert index.find("1763640000.1", "x.wav")[0].src == "6135550123"
    # linkedid groups the legs of one call: a recording of the first leg finds both rows
    assert {r.uniqueid for r in index.find("1763640000.0", "x.wav")} == {"1763640000.3", "1763640000.4"}
    assert read_cdr(tmp_path / "not-written-yet.csv", flavour="asterisk", tz=UTC_ZONE).by_id == {}


def test_header_csv_export_matches_recordingfile_first(tmp_path: Path) -> None:
    cdr = tmp_path / "cdr-export.csv"
    cdr.write_text("calldate,src,dst,channel,dstchannel,start,answer,end,disposition,uniqueid,linkedid,recordingfile\n"
                   ",6135550123,2002,PJSIP/t-1,PJSIP/2002-1,2026-11-20 10:00:00,,2026-11-20 10:02:00,ANSWERED,"
                   "1763643600.7,1763643600.7,2026/11/20/in-2002-6135550123-20261120-100000-1763643600.9.wav\n")
    index = read_cdr(cdr, flavour="asterisk", tz=UTC_ZONE)
    [row] = index.find("1763643600.9", "in-2002-6135550123-20261120-100000-1763643600.9.wav")
    assert row.uniqueid == "1763643600.7" and row.dst == "2002"


def test_file_names() -> None:
    tz = ZoneInfo("America/Toronto")
    freepbx = parse_name("asterisk", "out-6135550199-2001-20261120-091500-1763648100.17.wav", tz)
    assert freepbx is not None
    assert (freepbx.kind, freepbx.dst, freepbx.src, freepbx.uniqueid) == ("out", "6135550199", "2001", "1763648100.17")
    assert freepbx.local_time == datetime(2026, 11, 20, 9, 15, tzinfo=tz)
    assert freepbx.started_at_from_id == datetime.fromtimestamp(1763648100, UTC)
    assert parse_name("asterisk", "1763648100.17.wav", tz).uniqueid == "1763648100.17"  # type: ignore[union-attr]
    assert parse_name("asterisk", "holiday-greeting.wav", tz) is None
    fs = parse_name("freeswitch", "20261120_0F2C1D3E-4B5A-4C6D-8E7F-90A1B2C3D4E5.wav", tz)
    assert fs is not None and fs.uniqueid == "0f2c1d3e-4b5a-4c6d-8e7f-90a1b2c3d4e5"
    assert parse_name("freeswitch", "1763648100.17.wav", tz) is None


def test_paths_given_to_the_hook_stay_inside_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "monitor"
    assert within_root(root, str(root / "2026/a.wav").encode()) == b"2026/a.wav"
    assert within_root(root, str(root).encode() + b"/2026/../../etc/passwd") is None
    assert within_root(root, str(tmp_path / "monitor-evil/a.wav").encode()) is None
    assert within_root(root, b"/etc/passwd") is None


def test_an_internal_call_is_not_a_customer_call() -> None:
    name = parse_name("asterisk", "exten-2002-2001-20261120-091500-1763648100.1.wav", UTC_ZONE)
    assert name is not None
    result = build_metadata(flavour="asterisk", name=name, rows=[], duration_seconds=10, max_digits=6,
                            default_region="CA", user_for=lambda ext: None)
    assert isinstance(result, Internal) and "2001 and 2002" in result.reason
    anonymous = parse_name("asterisk", "in-2001-anonymous-20261120-091500-1763648100.2.wav", UTC_ZONE)
    assert anonymous is not None
    meta = build_metadata(flavour="asterisk", name=anonymous, rows=[], duration_seconds=10, max_digits=6,
                          default_region="CA", user_for=lambda ext: None)
    assert not isinstance(meta, Internal)
    assert (meta.direction, meta.extension, meta.remote_number) == ("inbound", "2001", None)
