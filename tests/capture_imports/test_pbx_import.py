"""PBX folder import, end to end on real files laid out as Asterisk/FreePBX and FreeSWITCH write them."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from callvault.audit.models import AuditEntry
from callvault.capture.imports import pbx
from callvault.capture.imports.models import ImportState, PbxImport
from callvault.capture.imports.settings import PbxFolder
from callvault.cli.main import app
from callvault.core.clock import filesystem_now
from callvault.core.errors import InvalidInput
from tests.capture_imports.master_csv import master_line
from tests.capture_imports.support import (
    at,
    cdr_time,
    dominant_frequency,
    ledger,
    name_time,
    recent,
    settings,
    stored,
    tone_wav,
    uniqueid,
)
from tests.support.env import CallvaultEnv

TORONTO = ZoneInfo("America/Toronto")
AN_HOUR = 3600.0  # written an hour ago (on the disk's clock): complete by quiescence at once (a backfill)


def _audit(env: CallvaultEnv, action: str, object_id: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                              AuditEntry.object_id == object_id)))
        for row in rows:
            session.expunge(row)
        return rows


def _run(env: CallvaultEnv, root: Path, cdr: Path | None, **overrides: object) -> dict[str, int]:
    conf = settings(timezone=TORONTO, **overrides)
    pbx.scan_folder(env.runtime, flavour="asterisk", root=root, cdr_file=cdr, settings=conf)
    return pbx.import_ready(env.runtime, settings=conf, root=root).counts


def test_freepbx_inbound_call_is_imported_with_its_cdr_once(env: CallvaultEnv, tmp_path: Path) -> None:
    root, start = tmp_path / "monitor", recent(TORONTO, 9, 15)
    uid = uniqueid(start, 17)
    wav = tone_wav(root / f"{start:%Y/%m/%d}/in-6135550100-6135550123-{name_time(start)}-{uid}.wav",
                   freqs=(1000,), age=AN_HOUR)
    cdr = tmp_path / "Master.csv"
    cdr.write_text(master_line(src="6135550123", dst="6135550100", channel="PJSIP/trunk-00000019",
                               dstchannel="PJSIP/2001-0000001a", start=cdr_time(start),
                               answer=cdr_time(start + timedelta(seconds=4)),
                               end=cdr_time(start + timedelta(minutes=1)), uniqueid=uid, userfield="cv_announcement=1"))

    assert _run(env, root, cdr) == {"imported": 1}

    [rec] = stored(env.runtime, f"asterisk:{uid}")
    assert (rec.row.direction, rec.row.extension, rec.row.agent, rec.row.team) == \
        ("inbound", "2001", "alice", "customer_support")
    assert (rec.row.remote_number, rec.row.local_number) == ("+16135550123", "+16135550100")
    assert rec.row.started_at == start.astimezone(UTC)  # PBX local time (Toronto) → UTC
    assert rec.row.consent_state == "announcement" and not rec.row.quarantined
    assert rec.audio.shape[1] == 1 and abs(dominant_frequency(rec.audio[:, 0], rec.rate) - 1000) < 20
    [row] = ledger(env.runtime, root)
    assert (row.state, row.recording_id, row.source_deleted) == (ImportState.IMPORTED, rec.row.id, True)
    assert not wav.exists(), "the plaintext source must not stay on disk after import"

    # A rescan (and a PBX that re-created the file under the same name) never imports twice.
    tone_wav(wav, freqs=(1000,), age=AN_HOUR - 5)
    assert _run(env, root, cdr) == {}
    assert len(stored(env.runtime, f"asterisk:{uid}")) == 1
    [row] = ledger(env.runtime, root)
    assert row.state == ImportState.IMPORTED and "after it was imported" in row.reason


def test_a_call_past_its_retention_is_refused_and_the_ledger_says_why(env: CallvaultEnv, tmp_path: Path) -> None:
    """A3 (issue 23): a backfill of an eight-month-old call is never stored, so never playable."""
    root, cdr = tmp_path / "monitor", tmp_path / "Master.csv"
    start = recent(TORONTO, 9, days_ago=245)
    uid = uniqueid(start, 31)
    tone_wav(root / f"in-6135550100-6135550123-{name_time(start)}-{uid}.wav", freqs=(1000,), age=AN_HOUR)
    cdr.write_text(master_line(src="6135550123", dst="6135550100", channel="PJSIP/trunk-00000031",
                               dstchannel="PJSIP/2001-00000032", start=cdr_time(start),
                               answer=cdr_time(start + timedelta(seconds=4)),
                               end=cdr_time(start + timedelta(minutes=1)), uniqueid=uid, userfield="cv_announcement=1"))

    assert _run(env, root, cdr) == {ImportState.REFUSED: 1}
    [row] = ledger(env.runtime, root)
    assert row.state == ImportState.REFUSED and row.recording_id is None
    assert "retention ended" in row.reason and "max_age" in row.reason and "6 months" in row.reason
    assert stored(env.runtime, f"asterisk:{uid}") == []
    [refusal] = _audit(env, "recording.not_stored", f"asterisk:{uid}")
    assert refusal.decision == "deny" and "A3" in refusal.clauses


def test_late_cdr_is_waited_for_then_imported_and_a_missing_one_gives_up(env: CallvaultEnv, tmp_path: Path) -> None:
    root, cdr = tmp_path / "monitor", tmp_path / "Master.csv"
    start, other = recent(TORONTO, 10), recent(TORONTO, 10, 5)
    late_id, never_id = uniqueid(start, 5), uniqueid(other, 9)
    late = tone_wav(root / f"out-6135550199-2002-{name_time(start)}-{late_id}.wav", freqs=(500,), age=AN_HOUR)
    never = tone_wav(root / f"out-6135550198-2002-{name_time(other)}-{never_id}.wav", freqs=(500,), age=AN_HOUR)
    cdr.write_text("")

    assert _run(env, root, cdr) == {ImportState.WAITING_CDR: 2}
    rows = ledger(env.runtime, root)
    assert all("waiting for the CDR row" in r.reason for r in rows)
    assert late.exists() and never.exists()

    # The CDR row arrives; the retry (after retry_seconds) picks it up. The other one never comes.
    cdr.write_text(master_line(src="2002", dst="6135550199", channel="PJSIP/2002-00000020",
                               dstchannel="PJSIP/trunk-00000021", start=cdr_time(start),
                               answer=cdr_time(start + timedelta(seconds=5)),
                               end=cdr_time(start + timedelta(minutes=1)), uniqueid=late_id,
                               userfield=f"cv_notice={int(start.timestamp()) + 10}"))
    conf = settings(timezone=TORONTO)
    later = at(env.runtime, env.runtime.clock.now() + timedelta(seconds=11))
    assert pbx.import_ready(later, settings=conf, root=root).counts == {
        ImportState.IMPORTED: 1, ImportState.WAITING_CDR: 1}
    [rec] = stored(env.runtime, f"asterisk:{late_id}")
    assert (rec.row.direction, rec.row.extension, rec.row.agent, rec.row.remote_number) == \
        ("outbound", "2002", "bob", "+16135550199")
    assert rec.row.consent_state == "agent_notice"

    much_later = at(env.runtime, env.runtime.clock.now() + timedelta(seconds=conf.cdr_wait_seconds + 1))
    assert pbx.import_ready(much_later, settings=conf, root=root).counts == {ImportState.CDR_MISSING: 1}
    gave_up = next(r for r in ledger(env.runtime, root) if r.state == ImportState.CDR_MISSING)
    assert f"no CDR row for {never_id}" in gave_up.reason and "--cdr" in gave_up.reason
    assert never.exists(), "a file that was not imported is left where it was"


def test_freeswitch_record_stereo_maps_to_remote_left_agent_right(env: CallvaultEnv, tmp_path: Path) -> None:
    root, cdr = tmp_path / "recordings", tmp_path / "cdr-csv" / "Master.csv"
    out_uuid, in_uuid = "0f2c1d3e-4b5a-4c6d-8e7f-90a1b2c3d4e5", "1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d"
    # RECORD_STEREO: the A leg (the channel record_session ran on) is on the left.
    out_at, in_at = recent(TORONTO, 11), recent(TORONTO, 11, 5)
    tone_wav(root / f"{out_at:%Y/%m/%d}" / f"{out_uuid}.wav", freqs=(440, 1000), age=AN_HOUR)   # A = agent 2001
    tone_wav(root / f"{in_at:%Y/%m/%d}" / f"{in_uuid}.wav", freqs=(700, 1500), age=AN_HOUR)     # A = caller
    cdr.parent.mkdir()
    cdr.write_text(
        f'"Alice","2001","6135550199","default","{cdr_time(out_at)}","{cdr_time(out_at + timedelta(seconds=3))}",'
        f'"{cdr_time(out_at + timedelta(minutes=2))}","120","117","NORMAL_CLEARING","{out_uuid}","","","PCMU","PCMU"\n'
        f'"Caller","6135550123","2002","public","{cdr_time(in_at)}","{cdr_time(in_at + timedelta(seconds=2))}",'
        f'"{cdr_time(in_at + timedelta(minutes=1))}","60","58","NORMAL_CLEARING","{in_uuid}","","","PCMU","PCMU"\n')
    conf = settings(timezone=TORONTO)
    pbx.scan_folder(env.runtime, flavour="freeswitch", root=root, cdr_file=cdr, settings=conf)
    assert pbx.import_ready(env.runtime, settings=conf, root=root).counts == {ImportState.IMPORTED: 2}

    [out] = stored(env.runtime, f"freeswitch:{out_uuid}")
    assert (out.row.direction, out.row.extension, out.row.channels) == ("outbound", "2001", 2)
    assert abs(dominant_frequency(out.audio[:, 0], out.rate) - 1000) < 20, "left must be the remote party"
    assert abs(dominant_frequency(out.audio[:, 1], out.rate) - 440) < 20, "right must be the agent"
    [inbound] = stored(env.runtime, f"freeswitch:{in_uuid}")
    assert (inbound.row.direction, inbound.row.extension, inbound.row.agent) == ("inbound", "2002", "bob")
    assert abs(dominant_frequency(inbound.audio[:, 0], inbound.rate) - 700) < 20
    assert abs(dominant_frequency(inbound.audio[:, 1], inbound.rate) - 1500) < 20


def test_hostile_names_are_quarantined_never_followed(env: CallvaultEnv, tmp_path: Path) -> None:
    root, outside = tmp_path / "monitor", tmp_path / "outside"
    root.mkdir()
    secret = tone_wav(outside / "in-1-2-20261120-090000-1763648000.1.wav", freqs=(300,), age=AN_HOUR)
    (root / "in-1-2-20261120-090000-1763648000.2.wav").symlink_to(secret)
    (root / "linked").symlink_to(outside, target_is_directory=True)
    rootb = os.fsencode(root)
    for raw in (b"caf\xe9-1763648000.3.wav", b"bell\x07-1763648000.4.wav", b"x" * 80 + b"-1763648000.5.wav"):
        with open(os.path.join(rootb, raw), "wb") as fh:
            fh.write(secret.read_bytes())
        os.utime(os.path.join(rootb, raw), (filesystem_now(rootb) - AN_HOUR,) * 2)
    (root / "notes.txt").write_text("not a recording; ignored")

    counts = _run(env, root, None, max_name_bytes=64)
    assert counts == {}
    reasons = {r.rel_path: (r.state, r.reason) for r in ledger(env.runtime, root)}
    assert reasons["in-1-2-20261120-090000-1763648000.2.wav"] == (ImportState.REJECTED,
                                                                    "symbolic link (never followed)")
    assert reasons["linked"] == (ImportState.REJECTED, "symbolic link (never followed)")
    assert reasons["caf\\xe9-1763648000.3.wav"] == (ImportState.REJECTED, "name is not valid UTF-8")
    assert reasons["bell\\x07-1763648000.4.wav"][1] == "name contains control or non-printable characters"
    assert reasons["x" * 80 + "-1763648000.5.wav"][1] == "name is 97 bytes long (limit 64)"
    assert "notes.txt" not in reasons
    assert secret.exists() and not stored(env.runtime, "asterisk:1763648000.1")
    assert _audit(env, "capture.import_quarantined", "linked")

    # A folder swapped for a link between the scan and the import (a race an attacker could try).
    swapped = tone_wav(root / "2026/in-1-2-20261120-090000-1763648000.6.wav", freqs=(300,), age=AN_HOUR)
    conf = settings(timezone=TORONTO)
    pbx.scan_folder(env.runtime, flavour="asterisk", root=root, cdr_file=None, settings=conf)
    swapped.unlink()
    (root / "2026").rmdir()
    tone_wav(outside / "2026/in-1-2-20261120-090000-1763648000.6.wav", freqs=(300,), age=AN_HOUR)
    (root / "2026").symlink_to(outside / "2026", target_is_directory=True)
    assert pbx.import_ready(env.runtime, settings=conf, root=root).counts == {ImportState.REJECTED: 1}
    assert not stored(env.runtime, "asterisk:1763648000.6")
    assert (outside / "2026/in-1-2-20261120-090000-1763648000.6.wav").exists()

    conf = settings(folders=(PbxFolder("asterisk", root, None),))
    for path in (os.fsencode(root) + b"/../outside/in-1-2-20261120-090000-1763648000.1.wav", os.fsencode(secret)):
        with pytest.raises(InvalidInput, match="not inside a configured PBX folder"):
            pbx.mark_done(env.runtime, path=path, settings=conf)


def test_calls_outside_the_scope_are_not_stored_and_audited(env: CallvaultEnv, tmp_path: Path) -> None:
    root, cdr = tmp_path / "monitor", tmp_path / "Master.csv"
    private = tone_wav(root / "out-6135550199-2099-20261120-120000-1763659000.1.wav", freqs=(500,), age=AN_HOUR)
    internal = tone_wav(root / "exten-2002-2001-20261120-120500-1763659300.2.wav", freqs=(500,), age=AN_HOUR)
    cdr.write_text(
        master_line(src="2099", dst="6135550199", channel="PJSIP/2099-1", dstchannel="PJSIP/trunk-2",
                    start="2026-11-20 12:00:00", answer="2026-11-20 12:00:01", end="2026-11-20 12:01:00",
                    uniqueid="1763659000.1")
        + master_line(src="2001", dst="2002", channel="PJSIP/2001-3", dstchannel="PJSIP/2002-4",
                      start="2026-11-20 12:05:00", answer="2026-11-20 12:05:01", end="2026-11-20 12:06:00",
                      uniqueid="1763659300.2"))

    assert _run(env, root, cdr) == {ImportState.REFUSED: 2}
    assert not stored(env.runtime, "asterisk:1763659000.1") and not stored(env.runtime, "asterisk:1763659300.2")
    [denied] = _audit(env, "recording.not_stored", "asterisk:1763659000.1")
    assert "private line" in denied.reason and denied.decision == "deny"
    [internal_denied] = _audit(env, "recording.not_stored", "asterisk:1763659300.2")
    assert "internal call between extensions 2001 and 2002" in internal_denied.reason
    assert not private.exists() and not internal.exists()


def test_a_crash_after_storing_is_finished_without_a_duplicate(env: CallvaultEnv, tmp_path: Path) -> None:
    root, start = tmp_path / "monitor", recent(TORONTO, 13)
    uid = uniqueid(start, 3)
    wav = tone_wav(root / f"in-2001-6135550123-{name_time(start)}-{uid}.wav", freqs=(800,), age=AN_HOUR)
    conf = settings(timezone=TORONTO, delete_source=False)
    pbx.scan_folder(env.runtime, flavour="asterisk", root=root, cdr_file=None, settings=conf)
    assert pbx.import_ready(env.runtime, settings=conf, root=root).counts == {ImportState.IMPORTED: 1}
    [first] = stored(env.runtime, f"asterisk:{uid}")
    # As if the worker died after ingest committed but before the ledger said so: a stale claim.
    with env.runtime.db.unit_of_work() as session:
        session.execute(update(PbxImport).where(PbxImport.root == str(root)).values(
            state=ImportState.IMPORTING, recording_id=None, claimed_at=datetime.now(UTC) - timedelta(hours=1)))
    assert pbx.import_ready(env.runtime, settings=conf, root=root).counts == {ImportState.IMPORTED: 1}
    [again] = stored(env.runtime, f"asterisk:{uid}")
    assert again.row.id == first.row.id
    [row] = ledger(env.runtime, root)
    assert row.recording_id == first.row.id and wav.exists()  # delete_source=False keeps it
    # Without a CDR, a FreePBX name is enough: started_at from the UNIQUEID's epoch.
    assert first.row.started_at == datetime.fromtimestamp(int(start.timestamp()), UTC)


def test_a_file_being_written_waits_for_quiescence(env: CallvaultEnv, tmp_path: Path) -> None:
    root, start = tmp_path / "monitor", recent(TORONTO, 14)
    uid = uniqueid(start, 4)
    wav = tone_wav(root / f"in-2001-6135550123-{name_time(start)}-{uid}.wav", freqs=(600,), seconds=1)
    conf = settings(timezone=TORONTO)
    now = datetime.now(UTC)
    pbx.scan_folder(env.runtime, flavour="asterisk", root=root, cdr_file=None, settings=conf)
    assert pbx.import_ready(env.runtime, settings=conf, root=root).counts == {}
    assert ledger(env.runtime, root)[0].state == ImportState.WAITING

    tone_wav(wav, freqs=(600,), seconds=2)  # still growing at the next scan: the quiet period restarts
    soon = at(env.runtime, now + timedelta(seconds=20))
    pbx.scan_folder(soon, flavour="asterisk", root=root, cdr_file=None, settings=conf)
    assert ledger(env.runtime, root)[0].state == ImportState.WAITING
    pbx.scan_folder(at(env.runtime, now + timedelta(seconds=40)), flavour="asterisk", root=root, cdr_file=None,
                    settings=conf)
    assert ledger(env.runtime, root)[0].state == ImportState.WAITING  # only 20 s quiet so far
    quiet = at(env.runtime, now + timedelta(seconds=60))
    pbx.scan_folder(quiet, flavour="asterisk", root=root, cdr_file=None, settings=conf)
    assert pbx.import_ready(quiet, settings=conf, root=root).counts == {ImportState.IMPORTED: 1}
    [rec] = stored(env.runtime, f"asterisk:{uid}")
    assert rec.row.duration_seconds == pytest.approx(2.0)


def test_cli_scan_and_the_post_recording_hook(env: CallvaultEnv, tmp_path: Path) -> None:
    root, cdr = tmp_path / "monitor", tmp_path / "Master.csv"
    first, second, third = recent(TORONTO, 15), recent(TORONTO, 15, 5), recent(TORONTO, 15, 10)
    ids = [uniqueid(first, 6), uniqueid(second, 7), uniqueid(third, 8)]
    day = f"{first:%Y/%m/%d}"
    cdr.write_text(master_line(src="6135550123", dst="2001", channel="PJSIP/trunk-7", dstchannel="PJSIP/2001-8",
                               start=cdr_time(first), answer=cdr_time(first + timedelta(seconds=2)),
                               end=cdr_time(first + timedelta(minutes=1)), uniqueid=ids[0]))
    tone_wav(root / f"{day}/exten-2001-6135550123-{name_time(first)}-{ids[0]}.wav", freqs=(900,), age=AN_HOUR)
    cli_env = {**env.cli_env, "CALLVAULT_PBX_TIMEZONE": "America/Toronto"}
    result = CliRunner().invoke(app, ["capture", "pbx", "scan", "--flavour", "asterisk", str(root), "--cdr", str(cdr),
                                      "--data-dir", str(env.data_dir)], env=cli_env)
    assert result.exit_code == 0, result.output
    assert '"imported": 1' in result.output
    [rec] = stored(env.runtime, f"asterisk:{ids[0]}")
    assert (rec.row.direction, rec.row.extension) == ("inbound", "2001")

    # The hook: a file written just now (not quiet) is imported at once when MixMonitor says it is done.
    fresh = tone_wav(root / f"{day}/exten-2001-6135550123-{name_time(second)}-{ids[1]}.wav", freqs=(900,))
    with cdr.open("a") as fh:
        fh.write(master_line(src="6135550123", dst="2001", channel="PJSIP/trunk-9", dstchannel="PJSIP/2001-10",
                             start=cdr_time(second), answer=cdr_time(second + timedelta(seconds=2)),
                             end=cdr_time(second + timedelta(minutes=1)), uniqueid=ids[1]))
    hook_env = {**cli_env, "CALLVAULT_PBX_FOLDERS": f"asterisk:{root}:{cdr}"}
    result = CliRunner().invoke(app, ["capture", "pbx-done", str(fresh), "--data-dir", str(env.data_dir)],
                                env=hook_env)
    assert result.exit_code == 0, result.output
    assert len(stored(env.runtime, f"asterisk:{ids[1]}")) == 1 and not fresh.exists()
    # The safer hook: only ${UNIQUEID} goes through MixMonitor's shell, never the caller-id-bearing name.
    by_id = tone_wav(root / f"{day}/exten-2001-6135550123-{name_time(third)}-{ids[2]}.wav", freqs=(900,))
    with cdr.open("a") as fh:
        fh.write(master_line(src="6135550123", dst="2001", channel="PJSIP/trunk-11", dstchannel="PJSIP/2001-12",
                             start=cdr_time(third), answer=cdr_time(third + timedelta(seconds=2)),
                             end=cdr_time(third + timedelta(minutes=1)), uniqueid=ids[2]))
    result = CliRunner().invoke(app, ["capture", "pbx-done", "--uniqueid", ids[2], "--data-dir",
                                      str(env.data_dir)], env=hook_env)
    assert result.exit_code == 0, result.output
    assert len(stored(env.runtime, f"asterisk:{ids[2]}")) == 1 and not by_id.exists()
    unknown = CliRunner().invoke(app, ["capture", "pbx-done", "--uniqueid", "1.2; rm -rf /", "--data-dir",
                                       str(env.data_dir)], env=hook_env)
    assert unknown.exit_code == 2 and "is not an Asterisk UNIQUEID" in unknown.output
    outside = CliRunner().invoke(app, ["capture", "pbx-done", str(tmp_path / "elsewhere.wav"),
                                       "--data-dir", str(env.data_dir)], env=hook_env)
    assert outside.exit_code == 2 and "not inside a configured PBX folder" in outside.output


def test_the_worker_job_imports_the_configured_folders(env: CallvaultEnv, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    asterisk, freeswitch = tmp_path / "monitor", tmp_path / "fs"
    start, fs_start = recent(TORONTO, 9, days_ago=1), recent(TORONTO, 9, 5, days_ago=1)
    uid = uniqueid(start, 1)
    tone_wav(asterisk / f"{start:%Y/%m/%d}/out-6135550199-2001-{name_time(start)}-{uid}.wav", freqs=(500,),
             age=AN_HOUR)
    uuid = "2b3c4d5e-6f70-4a1b-8c2d-3e4f5a6b7c8e"
    tone_wav(freeswitch / f"{uuid}.wav", freqs=(700, 1500), age=AN_HOUR)
    fs_cdr = tmp_path / "fs.csv"
    fs_cdr.write_text(f'"C","6135550123","2001","public","{cdr_time(fs_start)}",'
                      f'"{cdr_time(fs_start + timedelta(seconds=1))}","{cdr_time(fs_start + timedelta(minutes=1))}",'
                      f'"60","59","NORMAL_CLEARING","{uuid}","","","PCMU","PCMU"\n')
    worker_env = {**env.cli_env, "CALLVAULT_PBX_FOLDERS": f"asterisk:{asterisk};freeswitch:{freeswitch}:{fs_cdr}",
                  "CALLVAULT_PBX_TIMEZONE": "America/Toronto"}
    result = CliRunner().invoke(app, ["worker", "--once", "--job", "capture.pbx_import", "--data-dir",
                                      str(env.data_dir)], env=worker_env)
    assert result.exit_code == 0, result.output
    assert len(stored(env.runtime, f"asterisk:{uid}")) == 1
    assert len(stored(env.runtime, f"freeswitch:{uuid}")) == 1
    bad = CliRunner().invoke(app, ["worker", "--once", "--job", "capture.pbx_import", "--data-dir", str(env.data_dir)],
                             env={**worker_env, "CALLVAULT_PBX_FOLDERS": "asterisk:relative/dir"})
    assert bad.exit_code == 1 and "capture.pbx_import: FAILED" in bad.output
    assert "CALLVAULT_PBX_FOLDERS entry 'asterisk:relative/dir': paths must be absolute" in caplog.text
