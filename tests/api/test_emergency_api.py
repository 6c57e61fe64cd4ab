"""Issue 28 over HTTP: emergency ("break the glass") access, its reviewer's queue, a caller's accounting of
disclosures and retention extension on request, under the regulated variant of policy A
(tests/support/regulated.py: specialists and support leads may declare, executives review and extend) with
the accounting of disclosures open to executives only. Each: the allowed role, a refused role (and its
audit entry), bad input naming the field."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from callvault.access import emergency
from callvault.audit.models import AuditEntry
from callvault.core.clock import FixedClock
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer

CALLER = "+14165550142"


@pytest.fixture(scope="module")
def alices_call(server_r: LiveServer) -> str:
    """A call on alice's extension 2001 from CALLER: outside bob's (extension 2002) scope."""
    with server_r.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=28), metadata())
    assert resp.status_code == 201, resp.text
    rec: str = resp.json()["id"]
    return rec


def _last(env: CallvaultEnv, action: str, actor: str) -> AuditEntry:
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == action, AuditEntry.actor == actor)
                                .order_by(AuditEntry.seq.desc()).limit(1)).one()
        session.expunge(entry)
    return entry


def _fields(resp: object) -> set[str]:
    return {p["location"] for p in resp.json()["problems"]}  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ emergency access
def test_a_specialist_declares_an_emergency_and_then_hears_another_extensions_call_each_access_naming_it(
        server_r: LiveServer, env_r: CallvaultEnv, alices_call: str) -> None:
    with server_r.client("bob") as bob:
        assert bob.get(f"/api/v1/recordings/{alices_call}").status_code == 404
        assert bob.get("/api/v1/emergency/active").json() == {"active": False, "declaration_id": None,
                                                              "ends_at": None, "seconds_left": 0}
        declared = bob.post("/api/v1/emergency/declarations",
                            json={"reason": "caller said they would harm themself; need the address", "minutes": 20})
        assert declared.status_code == 201, declared.text
        body = declared.json()
        active = bob.get("/api/v1/emergency/active").json()
        meta = bob.get(f"/api/v1/recordings/{alices_call}")
        audio = bob.get(f"/api/v1/recordings/{alices_call}/audio", params={"purpose": "complaint_investigation"})
        server_r.step_up(bob, "bob")
        download = bob.get(f"/api/v1/recordings/{alices_call}/audio",
                           params={"purpose": "complaint_investigation", "download": True})
    assert active["active"] and active["declaration_id"] == body["id"] and 0 < active["seconds_left"] <= 20 * 60
    assert meta.status_code == 200 and audio.status_code == 200
    # The declaration covers listening and reading (emergency_access.actions), not taking a copy away: refused
    # with the reason (the call is visible to bob now, so not "no such recording").
    assert download.status_code == 403, download.text
    play = _last(env_r, "recording.play", "bob")
    assert play.decision == "allow" and play.object_id == alices_call and play.purpose == "complaint_investigation"
    assert play.details["emergency_declaration"] == body["id"]
    assert _last(env_r, "recording.view_metadata", "bob").details["emergency_declaration"] == body["id"]
    assert _last(env_r, "emergency.declared", "bob").object_id == body["id"]


def test_a_declaration_needs_a_reason_and_no_more_minutes_than_the_policy_allows(server_r: LiveServer) -> None:
    with server_r.client("alice") as alice:
        resp = alice.post("/api/v1/emergency/declarations", json={"reason": "urgent", "minutes": 31})
        missing = alice.post("/api/v1/emergency/declarations", json={"minutes": 5})
        still = alice.get("/api/v1/emergency/active").json()
    assert resp.status_code == 422 and _fields(resp) == {"reason", "minutes"}
    assert "1 to 30" in resp.text
    assert missing.status_code == 422 and _fields(missing) == {"reason"}
    assert still["active"] is False


def test_a_role_the_policy_does_not_name_cannot_declare_and_the_refusal_is_audited(
        server_r: LiveServer, env_r: CallvaultEnv) -> None:
    with server_r.client("exec") as erin:
        resp = erin.post("/api/v1/emergency/declarations", json={"reason": "just curious about a call"})
    assert resp.status_code == 403 and "emergency_access.roles" in resp.json()["message"]
    entry = _last(env_r, "emergency.declare", "exec")
    assert entry.decision == "deny" and "emergency_access.roles" in entry.reason


def test_the_executive_reviews_each_declaration_with_its_accesses_and_sees_overdue_ones(
        server_r: LiveServer, env_r: CallvaultEnv, alices_call: str) -> None:
    # alice declared six days ago (the product's clock set back), used nothing, and nobody reviewed it.
    past = FixedClock(env_r.runtime.clock.now() - timedelta(days=6))
    with env_r.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        alice = identity.actor_for(session, identity.get_user(session, "alice"), policy)
        old = emergency.declare(session, policy=policy, actor=alice, reason="line went dead mid-threat, need it",
                                minutes=5, clock=past).id
    with server_r.client("exec") as erin:
        queue = erin.get("/api/v1/emergency/reviews")
        assert queue.status_code == 200, queue.text
        tasks = {t["declaration"]["username"]: t for t in queue.json()}
        bad = erin.post(f"/api/v1/emergency/declarations/{tasks['bob']['declaration']['id']}/review",
                        json={"outcome": "fine", "notes": ""})
        done = erin.post(f"/api/v1/emergency/declarations/{tasks['bob']['declaration']['id']}/review",
                         json={"outcome": "justified", "notes": "the address went to the ambulance service"})
        again = erin.post(f"/api/v1/emergency/declarations/{tasks['bob']['declaration']['id']}/review",
                          json={"outcome": "misuse", "notes": "second look"})
        after = {t["declaration"]["id"] for t in erin.get("/api/v1/emergency/reviews").json()}
    assert tasks["alice"]["overdue"] is True and tasks["alice"]["declaration"]["id"] == old
    assert tasks["bob"]["overdue"] is False
    assert {(a["action"], a["recording_id"]) for a in tasks["bob"]["accesses"]} >= {("play", alices_call)}
    assert bad.status_code == 422 and "outcome" in _fields(bad)
    assert done.status_code == 200 and done.json()["review_outcome"] == "justified"
    assert again.status_code == 409
    assert tasks["bob"]["declaration"]["id"] not in after and old in after
    assert _last(env_r, "emergency.reviewed", "exec").details["outcome"] == "justified"


def test_a_declarer_cannot_see_or_do_the_review_queue_and_the_refusal_is_audited(
        server_r: LiveServer, env_r: CallvaultEnv) -> None:
    with server_r.client("lead") as lead:
        queue = lead.get("/api/v1/emergency/reviews")
    assert queue.status_code == 403 and "reviewer" in queue.json()["message"]
    assert _last(env_r, "emergency.reviews_list", "lead").decision == "deny"


# ------------------------------------------------------------------------------ accounting of disclosures
def test_the_executive_reads_a_callers_accounting_of_disclosures_and_downloads_it_as_csv(
        server_r: LiveServer, env_r: CallvaultEnv, alices_call: str) -> None:
    with server_r.client("exec") as erin:
        listed = erin.get("/api/v1/disclosures", params={"number": "+1 416 555 0142"})
        csv = erin.get("/api/v1/disclosures.csv", params={"number": CALLER, "since": date(2020, 1, 1).isoformat()})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["number"] == CALLER
    bobs = [d for d in body["disclosures"] if d["actor"] == "bob" and d["action"] == "recording.play"]
    assert bobs and bobs[0]["recording_id"] == alices_call and bobs[0]["emergency_declaration"]
    assert bobs[0]["purpose"] == "complaint_investigation"
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("date_utc,recording_id,what,who,role,why_purpose")
    assert any(",play,bob,specialist,complaint_investigation," in line for line in csv.text.splitlines())
    entry = _last(env_r, "disclosures.read", "exec")
    assert entry.decision == "allow" and entry.object_id == CALLER and entry.details["format"] == "csv"


def test_a_role_the_policy_does_not_name_cannot_read_the_accounting_and_the_refusal_is_audited(
        server_r: LiveServer, env_r: CallvaultEnv) -> None:
    with server_r.client("lead") as lead:
        resp = lead.get("/api/v1/disclosures", params={"number": CALLER})
        csv = lead.get("/api/v1/disclosures.csv", params={"number": CALLER})
        odd = lead.get("/api/v1/disclosures", params={"number": "\x07+1416\n"})
        nul = lead.get("/api/v1/disclosures", params={"number": "\x00+1416"})
    assert odd.status_code == 403
    assert nul.status_code == 422 and "number" in nul.text  # no NUL reaches a handler (text_guard)
    assert resp.status_code == 403 and "accounting_of_disclosures.roles: executive" in resp.json()["message"]
    assert csv.status_code == 403
    entry = _last(env_r, "disclosures.read", "lead")
    assert entry.decision == "deny" and entry.object_id == "?+1416?"


def test_a_bad_number_is_refused_naming_the_field(server_r: LiveServer) -> None:
    with server_r.client("exec") as erin:
        resp = erin.get("/api/v1/disclosures", params={"number": "not a number"})
        long = erin.get("/api/v1/disclosures", params={"number": "1" * 41})
    assert resp.status_code == 422 and _fields(resp) == {"number"}
    assert long.status_code == 422 and _fields(long) == {"number"}


# ------------------------------------------------------------------------------ retention extension
def test_the_executive_extends_a_recordings_retention_in_months_within_the_policys_limit(
        server_r: LiveServer, env_r: CallvaultEnv, alices_call: str) -> None:
    with server_r.client("exec") as erin:
        before = erin.get(f"/api/v1/retention/recordings/{alices_call}/extension").json()
        too_far = erin.post(f"/api/v1/retention/recordings/{alices_call}/extension",
                            json={"months": 85, "reason": "FCA asked for seven years"})
        both = erin.post(f"/api/v1/retention/recordings/{alices_call}/extension",
                         json={"months": 70, "keep_until": "2033-01-01", "reason": "x"})
        no_reason = erin.post(f"/api/v1/retention/recordings/{alices_call}/extension",
                              json={"months": 84, "reason": " "})
        done = erin.post(f"/api/v1/retention/recordings/{alices_call}/extension",
                         json={"months": 84, "reason": "FCA asked for seven years (letter 2026-12-01)"})
    assert before["may_extend"] is True and before["minimum_until"] and before["extension_limit"]
    assert too_far.status_code == 422 and _fields(too_far) == {"keep_until"}
    assert both.status_code == 422 and _fields(both) == {"keep_until"}
    assert no_reason.status_code == 422 and _fields(no_reason) == {"reason"}
    assert done.status_code == 200, done.text
    assert done.json()["keep_until"][:10] == before["extension_limit"][:10]
    entry = _last(env_r, "retention.extended", "exec")
    assert entry.object_id == alices_call and "seven years" in entry.reason


def test_a_role_retention_extension_does_not_name_is_refused_with_the_reason_and_audited(
        server_r: LiveServer, env_r: CallvaultEnv, alices_call: str) -> None:
    with server_r.client("lead") as lead:
        resp = lead.post(f"/api/v1/retention/recordings/{alices_call}/extension",
                         json={"months": 70, "reason": "keep it"})
        seen = lead.get(f"/api/v1/retention/recordings/{alices_call}/extension").json()
    assert resp.status_code == 403 and "retention.extension.roles (executive)" in resp.json()["message"]
    assert seen["may_extend"] is False
    assert _last(env_r, "retention.extend", "lead").decision == "deny"


def test_the_openapi_document_lists_the_new_endpoints_with_response_models(server_r: LiveServer) -> None:
    with server_r.client() as anyone:
        paths = anyone.get("/api/v1/openapi.json").json()["paths"]
    for path, method, model in (
            ("/api/v1/emergency/declarations", "post", "DeclarationRead"),
            ("/api/v1/emergency/active", "get", "ActiveRead"),
            ("/api/v1/emergency/reviews", "get", "ReviewTaskRead"),
            ("/api/v1/emergency/declarations/{declaration_id}/review", "post", "DeclarationRead"),
            ("/api/v1/disclosures", "get", "DisclosureList"),
            ("/api/v1/retention/recordings/{recording_id}/extension", "post", "ExtensionRead")):
        responses = paths[path][method]["responses"]
        assert model in str(responses), (path, responses)
    assert "text/csv" in paths["/api/v1/disclosures.csv"]["get"]["responses"]["200"]["content"]
