"""Recording control, quarantine and retention over real HTTP, with a denial test for every allowed action."""

from __future__ import annotations

import io
import json
import zlib
from datetime import datetime, timedelta
from typing import Any

import soundfile
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.identity import service as identity
from callvault.notify.models import OutboxMail
from callvault.policy.schema import add_months
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer

START = datetime.fromisoformat(metadata()["started_at"])


def _store(server: LiveServer, seconds: float = 4.0, **overrides: Any) -> str:
    start: datetime = overrides.get("started", START)
    meta = metadata(ended_at=(start + timedelta(seconds=seconds)).isoformat(), **overrides)
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(seconds, seed=zlib.crc32(meta["call_id"].encode()) % 1000), meta)
    assert resp.status_code == 201, resp.text
    rec_id: str = resp.json()["id"]
    return rec_id


def _at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat()


def _seconds(server: LiveServer, rec_id: str) -> float:
    with server.client("lead") as lead:
        resp = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"})
    assert resp.status_code == 200, resp.text
    info = soundfile.info(io.BytesIO(resp.content))
    return float(info.frames / info.samplerate)


def _review_date(env: CallvaultEnv, days: int = 30) -> str:
    """A hold's review date within policy A's bound (retention.legal_hold.max_review_months: 3)."""
    return (env.runtime.clock.now().date() + timedelta(days=days)).isoformat()


def _denials(env: CallvaultEnv, actor: str, action: str) -> int:
    with env.runtime.db.unit_of_work() as session:
        return len(session.scalars(select(AuditEntry.seq).where(
            AuditEntry.actor == actor, AuditEntry.action == action, AuditEntry.decision == "deny")).all())


# ---------------------------------------------------------------------------------------------- control
def test_agent_stops_their_own_recording_and_it_is_truncated(server: LiveServer, env: CallvaultEnv) -> None:
    start = _ended_ago(env, 1)  # the agent's stop, relayed within the policy's window after the call
    rec = _store(server, started=start)
    with server.client("alice") as alice:
        resp = alice.post(f"/api/v1/recordings/{rec}/control",
                          json={"action": "stop", "at": (start + timedelta(seconds=1)).isoformat()})
    assert resp.status_code == 200, resp.text
    assert resp.json()["outcome"] == "truncated at 1.0 s"
    assert _seconds(server, rec) == 1.0


def test_colleague_cannot_stop_someone_elses_recording_and_the_refusal_is_audited(
        server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server)
    before = _denials(env, "bob", "recording.control_stop")
    with server.client("bob") as bob:
        resp = bob.post(f"/api/v1/recordings/{rec}/control", json={"action": "stop", "at": _at(1.0)})
    assert resp.status_code == 403
    assert _denials(env, "bob", "recording.control_stop") == before + 1
    assert _seconds(server, rec) == 4.0


def test_leadership_cannot_mark_a_call_personal(server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server)
    with server.client("lead") as lead:
        resp = lead.post(f"/api/v1/recordings/{rec}/control", json={"action": "personal"})
    assert resp.status_code == 403
    assert _denials(env, "lead", "recording.control_personal") >= 1


def test_agent_marks_their_call_personal_and_nobody_can_reach_it_again(server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server, started=env.runtime.clock.now() - timedelta(minutes=1))
    with server.client("alice") as alice:
        resp = alice.post(f"/api/v1/recordings/{rec}/control", json={"action": "personal"})
        assert resp.status_code == 200, resp.text
        assert "destroyed" in resp.json()["outcome"]
        assert alice.get(f"/api/v1/recordings/{rec}").status_code == 404
    with server.client("lead") as lead:
        assert lead.get(f"/api/v1/recordings/{rec}/audio", params={"purpose": "spot_check"}).status_code == 404


def test_capture_integration_stops_a_live_call_before_it_is_stored(server: LiveServer, env: CallvaultEnv) -> None:
    """The telephony integration's account (a role in controls.integration_roles) relays the agent's stop."""
    call_id = "api-live-stop"
    with server.integration_client() as pbx:
        resp = pbx.post(f"/api/v1/calls/{call_id}/control", json={"action": "stop", "at": _at(2.0)})
    assert resp.status_code == 200, resp.text
    assert resp.json()["recording_id"] is None
    with env.runtime.db.unit_of_work() as session:
        [entry] = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "recording.control_stop", AuditEntry.object_id == call_id)).all()
        assert entry.actor == "pbx" and entry.decision == "allow"
        assert entry.details["capacity"] == "integration"
    rec = _store(server, call_id=call_id)
    assert _seconds(server, rec) == 2.0


def test_the_integrations_token_carries_only_the_control_scope_and_reaches_nothing_else(
        server: LiveServer, env: CallvaultEnv) -> None:
    """``calls:control`` relays controls and consent evidence and nothing more: the telephony account's token
    needs no ``admin`` scope, and a token made to read recordings cannot stop a call."""
    pbx_token = env.integration_token(scopes=("calls:control",))
    with server.client() as pbx:
        pbx.headers["Authorization"] = f"Bearer {pbx_token}"
        stopped = pbx.post("/api/v1/calls/api-scoped-stop/control", json={"action": "stop", "at": _at(2.0)})
        listed = pbx.get("/api/v1/recordings")
        users = pbx.get("/api/v1/users")
    assert stopped.status_code == 200, stopped.text
    assert listed.status_code == 403 and "recordings:read" in listed.text
    assert users.status_code == 403 and "admin" in users.text
    with env.runtime.db.unit_of_work() as session:
        alice = identity.get_user(session, "alice")
        reader = identity.issue_token(session, user=alice, ttl_seconds=600, scopes=("recordings:read",),
                                      clock=env.runtime.clock).token
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {reader}"
        refused = client.post("/api/v1/calls/api-scoped-stop-2/control", json={"action": "stop", "at": _at(1.0)})
    assert refused.status_code == 403 and "calls:control" in refused.text


def _announced_then_stored(server: LiveServer, call_id: str, **version: str) -> str:
    """The integration reports the announcement (with the ``version`` given, if any); the call arrives without
    evidence of its own."""
    with server.integration_client() as pbx:
        resp = pbx.post(f"/api/v1/calls/{call_id}/control",
                        json={"action": "announced", "at": _at(0.0), "until": _at(1.0), **version})
    assert resp.status_code == 200, resp.text
    meta = metadata(call_id=call_id, ended_at=_at(4.0))
    meta.pop("consent")
    with server.client("admin") as admin:
        stored = upload(admin, wav_bytes(4.0, seed=zlib.crc32(call_id.encode()) % 1000), meta)
    assert stored.status_code == 201, stored.text
    rec_id: str = stored.json()["id"]
    return rec_id


def test_an_announcement_reported_with_the_policys_prompt_version_is_the_calls_evidence(server: LiveServer) -> None:
    rec = _announced_then_stored(server, "api-announced-v1", version="1")
    with server.client("alice") as alice:
        shown = alice.get(f"/api/v1/recordings/{rec}").json()
        events = alice.get(f"/api/v1/recordings/{rec}/controls").json()
    assert shown["quarantined"] is False and shown["consent_source"] == "control_api"
    assert shown["consent"]["announcement_version"] == "1"
    assert [(e["kind"], e["version"]) for e in events] == [("announced", "1"), ("announcement_end", None)]
    assert _seconds(server, rec) == 3.0  # the announcement's second is cut (A14)


def test_an_announcement_reported_without_a_version_quarantines_the_call_with_the_reason(
        server: LiveServer, env: CallvaultEnv) -> None:
    rec = _announced_then_stored(server, "api-announced-nov")
    with server.client("alice") as alice:
        assert alice.get(f"/api/v1/recordings/{rec}/audio", params={"purpose": "self_review"}).status_code == 404
    with server.client("admin") as admin:
        trail = admin.get(f"/api/v1/recordings/{rec}/audit").json()
    reason = next(e for e in trail if e["action"] == "recording.ingested")["details"]["quarantine_reason"]
    assert "names no announcement version" in reason and "'1'" in reason, reason


def test_only_an_announcement_names_a_prompt_version(server: LiveServer) -> None:
    with server.integration_client() as pbx:
        resp = pbx.post("/api/v1/calls/api-stop-version/control",
                        json={"action": "stop", "at": _at(1.0), "version": "1"})
        long = pbx.post("/api/v1/calls/api-long-version/control",
                        json={"action": "announced", "at": _at(0.0), "version": "9" * 51})
    assert resp.status_code == 422 and resp.json()["problems"][0]["location"] == "version"
    assert long.status_code == 422 and "version" in long.text


# Issue 23 (6): a human administrator or IT person must not wipe, stop or pause a call in progress or not
# yet stored. Only the agent on the call, or the integration relaying the agent's own act, files controls.
def test_it_staff_and_admin_cannot_control_a_call_not_yet_stored_and_it_is_recorded_normally(
        server: LiveServer, env: CallvaultEnv) -> None:
    call_id = "api-unstored-alice"
    for who in ("it", "admin"):
        for body in ({"action": "personal"}, {"action": "stop", "at": _at(1.0)},
                     {"action": "pause", "at": _at(1.0), "until": _at(3.0)},
                     {"action": "announced", "at": _at(0.0), "until": _at(0.5)}):
            action = f"recording.control_{body['action']}"
            before = _denials(env, who, action)
            with server.client(who) as client:
                resp = client.post(f"/api/v1/calls/{call_id}/control", json=body)
            assert resp.status_code == 403, resp.text
            refusal = resp.json()
            assert "controls.integration_roles" in refusal["message"], refusal
            assert "telephony_integration" in refusal["message"], refusal
            assert {"A14", "B4"} <= set(refusal["clauses"]) or {"A5", "B2"} <= set(refusal["clauses"]), refusal
            assert _denials(env, who, action) == before + 1
    rec = _store(server, call_id=call_id, started=env.runtime.clock.now() - timedelta(minutes=1))
    assert _seconds(server, rec) == 4.0
    with server.client("alice") as alice:
        assert alice.get(f"/api/v1/recordings/{rec}/controls").json() == []


def test_specialist_without_the_call_cannot_control_a_live_call_for_someone_else(server: LiveServer) -> None:
    call_id = "api-live-bob"
    with server.client("bob") as bob:
        assert bob.post(f"/api/v1/calls/{call_id}/control", json={"action": "personal"}).status_code == 200
    rec = _store(server, call_id=call_id)  # alice's call: bob's request is ignored, and the timeline says so
    with server.client("alice") as alice:
        events = alice.get(f"/api/v1/recordings/{rec}/controls").json()
    assert events[0]["outcome"].startswith("ignored")


def test_timeline_is_shown_to_those_who_may_see_the_recording_only(server: LiveServer, env: CallvaultEnv) -> None:
    start = _ended_ago(env, 1)
    rec = _store(server, started=start)
    with server.client("alice") as alice:
        paused = alice.post(f"/api/v1/recordings/{rec}/control", json={
            "action": "pause", "at": (start + timedelta(seconds=1)).isoformat(),
            "until": (start + timedelta(seconds=2)).isoformat()})
        assert paused.status_code == 200, paused.text
        events = alice.get(f"/api/v1/recordings/{rec}/controls").json()
    assert [e["kind"] for e in events] == ["pause", "resume"]
    with server.client("bob") as bob:
        assert bob.get(f"/api/v1/recordings/{rec}/controls").status_code == 404


def test_bad_control_requests_name_the_field(server: LiveServer) -> None:
    rec = _store(server, seconds=1.0)
    with server.client("alice") as alice:
        no_time = alice.post(f"/api/v1/recordings/{rec}/control", json={"action": "stop"})
        naive = alice.post(f"/api/v1/recordings/{rec}/control", json={"action": "stop", "at": "2026-11-20T14:00:01"})
        unknown = alice.post(f"/api/v1/recordings/{rec}/control", json={"action": "rewind", "at": _at(0.5)})
    assert no_time.status_code == 422 and no_time.json()["problems"][0]["location"] == "at"
    assert naive.status_code == 422 and naive.json()["problems"][0]["location"] == "at"
    assert unknown.status_code == 422 and unknown.json()["problems"][0]["location"] == "action"


# ------------------------------------------------------------- personal after the call (issue 23, finding 6)
# Policy A lets the recorded specialist mark a call personal for 15 minutes after its end (a site choice,
# controls.personal_after_call_minutes); nobody else, never later, never while the call is evidence.
def _ended_ago(env: CallvaultEnv, minutes: float, seconds: float = 4.0) -> datetime:
    """The start of a call of ``seconds`` that ended ``minutes`` ago by the server's clock."""
    return env.runtime.clock.now() - timedelta(minutes=minutes, seconds=seconds)


def _personal(server: LiveServer, who: str, rec: str) -> Any:
    with server.client(who) as client:
        return client.post(f"/api/v1/recordings/{rec}/control", json={"action": "personal"})


def test_admin_and_it_staff_cannot_mark_a_stored_call_personal_and_the_refusals_are_audited(
        server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server, started=_ended_ago(env, 1), call_id="api-stored-personal")
    for who in ("admin", "it"):
        before = _denials(env, who, "recording.control_personal")
        resp = _personal(server, who, rec)
        assert resp.status_code == 403, resp.text
        assert "recorded agent" in resp.json()["message"] and "A14" in resp.json()["clauses"]
        with server.client(who) as client:  # the call's own address reaches the same stored recording
            by_call = client.post("/api/v1/calls/api-stored-personal/control", json={"action": "personal"})
        assert by_call.status_code == 403, by_call.text
        assert _denials(env, who, "recording.control_personal") == before + 2
    assert _seconds(server, rec) == 4.0


def test_agent_cannot_mark_their_call_personal_once_the_window_after_it_has_passed(
        server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server, started=_ended_ago(env, 20))
    before = _denials(env, "alice", "recording.control_personal")
    resp = _personal(server, "alice", rec)
    assert resp.status_code == 409, resp.text
    assert "15 minutes" in resp.json()["message"] and "A14" in resp.json()["message"]
    assert _denials(env, "alice", "recording.control_personal") == before + 1
    assert _seconds(server, rec) == 4.0


def test_agent_cannot_mark_a_call_under_an_open_complaint_personal(server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server, started=_ended_ago(env, 1), case_ref="API-COMPLAINT-6")
    with server.client("lead") as lead:
        assert lead.post("/api/v1/retention/cases", json={"ref": "API-COMPLAINT-6", "kind": "complaint"}
                         ).status_code == 201
    before = _denials(env, "alice", "recording.control_personal")
    resp = _personal(server, "alice", rec)
    assert resp.status_code == 409, resp.text
    assert "case API-COMPLAINT-6" in resp.json()["message"] and "A9" in resp.json()["message"]
    assert _denials(env, "alice", "recording.control_personal") == before + 1
    assert _seconds(server, rec) == 4.0


def test_agent_cannot_mark_a_held_call_personal(server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server, started=_ended_ago(env, 1))
    with server.client("exec") as ex:
        assert ex.post("/api/v1/retention/holds", json={
            "recording_id": rec, "reason": "regulator inquiry", "owner": "exec", "review_date": _review_date(env),
        }).status_code == 201
    before = _denials(env, "alice", "recording.control_personal")
    resp = _personal(server, "alice", rec)
    assert resp.status_code == 409, resp.text
    assert "legal hold" in resp.json()["message"]
    assert _denials(env, "alice", "recording.control_personal") == before + 1
    assert _seconds(server, rec) == 4.0


def test_agent_marks_a_call_personal_just_after_it_and_the_misuse_recipients_are_told(
        server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server, started=_ended_ago(env, 2))
    resp = _personal(server, "alice", rec)
    assert resp.status_code == 200, resp.text
    assert "destroyed" in resp.json()["outcome"]
    with env.runtime.db.unit_of_work() as session:
        mails = list(session.scalars(select(OutboxMail).where(OutboxMail.body.contains(rec))))
        told = {(m.recipient_user, m.subject) for m in mails}
    assert {who for who, _ in told} == {"exec"}, "policy A reports misuse to executives, never to the subject"
    assert all("personal" in subject for _, subject in told)
    with server.client("exec") as ex:
        reports = ex.get("/api/v1/misuse-reports").json()
    [report] = [r for r in reports if rec in r["summary"]]
    assert report["subject_user"] == "alice" and report["rule"] == "personal_after_call"


# ----------------------------------------------------------------------------------------------- scope
def test_upload_outside_the_recording_scope_is_refused_naming_the_field(server: LiveServer) -> None:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(1.0), metadata(call_id="api-private", extension="2099"))
    assert resp.status_code == 422
    body = resp.json()
    assert body["problems"][0]["location"] == "extension"
    assert "private line" in body["message"]


# ------------------------------------------------------------------------------------------- retention
def test_recording_shows_its_destruction_date_and_rule(server: LiveServer) -> None:
    rec = _store(server, seconds=1.0)
    with server.client("lead") as lead:
        body = lead.get(f"/api/v1/recordings/{rec}").json()
    assert body["retention_rule"] == "max_age" and body["on_hold"] is False
    assert body["destroy_after"].startswith(add_months(START.date(), 6).isoformat())  # policy A: 6 months


def test_leadership_opens_and_resolves_a_case_and_the_date_moves_up(server: LiveServer, env: CallvaultEnv) -> None:
    # A call of yesterday by the server's clock: its 6-month cap is far off, so the resolved case comes first.
    rec = _store(server, seconds=1.0, case_ref="API-CASE-1", started=env.runtime.clock.now() - timedelta(days=1))
    with server.client("lead") as lead:
        assert lead.post("/api/v1/retention/cases", json={"ref": "API-CASE-1", "kind": "complaint"}).status_code == 201
        assert lead.post("/api/v1/retention/cases/API-CASE-1/resolve").status_code == 200
        body = lead.get(f"/api/v1/recordings/{rec}").json()
    assert body["retention_rule"] == "case_resolved"


def test_specialist_cannot_open_a_case_and_the_refusal_is_audited(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client("alice") as alice:
        resp = alice.post("/api/v1/retention/cases", json={"ref": "MINE", "kind": "complaint"})
    assert resp.status_code == 403
    assert _denials(env, "alice", "retention.case_open") == 1


def test_legal_hold_is_placed_shown_and_released(server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server, seconds=1.0)
    with server.client("exec") as ex:
        resp = ex.post("/api/v1/retention/holds", json={
            "recording_id": rec, "reason": "regulator inquiry", "owner": "exec", "review_date": _review_date(env)})
        assert resp.status_code == 201, resp.text
        hold_id = resp.json()["id"]
        assert ex.get(f"/api/v1/recordings/{rec}").json()["on_hold"] is True
        report = ex.get("/api/v1/retention/report", params={"from": "2026-01-01T00:00:00Z",
                                                            "to": "2100-01-01T00:00:00Z"}).json()
        assert any(h["hold_id"] == hold_id and h["reason"] == "regulator inquiry" for h in report["held"])
        released = ex.post(f"/api/v1/retention/holds/{hold_id}/release", json={"reason": "inquiry closed"})
        assert released.status_code == 200
        assert ex.get(f"/api/v1/recordings/{rec}").json()["on_hold"] is False
    # Issue 23 (7): the release is on the audit log, naming who released it and why.
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "retention.hold_released",
                                                         AuditEntry.object_id == hold_id)).one()
    assert (entry.actor, entry.actor_role, entry.reason) == ("exec", "executive", "inquiry closed")
    assert entry.details["recording_id"] == rec


def test_it_staff_who_see_every_call_cannot_place_or_release_a_hold_and_the_refusals_are_audited(
        server: LiveServer, env: CallvaultEnv) -> None:
    """Issue 23 (7): holds are placed and released only by the roles retention.legal_hold.roles names (A9:
    executive, support_lead); IT staff reach every call record but are not among them."""
    rec = _store(server, seconds=1.0)
    body = {"recording_id": rec, "reason": "keep it", "owner": "it", "review_date": _review_date(env)}
    with server.client("it") as it:
        placed = it.post("/api/v1/retention/holds", json=body)
    assert placed.status_code == 403 and "retention.legal_hold.roles" in placed.json()["message"]
    with server.client("lead") as lead:
        made = lead.post("/api/v1/retention/holds", json={**body, "owner": "lead"})
        assert made.status_code == 201, made.text
        hold_id = made.json()["id"]
    with server.client("it") as it:
        released = it.post(f"/api/v1/retention/holds/{hold_id}/release", json={"reason": "tidy up"})
    assert released.status_code == 403
    assert _denials(env, "it", "retention.hold_place") == 1
    assert _denials(env, "it", "retention.hold_release") == 1
    with server.client("lead") as lead:
        assert lead.get(f"/api/v1/recordings/{rec}").json()["on_hold"] is True


def test_specialist_cannot_place_a_hold_or_read_the_report(server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server, seconds=1.0)
    with server.client("alice") as alice:
        hold = alice.post("/api/v1/retention/holds", json={
            "recording_id": rec, "reason": "keep", "owner": "alice", "review_date": _review_date(env)})
        report = alice.get("/api/v1/retention/report", params={"from": "2026-01-01T00:00:00Z",
                                                               "to": "2027-01-01T00:00:00Z"})
    assert hold.status_code == 403 and report.status_code == 403
    assert _denials(env, "alice", "retention.hold_place") == 1


def test_hold_without_a_reason_is_refused_naming_the_field(server: LiveServer, env: CallvaultEnv) -> None:
    rec = _store(server, seconds=1.0)
    with server.client("lead") as lead:
        resp = lead.post("/api/v1/retention/holds", json={
            "recording_id": rec, "reason": " ", "owner": "lead", "review_date": _review_date(env)})
    assert resp.status_code == 422
    assert "reason" in [p["location"] for p in resp.json()["problems"]]


# ------------------------------------------------------------------------------------------ quarantine
def test_admin_releases_a_quarantined_recording(server: LiveServer) -> None:
    meta = metadata(call_id="api-q-1")
    meta.pop("consent")
    with server.client("admin") as admin:
        rec = upload(admin, wav_bytes(1.0, seed=41), meta).json()["id"]
        resp = admin.post(f"/api/v1/recordings/{rec}/quarantine",
                          json={"decision": "release", "reason": "announcement log found"})
    assert resp.status_code == 200, resp.text
    with server.client("lead") as lead:
        assert lead.get(f"/api/v1/recordings/{rec}/audio", params={"purpose": "spot_check"}).status_code == 200


def test_leadership_cannot_resolve_quarantine_and_the_refusal_is_audited(
        server: LiveServer, env: CallvaultEnv) -> None:
    meta = metadata(call_id="api-q-2")
    meta.pop("consent")
    with server.client("admin") as admin:
        rec = upload(admin, wav_bytes(1.0, seed=42), meta).json()["id"]
    with server.client("lead") as lead:
        resp = lead.post(f"/api/v1/recordings/{rec}/quarantine", json={"decision": "destroy", "reason": "x"})
    assert resp.status_code == 403
    assert _denials(env, "lead", "recording.quarantine_destroy") == 1
    with server.client("admin") as admin:
        gone = admin.post(f"/api/v1/recordings/{rec}/quarantine", json={"decision": "destroy", "reason": "no notice"})
    assert gone.status_code == 200 and json.loads(gone.text)["state"] == "destroyed"


def test_a_stop_relayed_long_after_the_call_is_refused_and_the_audio_kept(server: LiveServer) -> None:
    """The agent's stop is their act during the call; relayed a day later it would cut a stored recording on one
    word after the fact (the retention bypass an outside tester found): 409 naming the window, nothing cut."""
    rec = _store(server)  # yesterday's call
    with server.client("alice") as alice:
        resp = alice.post(f"/api/v1/recordings/{rec}/control", json={"action": "stop", "at": _at(1.0)})
    assert resp.status_code == 409 and "personal_after_call_minutes" in resp.json()["message"], resp.text
    assert _seconds(server, rec) == 4.0
