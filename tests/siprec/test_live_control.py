"""Recording control reaching a SIPREC call while it runs (A14, B4): sipp sends the call, the agent
presses pause/resume or "personal" through the real HTTP API (another thread, as another node would),
and we look at what was stored afterwards.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.capture.models import RecordingControl
from callvault.core.clock import Clock
from callvault.live.models import ActiveCall
from callvault.recordings.models import Recording
from callvault.retention.models import DestructionRecord
from tests.siprec.support import (
    dominant_frequency,
    rms,
    running_server,
    sipp_call,
    sipp_or_skip,
    stored_recording,
    wait_for_active_call,
)
from tests.support.env import CallvaultEnv, LiveServer


@pytest.fixture(autouse=True)
def _need_sipp() -> None:
    sipp_or_skip()


def control(client: httpx.Client, call_id: str, action: str, at: datetime | None = None) -> httpx.Response:
    body: dict[str, str] = {"action": action}
    if action != "personal":
        body["at"] = (at or datetime.now(UTC)).isoformat()
    return client.post(f"/api/v1/calls/{call_id}/control", json=body)


def seconds_since(start: datetime, clock: Clock) -> float:
    """Seconds into the call by the capture's own clock (the one that stamped ``start``)."""
    return (clock.now() - start).total_seconds()


def test_pause_and_resume_through_the_api_silence_that_span_of_the_live_call(
        env: CallvaultEnv, server: LiveServer, tmp_path: Path) -> None:
    runtime = env.runtime
    with running_server(runtime, rtp_base=34000) as srs, server.client("alice") as alice:
        with sipp_call(srs.port, tmp_path, clock=runtime.clock):
            call = wait_for_active_call(env.runtime)
            while seconds_since(call.started_at, runtime.clock) < 2.0:
                time.sleep(0.02)
            pause_at = seconds_since(call.started_at, runtime.clock)
            paused = control(alice, call.call_id, "pause", call.started_at + timedelta(seconds=pause_at))
            assert paused.status_code == 200, paused.text
            assert "live" in paused.json()["outcome"]
            time.sleep(1.5)
            resume_at = seconds_since(call.started_at, runtime.clock)
            resumed = control(alice, call.call_id, "resume", call.started_at + timedelta(seconds=resume_at))
            assert resumed.status_code == 200, resumed.text
        srs.wait_idle()
    [rec] = stored_recording(runtime, call.call_id)
    audio, rate = rec.audio, rec.rate
    assert 6.0 <= rec.row.duration_seconds <= 8.5
    before = slice(int(0.5 * rate), int(1.8 * rate))
    assert abs(dominant_frequency(audio[before, 0], rate) - 1000) < 20
    assert abs(dominant_frequency(audio[before, 1], rate) - 440) < 20
    # Each takes effect at its own instant (the event's ``at``), not when capture happened to poll (up
    # to ~250 ms later): silence exactly between them, audio right up to the pause and right after the resume.
    silent = slice(int((pause_at + 0.02) * rate), int((resume_at - 0.02) * rate))
    assert rms(audio[silent, 0]) < 1 and rms(audio[silent, 1]) < 1, "audio of the paused span was kept"
    edge = int(0.1 * rate)
    assert rms(audio[int((pause_at - 0.02) * rate) - edge:int((pause_at - 0.02) * rate), 0]) > 1000
    assert rms(audio[int((resume_at + 0.02) * rate):int((resume_at + 0.02) * rate) + edge, 0]) > 1000
    after = slice(int((resume_at + 0.5) * rate), int((resume_at + 1.5) * rate))
    assert abs(dominant_frequency(audio[after, 0], rate) - 1000) < 20
    assert rms(audio[after, 1]) > 1000
    with runtime.db.unit_of_work() as session:
        events = list(session.scalars(select(RecordingControl).where(RecordingControl.call_id == call.call_id)))
        assert {e.kind for e in events} == {"pause", "resume"}
        # Marked applied (and linked to the recording) in the same transaction that stored it: nothing
        # later (ingest's admission, apply_to_stored) applies them a second time.
        assert all(e.applied_at is not None and e.recording_id == rec.row.id for e in events)
        assert all(e.outcome.startswith("applied live") for e in events)
        # ... and ingest's admission, which runs at the end of a SIPREC call, did not apply them again.
        captured = session.scalars(select(AuditEntry).where(AuditEntry.action == "recording.captured",
                                                            AuditEntry.object_id == rec.row.id)).one()
        assert not [note for note in captured.details["admission"] if "paus" in note or "stop" in note]
        assert session.scalar(select(ActiveCall).where(ActiveCall.call_id == call.call_id)) is None


def test_marking_a_live_call_personal_keeps_nothing_and_is_audited(
        env: CallvaultEnv, server: LiveServer, tmp_path: Path) -> None:
    runtime = env.runtime
    with running_server(runtime, rtp_base=34400) as srs, server.client("alice") as alice:
        with sipp_call(srs.port, tmp_path, clock=runtime.clock):
            call = wait_for_active_call(env.runtime)
            while seconds_since(call.started_at, runtime.clock) < 2.0:
                time.sleep(0.02)
            resp = control(alice, call.call_id, "personal")
            assert resp.status_code == 200, resp.text
            # Capture stops at once: within a second the partial recording is destroyed, call still running.
            deadline = time.monotonic() + 2.0
            state = None
            while time.monotonic() < deadline:
                with runtime.db.unit_of_work() as session:
                    state = session.scalar(select(Recording.state).where(Recording.call_id == call.call_id))
                if state == "destroyed":
                    break
                time.sleep(0.05)
            assert state == "destroyed"
            assert seconds_since(call.started_at, runtime.clock) < 5.0, "destroyed only at the end of the call"
        srs.wait_idle()
    with runtime.db.unit_of_work() as session:
        row = session.scalar(select(Recording).where(Recording.call_id == call.call_id))
        assert row is not None and row.state == "destroyed" and row.retention_rule == "personal_call"
        assert not runtime.store.exists(row.blob_key)
        record = session.scalar(select(DestructionRecord).where(DestructionRecord.recording_id == row.id))
        assert record is not None and record.rule == "personal_call"
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq))
                   if e.object_id in (call.call_id, call.call_id[:64], row.id)]
        assert "recording.control_personal" in actions
        assert "recording.destroyed" in actions and "capture.discarded" in actions
        [event] = session.scalars(select(RecordingControl).where(RecordingControl.call_id == call.call_id))
        assert event.applied_at is not None and "destroyed" in event.outcome


def test_someone_else_cannot_control_the_live_call(env: CallvaultEnv, server: LiveServer, tmp_path: Path) -> None:
    runtime = env.runtime
    with running_server(runtime, rtp_base=34800) as srs, server.client("bob") as bob:
        with sipp_call(srs.port, tmp_path, clock=runtime.clock):
            call = wait_for_active_call(env.runtime)
            refused = control(bob, call.call_id, "personal")
            assert refused.status_code == 403, refused.text
        srs.wait_idle()
    [rec] = stored_recording(runtime, call.call_id)
    assert rec.row.state == "available" and rec.row.duration_seconds > 6.0


def test_it_staff_and_admin_cannot_wipe_stop_or_pause_a_live_call_and_it_is_recorded_normally(
        env: CallvaultEnv, server: LiveServer, tmp_path: Path) -> None:
    """Issue 23 (6): roles that administer the system (policy A: admin, it_staff) are not the agent on the
    call and not the phone system's integration (controls.integration_roles): refused, audited, no effect."""
    runtime = env.runtime
    with running_server(runtime, rtp_base=35000) as srs, server.client("it") as it, server.client("admin") as admin:
        with sipp_call(srs.port, tmp_path, clock=runtime.clock):
            call = wait_for_active_call(env.runtime)
            for client in (it, admin):
                for action in ("personal", "stop", "pause"):
                    refused = control(client, call.call_id, action)
                    assert refused.status_code == 403, refused.text
                    body = refused.json()
                    assert "controls.integration_roles" in body["message"]
                    assert "telephony_integration" in body["message"]
                    assert {"A14", "B4"} <= set(body["clauses"])
        srs.wait_idle()
    [rec] = stored_recording(runtime, call.call_id)
    assert rec.row.state == "available" and rec.row.duration_seconds > 6.0
    assert rms(rec.audio[-int(0.5 * rec.rate):, 0]) > 1000, "the end of the call was not kept"
    with runtime.db.unit_of_work() as session:
        assert session.scalars(select(RecordingControl).where(RecordingControl.call_id == call.call_id)).all() == []
        denials = session.execute(select(AuditEntry.actor, AuditEntry.action).where(
            AuditEntry.object_id == call.call_id[:200], AuditEntry.decision == "deny")).all()
    assert sorted(denials) == sorted((who, f"recording.control_{action}") for who in ("it", "admin")
                                     for action in ("personal", "stop", "pause"))


def test_stop_through_the_api_keeps_the_call_only_up_to_that_instant(
        env: CallvaultEnv, server: LiveServer, tmp_path: Path) -> None:
    runtime = env.runtime
    with running_server(runtime, rtp_base=36200) as srs, server.client("alice") as alice:
        with sipp_call(srs.port, tmp_path, clock=runtime.clock):
            call = wait_for_active_call(env.runtime)
            while seconds_since(call.started_at, runtime.clock) < 3.0:
                time.sleep(0.02)
            stop_at = seconds_since(call.started_at, runtime.clock)
            resp = control(alice, call.call_id, "stop", call.started_at + timedelta(seconds=stop_at))
            assert resp.status_code == 200, resp.text
        srs.wait_idle()
    [rec] = stored_recording(runtime, call.call_id)
    # The call went on for 7 s; the recording ends at the stop instant, with audio right up to it.
    assert abs(rec.row.duration_seconds - stop_at) < 0.05, (rec.row.duration_seconds, stop_at)
    assert rms(rec.audio[-int(0.1 * rec.rate):, 0]) > 1000


def test_an_announcement_reported_through_the_api_during_the_call_is_its_consent_evidence(
        env: CallvaultEnv, server: LiveServer, tmp_path: Path) -> None:
    """The SBC's metadata carries no consent here; the telephony integration reports the announcement."""
    runtime = env.runtime
    with running_server(runtime, rtp_base=34400) as srs, server.integration_client() as pbx, \
            server.client("admin") as admin:
        with sipp_call(srs.port, tmp_path, clock=runtime.clock):
            call = wait_for_active_call(env.runtime)
            body = {"action": "announced", "at": call.started_at.isoformat(), "version": "1",
                    "until": (call.started_at + timedelta(seconds=1)).isoformat()}
            refused = admin.post(f"/api/v1/calls/{call.call_id}/control", json=body)
            assert refused.status_code == 403, refused.text  # administering is not relaying the call's evidence
            assert {"A5", "B2"} <= set(refused.json()["clauses"])
            filed = pbx.post(f"/api/v1/calls/{call.call_id}/control", json=body)
            assert filed.status_code == 200, filed.text
        srs.wait_idle()
    [rec] = stored_recording(runtime, call.call_id)
    assert not rec.row.quarantined and rec.row.consent_state == "announcement"
    assert rec.row.consent["announcement_ended_at"] and rec.row.consent["announcement_version"] == "1"
    with runtime.db.unit_of_work() as session:
        events = list(session.scalars(select(RecordingControl).where(RecordingControl.call_id == call.call_id)))
    assert {e.kind for e in events} == {"announced", "announcement_end"}
    assert all(e.applied_at is not None and e.recording_id == rec.row.id for e in events)


def test_an_announcement_reported_during_the_call_without_a_version_quarantines_it_with_the_reason(
        env: CallvaultEnv, server: LiveServer, tmp_path: Path) -> None:
    """A5, B2: the live path is no way round the prompt-version check."""
    runtime = env.runtime
    with running_server(runtime, rtp_base=34400) as srs, server.integration_client() as pbx:
        with sipp_call(srs.port, tmp_path, clock=runtime.clock):
            call = wait_for_active_call(env.runtime)
            filed = pbx.post(f"/api/v1/calls/{call.call_id}/control", json={
                "action": "announced", "at": call.started_at.isoformat(),
                "until": (call.started_at + timedelta(seconds=1)).isoformat()})
            assert filed.status_code == 200, filed.text
        srs.wait_idle()
    [rec] = stored_recording(runtime, call.call_id)
    assert rec.row.quarantined and rec.row.consent_source == "control_api"
    assert "names no announcement version" in (rec.row.quarantine_reason or "")
    with runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.object_id == rec.row.id,
                                                         AuditEntry.action == "recording.captured")).one()
    assert entry.details["quarantine_reason"] == rec.row.quarantine_reason and "A5" in entry.clauses
