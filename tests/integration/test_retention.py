"""Retention end to end under both example policies, with a fixed clock: dates, cases, holds, the sweep,
its crash safety, the destruction register, and why a restored backup cannot bring a recording back."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text, update

from callvault.audit.models import AuditEntry
from callvault.capture import control
from callvault.capture.admission import NotRecordable
from callvault.core.errors import Conflict, NotFound
from callvault.jobs.registry import all_jobs
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.policy.schema import add_months
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.retention import service as retention
from callvault.retention.models import DestructionRecord, KeyDestruction
from callvault.retention.reapply import reapply
from callvault.retention.shred import Doomed, destroy_now, finish
from callvault.retention.sweep import dry_run, sweep
from callvault.storage.keys import Keyring, WrappedKey, load_keyring
from tests.conftest import POLICY_A
from tests.support.audio import wav_bytes
from tests.support.retention import T, World, world_for


@pytest.fixture()
def a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """Policy A (6 months; destroyed once the case resolves)."""
    yield from world_for(request, tmp_path, "a")


@pytest.fixture()
def b(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """Policy B (12 months, then permanently erased)."""
    yield from world_for(request, tmp_path, "b")


def run_sweep(world: World, **kwargs: object):  # type: ignore[no-untyped-def]
    return sweep(db=world.runtime.db, store=world.runtime.store, keyring=world.runtime.keyring, clock=world.clock,
                 **kwargs)  # type: ignore[arg-type]


def _manage(world: World):  # type: ignore[no-untyped-def]
    with world.runtime.db.unit_of_work() as session:
        return policy_service.current_policy(session, clock=world.clock)


def _renew(world: World, hold_id: str, *, on: datetime, until: date) -> None:
    """The holder reviews the hold on ``on`` and keeps it until ``until`` (policy A: at most 3 months ahead)."""
    world.at(on)
    with world.runtime.db.unit_of_work() as session:
        retention.renew_hold(session, policy=policy_service.current_policy(session, clock=world.clock), actor="exec",
                             actor_role="executive", hold_id=hold_id, review_on=until, reason="claim still open",
                             clock=world.clock)


# ------------------------------------------------------------------------------------------ policy A
def test_policy_a_recording_is_playable_at_179_days_and_gone_after_six_months(a: World) -> None:
    rec = a.ingest()
    row = a.row(rec)
    assert row.retention_rule == "max_age"
    assert row.destroy_after == T.replace(month=7)  # 15 Jan + 6 months
    a.at(T + timedelta(days=179))
    assert run_sweep(a).destroyed == 0
    assert a.playable(rec)

    a.at(T.replace(month=7) + timedelta(seconds=1))
    result = run_sweep(a)
    assert result.destroyed == 1 and result.by_rule == {"max_age": 1}
    assert a.intact_or_fully_destroyed(rec) == "destroyed"
    assert not a.playable(rec)
    record = a.record(rec)
    assert record is not None
    assert record.rule == "max_age" and record.content_sha256 == row.sha256
    assert record.kek_id == a.runtime.keyring.current_id and record.call_id == row.call_id
    destroyed = a.row(rec)
    assert destroyed.remote_number is None and destroyed.consent == {}  # the caller's data went with the audio


def test_policy_b_recording_is_kept_twelve_months_then_erased(b: World) -> None:
    rec = b.ingest()
    assert b.row(rec).destroy_after == T.replace(year=2027)
    b.at(T + timedelta(days=200))
    run_sweep(b)
    assert b.playable(rec)
    b.at(T.replace(year=2027) - timedelta(seconds=1))
    run_sweep(b)
    assert b.playable(rec)
    b.at(T.replace(year=2027))
    assert run_sweep(b).destroyed == 1
    assert b.intact_or_fully_destroyed(rec) == "destroyed"


def test_resolved_complaint_recording_goes_early_under_policy_a(a: World) -> None:
    linked = a.ingest(case_ref="COMPLAINT-7")
    other = a.ingest()
    policy = _manage(a)
    a.at(T + timedelta(days=3))
    with a.runtime.db.unit_of_work() as session:
        retention.open_case(session, policy=policy, actor="lead", actor_role="support_lead", ref="COMPLAINT-7",
                            kind="complaint", clock=a.clock)
    assert a.row(linked).retention_rule == "max_age"
    a.at(T + timedelta(days=10))
    with a.runtime.db.unit_of_work() as session:
        retention.resolve_case(session, policy=policy, actor="lead", actor_role="support_lead", ref="COMPLAINT-7",
                               clock=a.clock)
    row = a.row(linked)
    assert row.retention_rule == "case_resolved" and row.destroy_after == T + timedelta(days=10)
    a.at(T + timedelta(days=10, seconds=1))
    result = run_sweep(a)
    assert result.by_rule == {"case_resolved": 1}
    assert a.intact_or_fully_destroyed(linked) == "destroyed"
    assert a.record(linked).rule == "case_resolved"  # type: ignore[union-attr]
    assert a.intact_or_fully_destroyed(other) == "intact"


def test_resolving_a_case_does_not_shorten_retention_under_policy_b(b: World) -> None:
    rec = b.ingest(case_ref="CLAIM-1")
    policy = _manage(b)
    with b.runtime.db.unit_of_work() as session:
        retention.open_case(session, policy=policy, actor="hcs", actor_role="head_of_customer_success",
                            ref="CLAIM-1", kind="legal_claim", clock=b.clock)
        retention.resolve_case(session, policy=policy, actor="hcs", actor_role="head_of_customer_success",
                               ref="CLAIM-1", clock=b.clock)
    assert b.row(rec).retention_rule == "max_age"
    assert b.row(rec).destroy_after == T.replace(year=2027)


def test_held_recording_stays_past_its_date_and_goes_once_released(a: World) -> None:
    held = a.ingest()
    policy = _manage(a)
    with a.runtime.db.unit_of_work() as session:
        hold = retention.place_hold(session, policy=policy, actor="exec", actor_role="executive",
                                    reason="litigation: Smith v SmartSimple", owner="legal@example.com",
                                    review_on=date(2026, 4, 1), recording_id=held, clock=a.clock)
    assert a.row(held).on_hold
    _renew(a, hold.id, on=datetime(2026, 3, 30, 9, 0, tzinfo=UTC), until=date(2026, 6, 29))
    a.at(T.replace(month=7, day=20))  # past the 6-month cap; the review is overdue but not yet lapsed
    result = run_sweep(a)
    assert result.destroyed == 0 and result.held == 1 and result.holds_overdue == 1
    assert a.playable(held)
    code, output = a.cli("retention", "report", "--from", "2026-01-01", "--to", "2027-01-01", "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["held"][0]["reason"] == "litigation: Smith v SmartSimple"
    assert report["held"][0]["recordings_held"] == 1
    with a.runtime.db.unit_of_work() as session:
        retention.release_hold(session, policy=policy, actor="exec", actor_role="executive", hold_id=hold.id,
                               reason="claim settled", clock=a.clock)
    assert not a.row(held).on_hold
    assert run_sweep(a).destroyed == 1
    assert a.intact_or_fully_destroyed(held) == "destroyed"


def test_destruction_itself_refuses_a_held_recording_whoever_asks(a: World) -> None:
    """A hold placed after a caller chose what to destroy (a sweep's batch, a personal-call control)
    still stops the destruction: the step is refused and the key and audio stay."""
    held = a.ingest()
    policy = _manage(a)
    with a.runtime.db.unit_of_work() as session:
        retention.place_hold(session, policy=policy, actor="exec", actor_role="executive", reason="regulator",
                             owner="legal@example.com", review_on=date(2026, 4, 1), recording_id=held, clock=a.clock)
    with pytest.raises(Conflict, match="under legal hold"), a.runtime.db.unit_of_work() as session:
        row = session.get(Recording, held)
        assert row is not None
        destroy_now(session, keyring=a.runtime.keyring, doomed=[Doomed.of(row, "personal")], actor="alice")
    assert a.playable(held)
    with a.runtime.db.unit_of_work() as session:
        assert session.get(DataKey, held) is not None
        assert session.scalars(select(DestructionRecord).where(DestructionRecord.recording_id == held)).first() is None


def test_a_hold_on_a_case_keeps_every_recording_of_it(a: World) -> None:
    first, second = a.ingest(case_ref="INV-3"), a.ingest(case_ref="INV-3")
    policy = _manage(a)
    with a.runtime.db.unit_of_work() as session:
        retention.open_case(session, policy=policy, actor="exec", actor_role="executive", ref="INV-3",
                            kind="investigation", clock=a.clock)
        hold = retention.place_hold(session, policy=policy, actor="exec", actor_role="executive",
                                    reason="police request", owner="exec", review_on=date(2026, 4, 1), case_ref="INV-3",
                                    clock=a.clock)
    _renew(a, hold.id, on=datetime(2026, 3, 30, 9, 0, tzinfo=UTC), until=date(2026, 6, 29))
    a.at(T.replace(month=7, day=20))
    run_sweep(a)
    assert a.playable(first) and a.playable(second)


def test_specialist_cannot_place_a_hold_or_resolve_a_case(a: World) -> None:
    rec = a.ingest()
    policy = _manage(a)
    with pytest.raises(Exception, match="may not place legal holds"), a.runtime.db.unit_of_work() as session:
        retention.place_hold(session, policy=policy, actor="alice", actor_role="specialist", reason="mine",
                             owner="alice", review_on=date(2030, 1, 1), recording_id=rec, clock=a.clock)
    with pytest.raises(Exception, match="may not open cases"), a.runtime.db.unit_of_work() as session:
        retention.open_case(session, policy=policy, actor="alice", actor_role="specialist", ref="X",
                            kind="complaint", clock=a.clock)


# ------------------------------------------------------------------------------------------- the sweep
def test_sweep_killed_after_the_key_deletion_commit_is_finished_by_the_next_run(a: World) -> None:
    expired = [a.ingest(seed=i) for i in range(5)]
    fresh = [a.ingest(started=T + timedelta(days=100), seed=10 + i) for i in range(2)]
    a.at(T.replace(month=7, day=20))

    class Killed(Exception):
        pass

    def kill(_pending: object) -> None:
        raise Killed

    with pytest.raises(Killed):
        run_sweep(a, batch_size=2, after_keys_destroyed=kill)
    # Mid-way: the first batch's keys are gone (and listed); its rows and blobs are not finished yet.
    half = [r for r in expired if not a.has_key(r)]
    assert len(half) == 2
    for rec in half:
        assert a.row(rec).state == RecordingState.AVAILABLE and a.runtime.store.exists(a.row(rec).blob_key)
        assert a.record(rec) is not None and not a.playable(rec)
    assert a.count(Recording, Recording.state == RecordingState.AVAILABLE, Recording.id.in_(
        select(DestructionRecord.recording_id))) == 2
    for rec in set(expired) - set(half):
        assert a.intact_or_fully_destroyed(rec) == "intact"

    result = run_sweep(a, batch_size=2)
    assert result.resumed == 2 and result.destroyed == 3
    assert [a.intact_or_fully_destroyed(r) for r in expired] == ["destroyed"] * 5
    assert [a.intact_or_fully_destroyed(r) for r in fresh] == ["intact"] * 2
    assert a.count(Recording, Recording.state == RecordingState.AVAILABLE, Recording.id.in_(
        select(DestructionRecord.recording_id))) == 0
    assert run_sweep(a).destroyed == 0  # idempotent


def test_sweep_killed_before_its_commit_leaves_recordings_that_the_next_run_destroys(a: World) -> None:
    recs = [a.ingest(seed=i) for i in range(3)]
    a.at(T.replace(month=8))
    real_delete = a.runtime.store.delete
    calls = {"n": 0}

    def failing_delete(key: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk went away")
        real_delete(key)

    a.runtime.store.delete = failing_delete  # type: ignore[method-assign]
    with pytest.raises(OSError):
        run_sweep(a)
    a.runtime.store.delete = real_delete  # type: ignore[method-assign]
    run_sweep(a)
    assert [a.intact_or_fully_destroyed(r) for r in recs] == ["destroyed"] * 3


def test_dry_run_lists_what_would_go_and_why_and_changes_nothing(a: World) -> None:
    old, new = a.ingest(), a.ingest(started=T + timedelta(days=90))
    a.at(T.replace(month=7, day=16))
    result = dry_run(a.runtime.db, clock=a.clock)
    assert [c.recording_id for c in result.candidates] == [old]
    assert result.candidates[0].rule == "max_age"
    assert a.playable(old) and a.playable(new)
    code, output = a.cli("retention", "sweep", "--dry-run", "--now", "2026-07-16T00:00:00+00:00", "--json")
    assert code == 0, output
    listed = json.loads(output)["would_destroy"]
    assert [c["recording_id"] for c in listed] == [old]
    assert a.playable(old)


def test_cli_sweep_with_now_destroys_and_reports_by_rule(a: World) -> None:
    rec = a.ingest()
    code, output = a.cli("retention", "sweep", "--now", "2026-07-16T00:00:00+00:00")
    assert code == 0, output
    assert "Destroyed 1 recording(s) (1 by max_age)" in output
    assert a.intact_or_fully_destroyed(rec) == "destroyed"
    code, output = a.cli("retention", "report", "--from", "2026-01-01", "--to", "2027-01-01", "--json")
    report = json.loads(output)
    assert report["destroyed_total"] == 1
    assert report["destroyed"][0]["by_rule"] == {"max_age": 1}


def test_cli_refuses_a_sweep_time_without_an_offset(a: World) -> None:
    code, output = a.cli("retention", "sweep", "--now", "2026-07-16T00:00:00")
    assert code == 2
    assert "now" in output and "Traceback" not in output


def test_worker_job_runs_the_sweep(a: World) -> None:
    rec = a.ingest()
    a.at(T.replace(month=7, day=16))
    assert all_jobs()["retention.sweep"].run(a.runtime) == 1
    assert a.intact_or_fully_destroyed(rec) == "destroyed"


def test_a_destroyed_call_cannot_be_ingested_again(a: World) -> None:
    rec = a.ingest(call_id="once", consent=None)  # no consent evidence: quarantined, then destroyed
    with a.runtime.db.unit_of_work() as session:
        pending = control.resolve_quarantine(session, policy=_manage(a), actor=Actor("u", "admin", "admin"),
                                             recording_id=rec, decision="destroy", reason="no notice was given",
                                             keyring=a.runtime.keyring, clock=a.clock)
    finish(a.runtime.db, a.runtime.store, a.runtime.keyring, pending, clock=a.clock)
    with pytest.raises(Conflict, match="destroyed"):
        a.ingest(call_id="once")
    a.ingest(call_id="twice")  # one the sweep destroyed is past its retention: refused for that, first
    a.at(T.replace(month=8))
    run_sweep(a)
    with pytest.raises(NotRecordable, match="retention ended"):
        a.ingest(call_id="twice")


# ---------------------------------------------------------------- expired on arrival (issue 23, finding 8)
@pytest.mark.parametrize(("policy", "months"), [("a", 6), ("b", 12)])
def test_a_call_past_its_retention_is_not_stored_and_the_refusal_is_audited(
        request: pytest.FixtureRequest, policy: str, months: int) -> None:
    world: World = request.getfixturevalue(policy)
    world.at(add_months_dt(T, months) + timedelta(days=60))
    with pytest.raises(NotRecordable) as refused:
        world.ingest(call_id="old-call", started=T)
    assert refused.value.problems[0].location == "started_at"
    assert f"retention ended {add_months_dt(T, months).date().isoformat()}" in refused.value.message
    assert f"{months} months" in refused.value.message
    assert world.count(Recording) == 0 and list(world.runtime.store.iter_keys()) == []
    with world.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "recording.not_stored")).one()
    assert (entry.decision, entry.object_id) == ("deny", "old-call") and "retention ended" in entry.reason


def test_a_call_just_inside_its_retention_is_stored_and_goes_at_its_date(a: World) -> None:
    a.at(T.replace(month=7) - timedelta(minutes=1))
    rec = a.ingest(started=T)
    assert a.playable(rec) and a.row(rec).destroy_after == T.replace(month=7)
    a.at(T.replace(month=7))
    assert run_sweep(a).destroyed == 1


def test_a_call_whose_case_was_resolved_is_not_stored_under_policy_a_but_a_hold_on_the_case_keeps_one(
        a: World) -> None:
    policy = _manage(a)
    with a.runtime.db.unit_of_work() as session:
        for ref in ("RESOLVED-1", "HELD-1"):
            retention.open_case(session, policy=policy, actor="lead", actor_role="support_lead", ref=ref,
                                kind="complaint", clock=a.clock)
        retention.resolve_case(session, policy=policy, actor="lead", actor_role="support_lead", ref="RESOLVED-1",
                               clock=a.clock)
        hold = retention.place_hold(session, policy=policy, actor="exec", actor_role="executive", reason="litigation",
                                    owner="legal@example.com", review_on=date(2026, 4, 1), case_ref="HELD-1",
                                    clock=a.clock)
    a.at(T + timedelta(days=1))
    with pytest.raises(NotRecordable, match="rule case_resolved"):
        a.ingest(started=T - timedelta(days=1), case_ref="RESOLVED-1")
    _renew(a, hold.id, on=datetime(2026, 3, 30, 9, 0, tzinfo=UTC), until=date(2026, 6, 29))
    a.at(T.replace(month=7, day=20))
    rec = a.ingest(started=T - timedelta(days=1), case_ref="HELD-1")  # six months old, but its case is held
    assert a.row(rec).on_hold and a.playable(rec)
    assert run_sweep(a).destroyed == 0


def test_cli_ingest_of_a_call_past_its_retention_exits_2_naming_the_rule(a: World, tmp_path: Path) -> None:
    started = datetime.now(UTC) - timedelta(days=245)  # the CLI runs on the system's clock
    audio, meta = tmp_path / "old.wav", tmp_path / "old.json"
    audio.write_bytes(wav_bytes(1.0))
    meta.write_text(json.dumps({
        "call_id": "cli-old", "direction": "inbound", "started_at": started.isoformat(),
        "ended_at": (started + timedelta(seconds=1)).isoformat(), "extension": "2001", "team": "customer_support",
        "consent": {"announcement_played_at": started.isoformat(), "announcement_version": "1"}}))
    code, output = a.cli("ingest", str(audio), "--metadata", str(meta))
    assert code == 2, output
    assert "retention ended" in output and "max_age" in output and "Traceback" not in output
    assert a.count(Recording) == 0


def add_months_dt(moment: datetime, months: int) -> datetime:
    day = add_months(moment.date(), months)
    return moment.replace(year=day.year, month=day.month, day=day.day)


def test_a_new_policy_version_recomputes_destruction_dates_at_the_next_sweep(a: World) -> None:
    rec = a.ingest()
    text = POLICY_A.read_text().replace('version: "2026.12"', 'version: "2027.1"').replace(
        "max_age_months: 6", "max_age_months: 3").replace("effective_from: 2024-01-01", "effective_from: 2026-02-01")
    with a.runtime.db.unit_of_work() as session:
        policy_service.load_policy(session, text=text, source="test", actor="test", clock=a.clock)
    a.at(T.replace(month=4, day=16))
    result = run_sweep(a)
    assert result.recomputed >= 1 and result.destroyed == 1
    assert a.intact_or_fully_destroyed(rec) == "destroyed"


# ------------------------------------------------------------------------------------ backups
def test_a_restored_backup_cannot_play_a_destroyed_recording(a: World) -> None:
    rec = a.ingest()
    row = a.row(rec)
    blob = a.runtime.store.read_at(row.blob_key, 0, a.runtime.store.size(row.blob_key))
    with a.runtime.db.unit_of_work() as session:
        key = session.get(DataKey, rec)
        assert key is not None
        saved_key = {name: getattr(key, name) for name in
                     ("recording_id", "kek_id", "wrapped_key", "chunk_size", "ciphertext_size", "created_at")}
    a.at(T.replace(month=8))
    run_sweep(a)
    assert a.intact_or_fully_destroyed(rec) == "destroyed"

    # Restore the old rows and the old blob, as a backup of the database and of the blob store would.
    with a.runtime.db.unit_of_work() as session:
        session.execute(insert(DataKey), [saved_key])
        session.execute(update(Recording).where(Recording.id == rec).values(
            state=RecordingState.AVAILABLE, sha256=row.sha256))
    with a.runtime.store.writer(row.blob_key) as sink:
        sink.write(blob)
    with pytest.raises(NotFound, match="destroyed"):
        a.audio(rec)
    # A fresh process (new keyring from the key directory) refuses it just the same.
    fresh = load_keyring(a.settings.key_dir, a.settings.env)
    with pytest.raises(NotFound):
        fresh.unwrap(WrappedKey(saved_key["kek_id"], saved_key["wrapped_key"]), recording_id=rec)
    # The limit, documented in docs/retention.md: the bare KEK without the list still unwraps it, so
    # someone holding the KEK file, an old database backup and an old blob can decrypt offline until
    # the KEK is retired.
    bare = Keyring(_kek_bytes(a), a.runtime.keyring.current_id)
    assert len(bare.unwrap(WrappedKey(saved_key["kek_id"], saved_key["wrapped_key"]), recording_id=rec)) == 32


def _kek_bytes(world: World) -> dict[str, bytes]:
    import base64

    return {p.stem: base64.b64decode(p.read_text()) for p in world.settings.key_dir.glob("*.kek")}


def test_a_restored_sqlite_file_cannot_play_a_destroyed_recording(a: World) -> None:
    if not a.settings.is_sqlite:
        pytest.skip("file-level restore is shown on SQLite; the row-level test covers PostgreSQL")
    rec = a.ingest()
    row = a.row(rec)
    db_file = Path(a.settings.database_url.removeprefix("sqlite:///"))
    blob_file = Path(a.settings.storage_url) / row.blob_key
    backup = db_file.with_name("backup.db")
    src, dst = sqlite3.connect(db_file), sqlite3.connect(backup)
    src.backup(dst)  # a consistent online backup, as an operator's backup job would take
    src.close()
    dst.close()
    blob_backup = blob_file.read_bytes()
    a.at(T.replace(month=8))
    run_sweep(a)
    assert a.intact_or_fully_destroyed(rec) == "destroyed"
    a.runtime.db.dispose()
    for suffix in ("-wal", "-shm"):
        Path(str(db_file) + suffix).unlink(missing_ok=True)
    shutil.copyfile(backup, db_file)
    blob_file.write_bytes(blob_backup)
    assert a.row(rec).state == RecordingState.AVAILABLE and a.has_key(rec)  # the backup brought the key row back
    with pytest.raises(NotFound, match="destroyed"):
        a.audio(rec)


def test_truncating_a_recording_leaves_no_way_back_to_the_cut_audio(a: World) -> None:
    """The key-destruction list is per wrapped key: the truncated recording plays, the old key never again."""
    rec = a.ingest(seconds=4.0)
    with a.runtime.db.unit_of_work() as session:
        old = session.get(DataKey, rec)
        assert old is not None
        old_wrapped = WrappedKey(old.kek_id, old.wrapped_key)
    assert a.stop(rec, T + timedelta(seconds=1)).startswith("truncated")  # relayed within the agent's window
    assert a.playable(rec)
    with pytest.raises(NotFound):
        a.runtime.keyring.unwrap(old_wrapped, recording_id=rec)
    assert a.count(KeyDestruction, KeyDestruction.completed_at.is_(None)) == 0


def test_the_cli_files_a_control_only_as_the_integration_account_never_as_an_administrator(a: World) -> None:
    """Issue 23 (6): ``callvault control`` runs ``--as`` an account; the administrator's is refused (A14, B4),
    the refusal is audited as a denial, and the call is recorded normally."""
    code, output = a.cli("control", "personal", "--call", "cli-call-1", "--as", "admin")
    assert code == 5, output
    assert "controls.integration_roles" in output and "telephony_integration" in output and "A14" in output
    with a.runtime.db.unit_of_work() as session:
        [denial] = session.scalars(select(AuditEntry).where(AuditEntry.action == "recording.control_personal")).all()
    assert (denial.actor, denial.decision, denial.object_id) == ("admin", "deny", "cli-call-1")
    rec = a.ingest(call_id="cli-call-1", seconds=3.0)
    assert a.row(rec).state == RecordingState.AVAILABLE and a.row(rec).duration_seconds == 3.0
    code, output = a.cli("control", "stop", "--call", "cli-call-2", "--at", (T + timedelta(seconds=1)).isoformat(),
                         "--as", a.integration_account())
    assert code == 0, output
    assert a.row(a.ingest(call_id="cli-call-2", seconds=3.0)).duration_seconds == 1.0
    code, output = a.cli("control", "stop", "--call", "cli-call-3", "--at", T.isoformat())
    assert code != 0 and "--as" in output, output  # nobody by default


def test_destroyed_key_rows_are_gone_from_the_database(a: World) -> None:
    recs = [a.ingest(seed=i) for i in range(3)]
    a.at(T.replace(month=8))
    run_sweep(a)
    with a.runtime.db.unit_of_work() as session:
        assert session.scalars(select(DataKey).where(DataKey.recording_id.in_(recs))).all() == []
        session.execute(delete(DataKey).where(DataKey.recording_id.in_(recs)))  # nothing left to delete


def test_integrity_check_does_not_report_destroyed_recordings_as_damaged(a: World) -> None:
    a.ingest()
    a.at(T.replace(month=8))
    run_sweep(a)
    code, output = a.cli("check")
    assert code == 0, output
    assert "0 problem(s) found" in output


def test_two_workers_sweeping_at_once_never_destroy_the_same_recording_twice(a: World) -> None:
    recs = [a.ingest(seed=i) for i in range(20)]
    a.at(T.replace(month=8))
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(run_sweep(a, batch_size=3).destroyed)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(results) == 20
    assert a.count(DestructionRecord) == 20
    assert [a.intact_or_fully_destroyed(r) for r in recs] == ["destroyed"] * 20


def test_a_restore_check_running_while_another_worker_shreds_leaves_that_destruction_alone(a: World) -> None:
    """The race CI found on PostgreSQL: worker 1 has listed a key as destroyed and not yet committed;
    worker 2's sweep starts by re-applying the list (``reapply``), sees the key row still there and, before the fix,
    wrote a second destruction record for it (a unique-key error that stopped its sweep). Now worker 2
    waits for worker 1's claim and leaves the recording it destroyed alone: one record, no re-destruction."""
    if a.runtime.db.dialect != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): the second sweep cannot start mid-destruction")
    rec = a.ingest()
    a.at(T.replace(month=8))
    db = a.runtime.db
    session = db.session_factory()
    errors: list[BaseException] = []
    try:
        row = session.get(Recording, rec)
        assert row is not None
        pending = destroy_now(session, keyring=a.runtime.keyring, doomed=[Doomed.of(row, "max_age")],
                              actor="system", clock=a.clock)  # listed and uncommitted: worker 1 is mid-transaction

        def second_worker() -> None:
            try:
                reapply(db, a.runtime.store, a.runtime.keyring, trigger="sweep", clock=a.clock)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        thread = threading.Thread(target=second_worker)
        thread.start()
        # Wait on the event meant: worker 2's statement blocked behind worker 1's transaction.
        # Autocommit: PostgreSQL keeps one pg_stat_activity snapshot for a whole transaction.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            waited = 0
            while not watcher.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                           "AND datname = current_database()")).scalar():
                assert thread.is_alive() and waited < 600, "the second worker never reached worker 1's rows"
                watcher.execute(text("SELECT pg_sleep(0.05)"))
                waited += 1
        session.commit()
    finally:
        session.close()
    thread.join()
    finish(db, a.runtime.store, a.runtime.keyring, pending, clock=a.clock)  # worker 1's step 2
    assert errors == []
    assert a.count(DestructionRecord, DestructionRecord.recording_id == rec) == 1
    assert a.count(AuditEntry, AuditEntry.action == "recording.re_destroyed") == 0
    assert a.intact_or_fully_destroyed(rec) == "destroyed"
