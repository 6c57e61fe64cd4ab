"""Consent and recording control at ingest and after it: scope, the announcement, stop/pause/personal,
quarantine resolution. Everything refused is audited without content and leaves nothing stored."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from sqlalchemy import select

from callvault.access import service as access
from callvault.audit.models import AuditEntry
from callvault.capture import control
from callvault.capture.admission import NotRecordable
from callvault.capture.models import RecordingControl
from callvault.core.errors import AccessDenied, Conflict, InvalidInput, NotFound
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.quality import sampling
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.retention import service as retention
from callvault.retention.models import KeyDestruction
from callvault.retention.shred import finish
from callvault.subject_requests import service as subject_requests
from tests.support.audio import wav_bytes
from tests.support.retention import PASSWORD, T, World, world_for

ADMIN = Actor(user_id="u-admin", username="admin", role="admin")
ALICE = Actor(user_id="u-alice", username="alice", role="specialist", extension="2001", team="customer_support")
BOB = Actor(user_id="u-bob", username="bob", role="specialist", extension="2002", team="customer_support")
LEAD = Actor(user_id="u-lead", username="lead", role="support_lead", team="customer_support")
IT = Actor(user_id="u-it", username="it", role="it_staff")
PBX = Actor(user_id="u-pbx", username="pbx", role="telephony_integration")
"""The phone system's integration account (policy A's controls.integration_roles): relays the agent's controls."""




@pytest.fixture()
def a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "a")


@pytest.fixture()
def b(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "b")


def _frames(data: bytes) -> np.ndarray:
    samples, _rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    return np.asarray(samples)


def _last_audit(world: World, action: str) -> AuditEntry:
    with world.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                .order_by(AuditEntry.seq.desc()).limit(1)).first()
    assert entry is not None, f"no {action} audit entry"
    return entry


def _file(world: World, actor: Actor, kind: str, *, call_id: str | None = None, recording_id: str | None = None,
          at_s: float | None = None, until_s: float | None = None) -> str:
    with world.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=world.clock)
        filed = control.file_control(
            session, policy=policy, actor=actor, kind=kind, call_id=call_id, recording_id=recording_id,
            at=T + timedelta(seconds=at_s) if at_s is not None else None,
            until=T + timedelta(seconds=until_s) if until_s is not None else None, clock=world.clock)
    return control.apply_to_stored(db=world.runtime.db, store=world.runtime.store, keyring=world.runtime.keyring,
                                   filed=filed, actor=actor, clock=world.clock)


# --------------------------------------------------------------------------------------------- scope
@pytest.mark.parametrize("overrides, location", [
    ({"team": "billing"}, "team"),
    ({"extension": "2099"}, "extension"),          # A8: the private line
    ({"extension": "3001"}, "extension"),          # A1: not a Customer Support extension
])
def test_call_outside_policy_a_scope_is_not_stored_and_the_refusal_is_audited(
        a: World, overrides: dict[str, Any], location: str) -> None:
    with pytest.raises(NotRecordable) as refused:
        a.ingest(call_id="out-of-scope", **overrides)
    assert [p.location for p in refused.value.problems] == [location]
    assert a.count(Recording) == 0
    assert list(a.runtime.store.iter_keys()) == []
    entry = _last_audit(a, "recording.not_stored")
    assert entry.decision == "deny" and entry.object_id == "out-of-scope"
    assert "+1416555" not in str(entry.details)  # the caller's number is not logged


def test_call_on_a_number_policy_b_does_not_record_is_refused(b: World) -> None:
    with pytest.raises(NotRecordable, match="not a recorded number") as refused:
        b.ingest(local_number="+61 2 9876 5432")
    assert refused.value.problems[0].location == "local_number"
    assert b.count(Recording) == 0


def test_cli_ingest_of_an_out_of_scope_call_exits_2(a: World, tmp_path: Path) -> None:
    audio = tmp_path / "call.wav"
    audio.write_bytes(wav_bytes(1.0))
    meta = tmp_path / "call.json"
    meta.write_text('{"call_id": "cli-out", "direction": "inbound", "started_at": "2026-01-15T10:00:00+00:00", '
                    '"ended_at": "2026-01-15T10:00:01+00:00", "extension": "2099", "team": "customer_support"}')
    code, output = a.cli("ingest", str(audio), "--metadata", str(meta))
    assert code == 2
    assert "private line" in output and "Traceback" not in output


# ------------------------------------------------------------------------------------- announcement
def test_call_that_ended_during_the_announcement_keeps_no_audio(a: World) -> None:
    consent = {"announcement_played_at": T.isoformat(), "announcement_version": "1",
               "announcement_ended_at": (T + timedelta(seconds=8)).isoformat()}
    with pytest.raises(NotRecordable, match="ended during the announcement"):
        a.ingest(call_id="hung-up", seconds=2.0, consent=consent)
    assert a.count(Recording) == 0
    assert _last_audit(a, "recording.not_stored").clauses == ["A14"]


def test_stored_audio_starts_after_the_announcement(a: World) -> None:
    original = wav_bytes(4.0, seed=3)
    consent = {"announcement_played_at": T.isoformat(), "announcement_version": "1",
               "announcement_ended_at": (T + timedelta(seconds=1.5)).isoformat()}
    rec = a.ingest(seconds=4.0, audio=original, consent=consent)
    stored = _frames(a.audio(rec))
    assert np.array_equal(stored, _frames(original)[12000:])  # 1.5 s at 8 kHz cut, the rest sample-exact
    assert a.row(rec).duration_seconds == pytest.approx(2.5)


# ------------------------------------------------------------------------------ controls during a call
def test_stop_filed_during_the_call_keeps_nothing_after_it(a: World) -> None:
    original = wav_bytes(4.0, seed=4)
    assert "kept" in _file(a, ALICE, "stop", call_id="live-1", at_s=1.0)
    rec = a.ingest(call_id="live-1", seconds=4.0, audio=original)
    assert np.array_equal(_frames(a.audio(rec)), _frames(original)[:8000])
    with a.runtime.db.unit_of_work() as session:
        events = control.timeline(session, recording=session.get(Recording, rec))  # type: ignore[arg-type]
        assert [(e.kind, e.recording_id, e.applied_at is not None) for e in events] == [("stop", rec, True)]


def test_paused_span_is_silenced_and_the_timeline_records_it(a: World) -> None:
    original = wav_bytes(4.0, seed=5)
    _file(a, ALICE, "pause", call_id="live-2", at_s=1.0)
    _file(a, ALICE, "resume", call_id="live-2", at_s=2.0)
    rec = a.ingest(call_id="live-2", seconds=4.0, audio=original)
    stored, source = _frames(a.audio(rec)), _frames(original)
    assert len(stored) == len(source)
    assert not stored[8000:16000].any()
    assert np.array_equal(stored[:8000], source[:8000]) and np.array_equal(stored[16000:], source[16000:])
    with a.runtime.db.unit_of_work() as session:
        kinds = [e.kind for e in control.timeline(session, recording=session.get(Recording, rec))]  # type: ignore[arg-type]
    assert kinds == ["pause", "resume"]


def test_personal_call_marked_during_the_call_is_never_stored(a: World) -> None:
    _file(a, ALICE, "personal", call_id="live-3")
    with pytest.raises(NotRecordable, match="personal"):
        a.ingest(call_id="live-3")
    assert a.count(Recording) == 0 and list(a.runtime.store.iter_keys()) == []


def test_a_specialists_control_for_a_call_on_another_extension_is_ignored(a: World) -> None:
    _file(a, BOB, "personal", call_id="live-4")
    rec = a.ingest(call_id="live-4")  # alice's call: bob's "personal" does not apply
    assert a.playable(rec)
    with a.runtime.db.unit_of_work() as session:
        events = control.timeline(session, recording=session.get(Recording, rec))  # type: ignore[arg-type]
    assert events[0].outcome.startswith("ignored")


def test_leadership_cannot_control_a_call(a: World) -> None:
    with pytest.raises(AccessDenied):
        _file(a, LEAD, "stop", call_id="live-5", at_s=1.0)


# ------------------------------------------------------------------------------------- after the fact
def test_stop_after_the_fact_truncates_under_a_new_key_and_destroys_the_old_one(a: World) -> None:
    original = wav_bytes(4.0, seed=6)
    rec = a.ingest(seconds=4.0, audio=original)
    before = a.row(rec)
    with a.runtime.db.unit_of_work() as session:
        old_key = session.get(DataKey, rec)
        assert old_key is not None
        old_wrapped = old_key.wrapped_key
    outcome = _file(a, ALICE, "stop", recording_id=rec, at_s=1.0)
    assert outcome == "truncated at 1.0 s"
    assert np.array_equal(_frames(a.audio(rec)), _frames(original)[:8000])
    after = a.row(rec)
    assert after.blob_key != before.blob_key and after.sha256 != before.sha256
    assert not a.runtime.store.exists(before.blob_key)
    with a.runtime.db.unit_of_work() as session:
        assert session.get(DataKey, rec).wrapped_key != old_wrapped  # type: ignore[union-attr]
        log = session.scalars(select(KeyDestruction).where(KeyDestruction.recording_id == rec)).one()
    assert log.reason == "replaced" and log.completed_at is not None
    assert _last_audit(a, "recording.edited").object_id == rec


@pytest.mark.parametrize("kind", ["personal", "stop", "pause", "announced"])
def test_administering_roles_cannot_control_a_call_not_yet_stored_and_it_is_stored_whole(a: World, kind: str) -> None:
    """Issue 23 (6): admin and it_staff administer the system; they are neither the agent on the call nor the
    integration relaying the agent's act (controls.integration_roles), so they never stop, pause or wipe it."""
    for actor in (ADMIN, IT):
        with pytest.raises(AccessDenied) as refused:
            _file(a, actor, kind, call_id=f"admin-{kind}", at_s=None if kind == "personal" else 1.0,
                  until_s=2.0 if kind in ("pause", "announced") else None)
        assert "controls.integration_roles (telephony_integration)" in refused.value.message
        assert "A14" in refused.value.clauses and "B4" in refused.value.clauses
    rec = a.ingest(call_id=f"admin-{kind}", seconds=4.0)
    assert a.intact_or_fully_destroyed(rec) == "intact" and a.row(rec).duration_seconds == pytest.approx(4.0)


def test_the_integration_relays_the_agents_stop_for_a_call_not_yet_stored_in_its_own_capacity(a: World) -> None:
    _file(a, PBX, "stop", call_id="pbx-stop", at_s=1.0)
    entry = _last_audit(a, "recording.control_stop")
    assert (entry.actor, entry.decision, entry.details["capacity"]) == ("pbx", "allow", "integration")
    _file(a, ALICE, "pause", call_id="pbx-stop", at_s=0.5, until_s=0.7)
    assert _last_audit(a, "recording.control_pause").details["capacity"] == "agent"
    rec = a.ingest(call_id="pbx-stop", seconds=4.0)
    assert a.row(rec).duration_seconds == pytest.approx(1.0)


def test_an_administrators_personal_filed_before_the_rule_is_ignored_when_the_call_arrives(a: World) -> None:
    """An event an earlier version accepted from an administering role (``administrative``) for a call not yet
    stored: the policy in force decides, so it is not applied, and the timeline says why."""
    with a.runtime.db.unit_of_work() as session:
        session.add(RecordingControl(
            id="admin-personal", call_id="old-admin-personal", recording_id=None, kind="personal", at=None,
            requested_by="it", requested_role="it_staff", requester_extension=None, administrative=True,
            created_at=a.clock.now(), outcome=""))
    rec = a.ingest(call_id="old-admin-personal", seconds=3.0)
    assert a.intact_or_fully_destroyed(rec) == "intact"
    with a.runtime.db.unit_of_work() as session:
        event = session.get(RecordingControl, "admin-personal")
        assert event is not None and event.applied_at is not None
        assert event.outcome.startswith("ignored") and "controls.integration_roles" in event.outcome


def test_pause_after_the_fact_silences_only_that_span(a: World) -> None:
    original = wav_bytes(4.0, seed=7)
    rec = a.ingest(seconds=4.0, audio=original)
    with pytest.raises(AccessDenied, match=r"controls\.integration_roles"):
        _file(a, ADMIN, "pause", recording_id=rec, at_s=2.0, until_s=3.0)
    _file(a, PBX, "pause", recording_id=rec, at_s=2.0, until_s=3.0)
    stored, source = _frames(a.audio(rec)), _frames(original)
    assert not stored[16000:24000].any()
    assert np.array_equal(stored[:16000], source[:16000]) and np.array_equal(stored[24000:], source[24000:])


def test_personal_after_the_fact_destroys_the_recording_and_keeps_a_content_free_record(a: World) -> None:
    rec = a.ingest()
    sha = a.row(rec).sha256
    assert "destroyed" in _file(a, ALICE, "personal", recording_id=rec)
    assert a.intact_or_fully_destroyed(rec) == "destroyed"
    record = a.record(rec)
    assert record is not None and record.rule == "personal_call" and record.content_sha256 == sha


# ------------------------------------------------- personal after the call: evidence stays (issue 23, finding 6)
def _user(world: World, username: str, role: str, extension: str | None = None) -> Actor:
    with world.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=world.clock)
        user = identity.create_user(session, actor="test", policy=policy, username=username, role=role,
                                    password=PASSWORD, extension=extension)
        return Actor(user_id=user.id, username=username, role=role, extension=extension,
                     acknowledged_policy_sha256=policy.content_sha256)


def test_a_call_in_a_quality_review_sample_cannot_be_marked_personal(a: World) -> None:
    rec = a.ingest()
    with a.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=a.clock)
        period = sampling.period_between(T.date(), T.date(), sampling.rules_of(policy).sampling)
        drawn = sampling.run_sample(session, policy=policy, period=period, trigger="on_demand", actor="lead",
                                    clock=a.clock)
        assert drawn.selected == [rec]
    with pytest.raises(Conflict, match="quality review") as refused:
        _file(a, ALICE, "personal", recording_id=rec)
    assert "B8" in refused.value.message
    assert a.playable(rec)


def test_a_call_named_by_an_open_request_of_its_operator_cannot_be_marked_personal(a: World) -> None:
    rec = a.ingest()
    alice = _user(a, "alice", "specialist", "2001")
    with a.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=a.clock)
        subject_requests.file_own(session, policy=policy, user=identity.get_user(session, "alice"), date_from=None,
                                  date_to=None, description="all my calls", source_ip=None, clock=a.clock)
    with pytest.raises(Conflict, match="request for their own recordings") as refused:
        _file(a, alice, "personal", recording_id=rec)
    assert "B10" in refused.value.message
    assert a.playable(rec)


def test_a_call_named_by_a_pending_access_request_cannot_be_marked_personal(b: World) -> None:
    rec = b.ingest()
    sam = _user(b, "sam", "specialist", "3001")
    lead = _user(b, "lead", "support_lead")
    with b.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=b.clock)
        access.create_request(session, policy=policy, actor=lead, clock=b.clock, new=access.NewRequest(
            recording_ids=(rec,), purpose="staff_performance", crm_ref="CRM-77",
            justification="Coaching on how the renewal was explained."))
    with pytest.raises(Conflict, match="access request") as refused:
        _file(b, sam, "personal", recording_id=rec)
    assert "B6" in refused.value.message
    assert b.playable(rec)


def test_personal_filed_after_the_call_ended_is_not_applied_when_the_call_arrives(a: World) -> None:
    a.at(T + timedelta(minutes=5))
    _file(a, ALICE, "personal", call_id="late-personal")
    rec = a.ingest(call_id="late-personal", started=T)  # ended at T + 2 s, five minutes before the event
    assert a.playable(rec)
    with a.runtime.db.unit_of_work() as session:
        [event] = control.timeline(session, recording=session.get(Recording, rec))  # type: ignore[arg-type]
    assert event.outcome.startswith("not applied") and "after the call ended" in event.outcome
    refusal = _last_audit(a, "recording.control_personal")
    assert refusal.decision == "deny" and refusal.object_id == "late-personal"


def test_stop_at_the_very_start_destroys_the_recording(a: World) -> None:
    rec = a.ingest()
    _file(a, ALICE, "stop", recording_id=rec, at_s=0.0)
    assert a.record(rec).rule == "stopped"  # type: ignore[union-attr]


def test_colleague_cannot_stop_someone_elses_recording(a: World) -> None:
    rec = a.ingest()
    with pytest.raises(AccessDenied):
        _file(a, BOB, "stop", recording_id=rec, at_s=1.0)
    assert a.playable(rec)


def test_flac_recording_is_cut_and_stays_flac(a: World) -> None:
    original = wav_bytes(3.0, seed=8, fmt="FLAC", subtype="PCM_16")
    rec = a.ingest(seconds=3.0, audio=original)
    _file(a, ALICE, "stop", recording_id=rec, at_s=2.0)
    data = a.audio(rec)
    assert data[:4] == b"fLaC"
    assert np.array_equal(_frames(data), _frames(original)[:16000])


# ----------------------------------------------------------------------------------------- quarantine
def _resolve(world: World, actor: Actor, rec: str, decision: str) -> None:
    with world.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=world.clock)
        pending = control.resolve_quarantine(session, policy=policy, actor=actor, recording_id=rec,
                                             decision=decision, reason="evidence in the PBX log",
                                             keyring=world.runtime.keyring, clock=world.clock)
    finish(world.runtime.db, world.runtime.store, world.runtime.keyring, pending, clock=world.clock)


def test_admin_releases_a_quarantined_recording_with_a_reason(a: World) -> None:
    rec = a.ingest(consent=None)
    assert a.row(rec).quarantined
    _resolve(a, ADMIN, rec, "release")
    assert not a.row(rec).quarantined
    entry = _last_audit(a, "recording.quarantine_release")
    assert entry.reason == "evidence in the PBX log"


def test_admin_destroys_a_quarantined_recording(a: World) -> None:
    rec = a.ingest(consent=None)
    _resolve(a, ADMIN, rec, "destroy")
    assert a.intact_or_fully_destroyed(rec) == "destroyed"
    assert a.record(rec).rule == "quarantine_destroyed"  # type: ignore[union-attr]


def test_leadership_cannot_resolve_quarantine(a: World) -> None:
    rec = a.ingest(consent=None)
    with pytest.raises(AccessDenied):
        _resolve(a, LEAD, rec, "release")
    assert a.row(rec).quarantined and a.row(rec).state == RecordingState.AVAILABLE


def test_destroyed_recording_cannot_be_controlled(a: World) -> None:
    rec = a.ingest()
    _file(a, ALICE, "personal", recording_id=rec)
    with pytest.raises(Exception, match="already destroyed"):
        _file(a, ALICE, "stop", recording_id=rec, at_s=1.0)
    with pytest.raises(NotFound):
        _file(a, ALICE, "stop", recording_id="no-such-id", at_s=1.0)


# ------------------------------------------------------------------------------- legal hold outranks
def _hold(world: World, rec: str) -> str:
    with world.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=world.clock)
        hold = retention.place_hold(session, policy=policy, actor="exec", actor_role="executive",
                                    reason="litigation hold", owner="legal@example.com",
                                    review_on=world.clock.now().date() + timedelta(days=60), recording_id=rec,
                                    clock=world.clock)
        return hold.id


def _release(world: World, hold_id: str) -> None:
    with world.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=world.clock)
        retention.release_hold(session, policy=policy, actor="exec", actor_role="executive", hold_id=hold_id,
                               reason="case settled", clock=world.clock)


def _apply_deferred(world: World) -> int:
    return control.apply_deferred(db=world.runtime.db, store=world.runtime.store, keyring=world.runtime.keyring,
                                  clock=world.clock)


@pytest.mark.parametrize(("kind", "at_s"), [("stop", 1.0), ("pause", 1.0)])
def test_a_legal_hold_defers_stop_and_pause_until_it_is_released(a: World, kind: str, at_s: float | None) -> None:
    """RELIABILITY 11: a hold outranks destruction and alteration; refused on the record, resumed after."""
    original = wav_bytes(3.0, seed=31)
    rec = a.ingest(seconds=3.0, audio=original)
    hold_id = _hold(a, rec)
    outcome = _file(a, ALICE, kind, recording_id=rec, at_s=at_s)
    assert "legal hold" in outcome
    assert a.audio(rec) == original, "a held recording was altered"
    refusal = _last_audit(a, "recording.control_deferred")
    assert refusal.decision == "deny" and refusal.object_id == rec and refusal.reason == "legal hold"
    assert _apply_deferred(a) == 0  # still held: the worker leaves it alone
    assert a.audio(rec) == original
    _release(a, hold_id)
    assert _apply_deferred(a) == 1
    assert a.playable(rec) and a.audio(rec) != original
    assert _apply_deferred(a) == 0, "a deferred control was applied twice"


def test_a_held_call_is_never_marked_personal_not_even_once_the_hold_is_released(a: World) -> None:
    """Issue 23: "personal" on a held recording is refused, not deferred; one deferred by an earlier version
    is closed when the hold ends, never applied (by then the window after the call has long passed)."""
    rec = a.ingest(seconds=3.0)
    hold_id = _hold(a, rec)
    with pytest.raises(Conflict, match="legal hold"):
        _file(a, ALICE, "personal", recording_id=rec)
    with a.runtime.db.unit_of_work() as session:  # what an earlier version left: a deferred "personal"
        session.add(RecordingControl(
            id="deferred-personal", call_id=a.row(rec).call_id, recording_id=rec, kind="personal", at=None,
            requested_by="alice", requested_role="specialist", requester_extension="2001", administrative=False,
            created_at=a.clock.now(), outcome=control.HELD_OUTCOME))
    _release(a, hold_id)
    assert _apply_deferred(a) == 0
    assert a.intact_or_fully_destroyed(rec) == "intact"
    with a.runtime.db.unit_of_work() as session:
        closed = session.get(RecordingControl, "deferred-personal")
        assert closed is not None and closed.applied_at is not None and closed.outcome.startswith("not applied")


def test_a_held_quarantined_recording_cannot_be_destroyed_and_the_refusal_is_audited(
        a: World) -> None:
    rec = a.ingest(consent=None)
    hold_id = _hold(a, rec)
    with pytest.raises(control.UnderLegalHold, match="legal hold"):
        _resolve(a, ADMIN, rec, "destroy")
    assert a.playable(rec) and a.row(rec).quarantined
    code, output = a.cli("quarantine", "resolve", rec, "--destroy", "--reason", "no consent found")
    assert code != 0 and "legal hold" in output, output
    refusal = _last_audit(a, "recording.quarantine_destroy")
    assert refusal.decision == "deny" and refusal.reason == "legal hold"
    _release(a, hold_id)
    _resolve(a, ADMIN, rec, "destroy")
    assert a.intact_or_fully_destroyed(rec) == "destroyed"


# ------------------------------------------------------------------- consent evidence via control API
def _evidence(world: World, actor: Actor, kind: str, call_id: str, at_s: float, until_s: float | None = None,
              version: str | None = "1") -> None:
    """File consent evidence; an ``announced`` event names the policy's prompt version ``version``."""
    with world.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=world.clock)
        control.file_control(session, policy=policy, actor=actor, kind=kind, call_id=call_id,
                             at=T + timedelta(seconds=at_s),
                             until=T + timedelta(seconds=until_s) if until_s is not None else None, clock=world.clock,
                             version=version if kind == "announced" else None)


def test_an_announcement_reported_through_the_control_api_is_the_calls_consent_evidence(a: World) -> None:
    """A5/B2: evidence comes from the metadata or from the recording-control API; A14: its end trims."""
    original = wav_bytes(4.0, seed=41)
    _evidence(a, ALICE, "announced", "api-consent-1", 0.0, until_s=1.0)
    rec = a.ingest(call_id="api-consent-1", seconds=4.0, audio=original, consent=None)
    row = a.row(rec)
    assert not row.quarantined and row.consent_state == "announcement"
    assert row.consent["announcement_ended_at"].startswith((T + timedelta(seconds=1)).isoformat()[:19])
    assert row.consent["announcement_version"] == "1" and row.consent["source"] == "control_api"
    assert np.array_equal(_frames(a.audio(rec)), _frames(original)[8000:]), "the announcement was not trimmed"
    entry = _last_audit(a, "recording.control_announced")
    assert entry.decision == "allow" and entry.clauses == ["A5", "B2"] and entry.details["version"] == "1"
    with a.runtime.db.unit_of_work() as session:
        filed = session.scalars(select(RecordingControl).where(RecordingControl.call_id == "api-consent-1")).all()
        assert {(c.kind, c.version) for c in filed} == {("announced", "1"), ("announcement_end", None)}


@pytest.mark.parametrize(("version", "named"), [
    (None, "names no announcement version"),
    ("0", "consent.announcement_version '0'"),
])
def test_an_announcement_through_the_control_api_without_a_listed_version_quarantines_the_call(
        a: World, version: str | None, named: str) -> None:
    """The control API is no way round the prompt-version check (A5, B2): it is the same check as metadata's."""
    call_id = f"api-consent-version-{version}"
    _evidence(a, ALICE, "announced", call_id, 0.0, until_s=1.0, version=version)
    rec = a.ingest(call_id=call_id, seconds=4.0, consent=None)
    row = a.row(rec)
    assert row.quarantined and row.consent_state == "announcement" and row.consent_source == "control_api"
    assert named in (row.quarantine_reason or "") and "'1'" in (row.quarantine_reason or "")
    entry = _last_audit(a, "recording.ingested")
    assert entry.object_id == row.id and entry.details["quarantine_reason"] == row.quarantine_reason


def test_the_cli_reports_an_announcement_with_its_prompt_version(a: World) -> None:
    code, output = a.cli("control", "announced", "--as", a.integration_account(), "--call", "cli-consent-1",
                         "--at", T.isoformat(), "--until", (T + timedelta(seconds=1)).isoformat(), "--version", "1")
    assert code == 0, output
    rec = a.ingest(call_id="cli-consent-1", seconds=3.0, consent=None)
    row = a.row(rec)
    assert not row.quarantined and row.consent["announcement_version"] == "1"


def test_a_version_belongs_to_an_announcement_only(a: World) -> None:
    with a.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=a.clock)
        with pytest.raises(InvalidInput, match="invalid recording control") as raised:
            control.file_control(session, policy=policy, actor=ALICE, kind="stop", call_id="api-consent-v",
                                 at=T, version="1", clock=a.clock)
    assert [p.location for p in raised.value.problems] == ["version"]


def test_evidence_from_someone_not_on_the_call_is_ignored_and_metadata_evidence_wins(a: World) -> None:
    _evidence(a, BOB, "announced", "api-consent-2", 0.0)  # bob is on extension 2002; the call is alice's
    rec = a.ingest(call_id="api-consent-2", consent=None)
    assert a.row(rec).quarantined and a.row(rec).consent_state == "missing"
    _evidence(a, ALICE, "announced", "api-consent-3", 1.5, until_s=1.9)
    rec = a.ingest(call_id="api-consent-3", seconds=3.0)  # the metadata says it was played at 0.0 s
    assert a.row(rec).consent["announcement_played_at"].startswith(T.isoformat()[:19])
    assert "announcement_ended_at" not in a.row(rec).consent
    assert a.row(rec).duration_seconds == pytest.approx(3.0)


def test_consent_evidence_cannot_be_added_to_a_stored_recording(a: World) -> None:
    rec = a.ingest(call_id="api-consent-4", consent=None)
    with pytest.raises(Conflict, match="while the call is in progress"):
        _evidence(a, PBX, "announced", "api-consent-4", 0.0)
    assert a.row(rec).quarantined
