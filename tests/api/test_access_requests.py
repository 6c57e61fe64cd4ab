"""Internal access requests under policy B (B6, B9): routed to the named approvers, no self-approval,
grants limited in time and actions, rejections, lapses and reminders on the audit log."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from callvault.access import service as access
from callvault.access.models import AccessGrant
from callvault.audit.models import AuditEntry
from callvault.core.clock import FixedClock
from callvault.core.errors import InvalidInput
from callvault.identity import service as identity
from callvault.notify.models import OutboxMail
from callvault.oversight.models import MisuseReport
from callvault.policy import service as policy_service
from callvault.policy.decide import Action, decide
from callvault.policy.loader import parse_policy_text
from callvault.policy.schema import PolicyDocument
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording
from callvault.transcription import engines
from tests.api.test_auth_web import web_sign_in
from tests.conftest import PERSONAS_B, POLICY_B
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.transcripts import transcribe_now


def _meta(agent: str, extension: str, **extra: Any) -> dict[str, Any]:
    return metadata(agent=agent, extension=extension, team="customer_success", local_number="+61 2 8197 9000",
                    remote_number="+61 2 9374 4000", **extra)


@pytest.fixture(scope="module")
def recs(server_b: LiveServer) -> dict[str, str]:
    """One recording each of sam's, tina's and lead's calls."""
    ids = {}
    with server_b.client("admin") as admin:
        for i, (agent, ext) in enumerate((("sam", "3001"), ("tina", "3002"), ("lead", "3100"))):
            resp = upload(admin, wav_bytes(0.5, seed=200 + i), _meta(agent, ext))
            assert resp.status_code == 201, resp.text
            ids[agent] = resp.json()["id"]
    return ids


def _request(client: httpx.Client, rec: str, purpose: str, **extra: Any) -> httpx.Response:
    body = {"recording_ids": [rec], "purpose": purpose, "crm_ref": "CRM-1234",
            "justification": "Customer disputes what was promised on this call.", **extra}
    return client.post("/api/v1/access-requests", json=body)


def _audio(client: httpx.Client, rec: str, purpose: str, **params: Any) -> httpx.Response:
    return client.get(f"/api/v1/recordings/{rec}/audio", params={"purpose": purpose, **params})


def _audit(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


def test_a_specialist_hears_their_own_call_only_after_a_team_leader_approves(
        server_b: LiveServer, env_b: CallvaultEnv, recs: dict[str, str]) -> None:
    with server_b.client("sam") as sam, server_b.client("lead") as lead, server_b.client("qa") as qa:
        before = _audio(sam, recs["sam"], "self_review")
        assert before.status_code == 403
        assert "needs approval by Support Lead or Head of Customer Success" in before.json()["message"]
        created = _request(sam, recs["sam"], "self_review")
        assert created.status_code == 201, created.text
        req = created.json()
        assert req["status"] == "pending" and req["approver_roles"] == ["support_lead", "head_of_customer_success"]
        pending = lead.get("/api/v1/access-requests", params={"status": "pending"}).json()
        assert req["id"] in [r["id"] for r in pending]
        assert req["id"] not in [r["id"] for r in qa.get("/api/v1/access-requests").json()]
        own = sam.post(f"/api/v1/access-requests/{req['id']}/approve")
        assert own.status_code == 403
        not_approver = qa.post(f"/api/v1/access-requests/{req['id']}/approve")
        assert not_approver.status_code == 403
        approved = lead.post(f"/api/v1/access-requests/{req['id']}/approve", json={"note": "ok", "grant_days": 3})
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        assert _audio(sam, recs["sam"], "self_review").status_code == 200
        server_b.step_up(sam, "sam")  # a download needs a fresh code first (RELIABILITY 17); then the policy answers
        download = _audio(sam, recs["sam"], "self_review", download="true")
        assert download.status_code == 403 and "allows only play" in download.json()["message"]
        grants = sam.get("/api/v1/grants").json()
        assert [(g["recording_id"], g["purpose"], g["actions"]) for g in grants] == [
            (recs["sam"], "self_review", ["play", "transcript"])]
        again = lead.post(f"/api/v1/access-requests/{req['id']}/approve")
        assert again.status_code == 409
    refused = [(e.actor, e.decision) for e in _audit(env_b, "access.approve")]
    assert refused == [("sam", "deny"), ("qa", "deny")]


def test_legal_claims_need_the_head_of_customer_success(server_b: LiveServer, recs: dict[str, str]) -> None:
    with server_b.client("lead") as lead, server_b.client("lead2") as lead2, server_b.client("head") as head:
        denied = _audio(lead, recs["tina"], "legal_claim")
        assert denied.status_code == 403
        assert "needs approval by Head of Customer Success" in denied.json()["message"]
        assert "B9" in denied.json()["clauses"]
        req = _request(lead, recs["tina"], "legal_claim", actions=["play", "download"]).json()
        assert req["approver_roles"] == ["head_of_customer_success"]
        assert lead2.post(f"/api/v1/access-requests/{req['id']}/approve").status_code == 403
        assert head.post(f"/api/v1/access-requests/{req['id']}/approve").status_code == 200
        server_b.step_up(lead, "lead")
        assert _audio(lead, recs["tina"], "legal_claim", download="true").status_code == 200
        assert _audio(lead2, recs["tina"], "legal_claim").status_code == 403  # the grant is lead's alone


def test_an_approver_cannot_approve_access_to_their_own_calls(server_b: LiveServer, recs: dict[str, str]) -> None:
    with server_b.client("qa") as qa, server_b.client("lead") as lead, server_b.client("lead2") as lead2:
        req = _request(qa, recs["lead"], "staff_performance").json()
        conflicted = lead.post(f"/api/v1/access-requests/{req['id']}/approve")
        assert conflicted.status_code == 403 and "your own calls" in conflicted.json()["message"]
        assert lead2.post(f"/api/v1/access-requests/{req['id']}/approve").status_code == 200


def test_a_rejection_says_why_and_leaves_access_closed(server_b: LiveServer, env_b: CallvaultEnv,
                                                      recs: dict[str, str]) -> None:
    with server_b.client("lead2") as lead2, server_b.client("lead") as lead:
        req = _request(lead2, recs["tina"], "abusive_call").json()
        assert lead.post(f"/api/v1/access-requests/{req['id']}/reject", json={"note": ""}).status_code == 422
        rejected = lead.post(f"/api/v1/access-requests/{req['id']}/reject", json={"note": "No abuse reported."})
        assert rejected.status_code == 200
        mine = lead2.get(f"/api/v1/access-requests/{req['id']}").json()
        assert (mine["status"], mine["decision_note"]) == ("rejected", "No abuse reported.")
        assert _audio(lead2, recs["tina"], "abusive_call").status_code == 403
    assert _audit(env_b, "access.rejected")[-1].object_id == req["id"]


@pytest.mark.parametrize("who, change, field", [
    ("qa", {"purpose": "spot_check"}, "purpose"),            # needs no approval: use it directly
    ("qa", {"purpose": "legal_claim"}, "purpose"),           # not open to the role
    ("sam", {"purpose": "no_such_purpose"}, "purpose"),
    ("sam", {"crm_ref": ""}, "crm_ref"),
    ("sam", {"justification": "x"}, "justification"),
    ("sam", {"actions": ["delete"]}, "actions.0"),
    ("sam", {"grant_days": 365}, "grant_days"),
    ("sam", {"recording": "tina"}, "recording_ids[0]"),     # outside a specialist's scope
])
def test_a_request_that_could_not_lead_anywhere_is_refused_naming_the_field(
        server_b: LiveServer, recs: dict[str, str], who: str, change: dict[str, Any], field: str) -> None:
    rec = recs[change.pop("recording", "sam")]
    body = {"purpose": "self_review", **change}
    with server_b.client(who) as client:
        resp = _request(client, rec, **body)
    assert resp.status_code == 422, resp.text
    assert field in [p["location"] for p in resp.json()["problems"]]


def test_a_policy_b_request_names_the_crm_ticket_it_came_through(server_b: LiveServer, recs: dict[str, str]) -> None:
    """B6: "by way of CRM request". The shipped B file takes requests from the CRM; with no CRM connected a
    request filed in callvault must still name its ticket, and is refused, saying so, when it does not."""
    body = {"recording_ids": [recs["sam"]], "purpose": "self_review",
            "justification": "Customer says I promised a refund; I need to hear what I said."}
    with server_b.client("sam") as sam:
        for missing in ({}, {"crm_ref": "   "}):
            refused = sam.post("/api/v1/access-requests", json={**body, **missing})
            assert refused.status_code == 422, refused.text
            problems = {p["location"]: p["message"] for p in refused.json()["problems"]}
            assert "crm_ref" in problems, problems
            assert "CRM ticket" in problems["crm_ref"] or "required" in problems["crm_ref"]
        accepted = sam.post("/api/v1/access-requests", json={**body, "crm_ref": "CRM-4711"})
        assert accepted.status_code == 201, accepted.text
        assert (accepted.json()["crm_ref"], accepted.json()["status"]) == ("CRM-4711", "pending")


def test_grants_end_on_time_and_their_end_is_audited_once(env_b: CallvaultEnv, recs: dict[str, str]) -> None:
    start = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
    clock = FixedClock(start)
    with env_b.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=clock)
        tina = identity.actor_for(session, identity.get_user(session, "tina"), policy)
        head = identity.actor_for(session, identity.get_user(session, "head"), policy)
        req = access.create_request(session, policy=policy, actor=tina, new=access.NewRequest(
            recording_ids=(recs["tina"],), purpose="abusive_call", crm_ref="CRM-9",
            justification="Caller was abusive to me.", grant_days=2), clock=clock)
        grants = access.approve(session, policy=policy, actor=head, request_id=req.id, clock=clock)
    assert grants[0].ends_at == start + timedelta(days=2)
    clock.at = start + timedelta(days=2, seconds=1)
    with env_b.runtime.db.unit_of_work() as session:
        assert access.record_expiries(session, clock=clock) >= 1
        assert access.record_expiries(session, clock=clock) == 0
    assert grants[0].id in [e.object_id for e in _audit(env_b, "access.grant_expired")]


def test_requests_waiting_too_long_are_flagged_and_finally_lapse(env_b: CallvaultEnv, recs: dict[str, str]) -> None:
    start = datetime(2027, 4, 1, 9, 0, tzinfo=UTC)
    clock = FixedClock(start)
    with env_b.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=clock)
        sam = identity.actor_for(session, identity.get_user(session, "sam"), policy)
        req = access.create_request(session, policy=policy, actor=sam, new=access.NewRequest(
            recording_ids=(recs["sam"],), purpose="crm_transcription_check", crm_ref="CRM-77",
            justification="Check my notes match the call."), clock=clock)
    clock.at = start + timedelta(hours=access.REMIND_AFTER_HOURS - 1)
    with env_b.runtime.db.unit_of_work() as session:
        assert req.id not in [r.id for r in access.remind_waiting(session, clock=clock)]
    clock.at = start + timedelta(hours=access.REMIND_AFTER_HOURS + 1)
    with env_b.runtime.db.unit_of_work() as session:
        assert req.id in [r.id for r in access.remind_waiting(session, clock=clock)]
        assert req.id not in [r.id for r in access.remind_waiting(session, clock=clock)]  # once per period
    reminder = [e for e in _audit(env_b, "access.reminder") if e.object_id == req.id]
    assert "support_lead" in reminder[0].reason
    clock.at = start + timedelta(days=access.PENDING_LAPSE_DAYS, hours=1)
    with env_b.runtime.db.unit_of_work() as session:
        access.record_expiries(session, clock=clock)
        assert access.get_request(session, req.id).status == "expired"


# ------------------------------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days=st.integers(min_value=1, max_value=14), offset=st.integers(min_value=0, max_value=20 * 86400))
def test_a_grant_never_outlives_its_end(env_b: CallvaultEnv, recs: dict[str, str], days: int, offset: int) -> None:
    start = datetime(2027, 6, 1, tzinfo=UTC)
    clock = FixedClock(start)
    with env_b.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=clock)
        qa = identity.actor_for(session, identity.get_user(session, "qa"), policy)
        lead = identity.actor_for(session, identity.get_user(session, "lead"), policy)
        session.execute(update(AccessGrant).where(AccessGrant.user_id == qa.user_id, AccessGrant.revoked_at.is_(None))
                        .values(revoked_at=start - timedelta(days=1)))
        req = access.create_request(session, policy=policy, actor=qa, new=access.NewRequest(
            recording_ids=(recs["tina"],), purpose="training", crm_ref="CRM-5", justification="Training needs review.",
            grant_days=days), clock=clock)
        access.approve(session, policy=policy, actor=lead, request_id=req.id, clock=clock)
    clock.at = start + timedelta(seconds=offset)
    with env_b.runtime.db.unit_of_work() as session:
        grants = access.grants_for_decision(session, user_id=qa.user_id, recording_id=recs["tina"], now=clock.now())
        decision, _ = recordings.authorize_content(session, policy=policy, actor=qa, action=Action.PLAY,
                                                   recording_id=recs["tina"], purpose="training", grants=grants,
                                                   clock=clock)
    assert decision.allowed == (offset < days * 86400)


OPS = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(["sam", "lead", "hr", "qa"]), st.sampled_from(["sam", "lead"]),
              st.sampled_from(["self_review", "staff_performance", "legal_claim", "abusive_call", "training"])),
    st.tuples(st.just("approve"), st.sampled_from(["sam", "lead", "lead2", "head", "hr"]), st.integers(0, 3)),
    st.tuples(st.just("reject"), st.sampled_from(["lead", "head"]), st.integers(0, 3)),
    st.tuples(st.just("advance"), st.integers(1, 30)),
    st.tuples(st.just("play"), st.sampled_from(["sam", "lead", "hr", "qa", "head"]), st.sampled_from(["sam", "lead"]),
              st.sampled_from(["self_review", "staff_performance", "legal_claim", "abusive_call", "training",
                               "spot_check"])),
)


class _Model:
    """What the policy (read from YAML semantics, not from callvault) says the API must allow."""

    ROLES = {p.username: p.role for p in PERSONAS_B}
    OPEN = {"self_review": {"specialist"}, "staff_performance": {"support_lead", "qa_reviewer",
            "head_of_customer_success"}, "legal_claim": {"support_lead", "head_of_customer_success"},
            "abusive_call": {"support_lead", "head_of_customer_success", "specialist"},  # HR: none (B12)
            "training": {"support_lead", "qa_reviewer", "head_of_customer_success"},
            "spot_check": {"qa_reviewer", "support_lead", "head_of_customer_success"}}
    APPROVERS = {"self_review": {"support_lead", "head_of_customer_success"},
                 "staff_performance": {"support_lead", "head_of_customer_success"},
                 "legal_claim": {"head_of_customer_success"},
                 "abusive_call": {"support_lead", "head_of_customer_success"},
                 "training": {"support_lead", "head_of_customer_success"}}

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.requests: list[dict[str, Any]] = []
        self.grants: list[tuple[str, str, str, datetime]] = []

    def in_scope(self, user: str, owner: str) -> bool:
        return self.ROLES[user] != "specialist" or user == owner

    def may_request(self, user: str, owner: str, purpose: str) -> bool:
        return self.ROLES[user] in self.OPEN[purpose] and purpose in self.APPROVERS and self.in_scope(user, owner)

    def may_approve(self, approver: str, req: dict[str, Any]) -> bool:
        return (req["status"] == "pending" and self.ROLES[approver] in self.APPROVERS[req["purpose"]]
                and approver != req["user"] and approver != req["owner"])

    SAMPLED_ONLY = {"spot_check"}
    """B8: spot checks are the random QA review, reaching only calls drawn into a sample; none are here."""

    def may_play(self, user: str, owner: str, purpose: str) -> bool:
        if self.ROLES[user] not in self.OPEN[purpose] or not self.in_scope(user, owner):
            return False
        if purpose in self.SAMPLED_ONLY:
            return False
        if purpose not in self.APPROVERS:
            return True
        return any(g[:3] == (user, owner, purpose) and g[3] > self.now for g in self.grants)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=10))
def test_no_sequence_of_api_calls_reaches_a_recording_the_policy_denies(
        server_b: LiveServer, env_b: CallvaultEnv, recs: dict[str, str], ops: list[tuple[Any, ...]]) -> None:
    start = datetime(2027, 9, 1, 9, 0, tzinfo=UTC)
    clock, running = FixedClock(start), env_b.runtime.clock
    env_b.runtime.clock = clock
    model = _Model(start)
    with env_b.runtime.db.unit_of_work() as session:
        session.execute(update(AccessGrant).values(revoked_at=start - timedelta(days=1)))
        tokens = {p.username: identity.issue_token(session, user=identity.get_user(session, p.username),
                                                   ttl_seconds=365 * 86400, clock=clock).token for p in PERSONAS_B}
    try:
        with httpx.Client(base_url=server_b.base_url, timeout=30) as client:
            def call(user: str, method: str, path: str, **kw: Any) -> httpx.Response:
                return client.request(method, path, headers={"Authorization": f"Bearer {tokens[user]}"}, **kw)

            for op in ops:
                if op[0] == "request":
                    _, user, owner, purpose = op
                    resp = call(user, "POST", "/api/v1/access-requests", json={
                        "recording_ids": [recs[owner]], "purpose": purpose, "crm_ref": "CRM-P",
                        "justification": "Property-based access check.", "grant_days": 1})
                    assert (resp.status_code == 201) == model.may_request(user, owner, purpose), resp.text
                    if resp.status_code == 201:
                        model.requests.append({"id": resp.json()["id"], "user": user, "owner": owner,
                                               "purpose": purpose, "status": "pending"})
                elif op[0] in ("approve", "reject") and model.requests:
                    _, approver, index = op
                    req = model.requests[index % len(model.requests)]
                    body = {"note": "decided"}
                    resp = call(approver, "POST", f"/api/v1/access-requests/{req['id']}/{op[0]}", json=body)
                    expected = model.may_approve(approver, req)
                    assert (resp.status_code == 200) == expected, (op, req, resp.text)
                    if expected:
                        req["status"] = op[0]
                        if op[0] == "approve":
                            model.grants.append((req["user"], req["owner"], req["purpose"],
                                                 model.now + timedelta(days=1)))
                elif op[0] == "advance":
                    model.now += timedelta(hours=op[1])
                    clock.at = model.now
                elif op[0] == "play":
                    _, user, owner, purpose = op
                    resp = call(user, "GET", f"/api/v1/recordings/{recs[owner]}/audio", params={"purpose": purpose})
                    assert resp.status_code in (200, 403, 404)
                    assert (resp.status_code == 200) == model.may_play(user, owner, purpose), (op, resp.text)
    finally:
        env_b.runtime.clock = running


def test_the_api_documents_the_access_routes(server_b: LiveServer) -> None:
    with server_b.client() as anonymous:
        paths = anonymous.get("/api/v1/openapi.json").json()["paths"]
    for path in ("/api/v1/access-requests", "/api/v1/access-requests/{request_id}/approve",
                 "/api/v1/access-requests/{request_id}/reject", "/api/v1/grants", "/api/v1/users"):
        assert path in paths


def test_policy_b_file_is_the_one_in_force(env_b: CallvaultEnv) -> None:
    assert Path(POLICY_B).exists()
    with env_b.runtime.db.unit_of_work() as session:
        assert policy_service.current_policy(session).policy_id == "totalsynergy-global"


@pytest.mark.parametrize("revoker", ["lead2", "tina"])  # an approver for the purpose, or the holder
def test_a_revoked_grant_stops_the_very_next_play_and_the_refusal_is_audited(
        server_b: LiveServer, env_b: CallvaultEnv, revoker: str) -> None:
    """RELIABILITY scenario 14: revocation takes effect at once (no cache, no session keeps it alive)."""
    with server_b.client("admin") as admin:
        fresh = upload(admin, wav_bytes(0.5, seed=900 + len(revoker)), _meta("tina", "3002"))
    assert fresh.status_code == 201, fresh.text
    rec = fresh.json()["id"]
    with server_b.client("tina") as tina, server_b.client("lead") as lead, server_b.client(revoker) as other, \
            server_b.client("qa") as qa:
        req = _request(tina, rec, "self_review").json()
        assert lead.post(f"/api/v1/access-requests/{req['id']}/approve").status_code == 200
        assert _audio(tina, rec, "self_review").status_code == 200
        grant = next(g for g in tina.get("/api/v1/grants").json() if g["recording_id"] == rec)
        stranger = qa.post(f"/api/v1/grants/{grant['id']}/revoke")
        assert stranger.status_code == 403  # neither the holder nor an approver for self_review
        assert _audio(tina, rec, "self_review").status_code == 200
        revoked = other.post(f"/api/v1/grants/{grant['id']}/revoke")
        assert revoked.status_code == 200, revoked.text
        after = _audio(tina, rec, "self_review")
        assert after.status_code == 403
        assert "needs approval" in after.json()["message"]
        assert rec not in [g["recording_id"] for g in tina.get("/api/v1/grants").json()]
    attempts = [e for e in _audit(env_b, "access.grant_revoked") if e.object_id == grant["id"]]
    assert [(e.actor, e.decision) for e in attempts] == [("qa", "deny"), (revoker, "info")]
    revocation = attempts[-1]
    assert revocation.details["recording_id"] == rec
    plays = [e for e in _audit(env_b, "recording.play") if e.object_id == rec and e.actor == "tina"]
    assert [e.decision for e in plays] == ["allow", "allow", "deny"]
    assert plays[-1].seq > revocation.seq and plays[-1].purpose == "self_review"


# ------------------------------------------------------------------- B9: when the approver role asks
def test_the_head_of_customer_successs_own_legal_claim_is_approved_by_the_hr_manager(
        server_b: LiveServer, env_b: CallvaultEnv, recs: dict[str, str]) -> None:
    with server_b.client("head") as head, server_b.client("lead") as lead, server_b.client("hr") as hr:
        created = _request(head, recs["tina"], "legal_claim", actions=["play"])
        assert created.status_code == 201, created.text
        req = created.json()
        # Policy B: nobody else holds the Head's role, so the request says who decides it instead (B9, B12).
        assert (req["approver_roles"], req["approvers"]) == (["hr_manager"], ["hr"])
        own = head.post(f"/api/v1/access-requests/{req['id']}/approve", json={"note": "I need it."})
        assert own.status_code == 403 and "hr" in own.json()["message"], own.text
        assert lead.post(f"/api/v1/access-requests/{req['id']}/approve").status_code == 403
        assert req["id"] in [r["id"] for r in hr.get("/api/v1/access-requests", params={"status": "pending"}).json()]
        approved = hr.post(f"/api/v1/access-requests/{req['id']}/approve", json={"note": "Claim CL-9 on file."})
        assert approved.status_code == 200, approved.text
        assert _audio(head, recs["tina"], "legal_claim").status_code == 200
        assert _audio(hr, recs["tina"], "legal_claim").status_code == 404  # HR reaches no content: like an unknown id
        # Whoever could approve the Head's request may also end it early.
        grant = next(g for g in head.get("/api/v1/grants").json() if g["request_id"] == req["id"])
        assert hr.post(f"/api/v1/grants/{grant['id']}/revoke").status_code == 200
        assert _audio(head, recs["tina"], "legal_claim").status_code == 403
    entry = _audit(env_b, "access.approved")[-1]
    assert (entry.object_id, entry.actor, entry.actor_role) == (req["id"], "hr", "hr_manager")


# ---------------------------------------------------------- the actions a request names and an approver approves
class _OneLineEngine:
    name = "scripted"

    def transcribe(self, samples: Any) -> list[engines.Segment]:
        words = ("you", "promised", "a", "refund")
        timed = tuple(engines.Word(w, i * 0.1, (i + 1) * 0.1) for i, w in enumerate(words))
        return [engines.Segment(0.0, 0.4, " ".join(words), timed)]


def test_an_approver_approves_some_of_the_actions_asked_and_the_refusal_of_the_rest_says_where_to_ask(
        server_b: LiveServer, env_b: CallvaultEnv, recs: dict[str, str]) -> None:
    rec = recs["sam"]
    transcribe_now(env_b, rec, _OneLineEngine())
    with server_b.client("lead") as lead, server_b.client("head") as head:
        req = _request(lead, rec, "legal_claim", actions=["play", "transcript", "download"]).json()
        assert req["actions"] == ["download", "play", "transcript"] and req["approved_actions"] is None
        wider = head.post(f"/api/v1/access-requests/{req['id']}/approve", json={"actions": ["play", "export"]})
        assert wider.status_code == 422 and "actions" in [p["location"] for p in wider.json()["problems"]]
        approved = head.post(f"/api/v1/access-requests/{req['id']}/approve", json={"actions": ["play", "transcript"]})
        assert approved.status_code == 200, approved.text
        assert approved.json()["approved_actions"] == ["play", "transcript"]
        grant = next(g for g in lead.get("/api/v1/grants").json() if g["request_id"] == req["id"])
        assert grant["actions"] == ["play", "transcript"]
        assert _audio(lead, rec, "legal_claim").status_code == 200
        transcript = lead.get(f"/api/v1/recordings/{rec}/transcript", params={"purpose": "legal_claim"})
        assert transcript.status_code == 200, transcript.text
        assert "refund" in transcript.json()["segments"][0]["text"]
        server_b.step_up(lead, "lead")
        download = _audio(lead, rec, "legal_claim", download="true")
        assert download.status_code == 403
        message = download.json()["message"]
        assert "allows only play, transcript, not download" in message
        assert f"ask for download on the request page: /access/new?recording={rec}&purpose=legal_claim" \
               "&actions=download" in message
    refusal = [e for e in _audit(env_b, "recording.download") if e.object_id == rec][-1]
    assert (refusal.actor, refusal.decision, refusal.reason) == ("lead", "deny", message)
    approval = [e for e in _audit(env_b, "access.approved") if e.object_id == req["id"]][-1]
    assert approval.details["actions"] == ["play", "transcript"]
    assert approval.details["requested_actions"] == ["download", "play", "transcript"]


def test_a_play_only_approval_refuses_the_transcript_with_the_way_to_ask(
        server_b: LiveServer, recs: dict[str, str]) -> None:
    with server_b.client("qa") as qa, server_b.client("lead2") as lead2:
        req = _request(qa, recs["tina"], "staff_performance", actions=["play"]).json()
        assert lead2.post(f"/api/v1/access-requests/{req['id']}/approve").status_code == 200
        refused = qa.get(f"/api/v1/recordings/{recs['tina']}/transcript", params={"purpose": "staff_performance"})
        assert refused.status_code == 403
        assert "ask for transcript on the request page" in refused.json()["message"]


def test_on_the_recording_page_an_approval_for_listening_and_reading_shows_the_transcript_and_asks_for_download(
        server_b: LiveServer, env_b: CallvaultEnv, recs: dict[str, str]) -> None:
    """Issue 23 (4), B6 in the UI: the QA reviewer's staff_performance request for play and transcript is
    approved by a team leader; on the recording page the transcript is offered (not refused on the same
    page), and download, which the approval does not cover, is a link to the request form with download
    ticked, never a link that answers a raw refusal."""
    rec = recs["tina"]
    with server_b.client("qa") as qa, server_b.client("lead2") as lead2:
        req = _request(qa, rec, "staff_performance", actions=["play", "transcript"]).json()
        assert lead2.post(f"/api/v1/access-requests/{req['id']}/approve").status_code == 200
    with httpx.Client(base_url=server_b.base_url, timeout=30) as browser:
        web_sign_in(browser, env_b, "qa")
        page = browser.get(f"/recordings/{rec}", params={"purpose": "staff_performance"})
        assert page.status_code == 200, page.text
        form = browser.get("/access/new", params={"recording": rec, "purpose": "staff_performance",
                                                  "actions": "download"})
    assert 'id="player"' in page.text and 'id="transcript"' in page.text
    assert 'id="transcript-refused"' not in page.text
    assert 'id="download"' not in page.text and 'id="request-download"' in page.text
    assert f"/access/new?recording={rec}&amp;purpose=staff_performance&amp;actions=download" in page.text
    assert form.status_code == 200, form.text
    checked = {a for a in ("play", "transcript", "download", "export")
               if re.search(rf'id="action-{a}"\s+checked', form.text)}
    assert checked == {"download"}
    entry = [e for e in _audit(env_b, "recording.play") if e.object_id == rec and e.actor == "qa"][-1]
    assert (entry.decision, entry.purpose) == ("allow", "staff_performance")


def test_a_request_that_names_no_actions_asks_to_listen_and_read(server_b: LiveServer, recs: dict[str, str]) -> None:
    with server_b.client("sam") as sam:
        req = _request(sam, recs["sam"], "abusive_call").json()
    assert req["actions"] == ["play", "transcript"]


def _self_authorising_b() -> PolicyDocument:
    """Policy B as a site would write it choosing self-authorisation for the Head's own legal claims."""
    text = Path(POLICY_B).read_text(encoding="utf-8")
    head, rest = text.split("\n  legal_claim:\n", 1)
    body, tail = rest.split("\n  subject_access:", 1)
    body = body[:body.index("    approval:")] + (
        "    approval: {required: true, approver_roles: [head_of_customer_success],\n"
        "               when_requester_is_approver: self_authorise_and_report}")
    return parse_policy_text(f"{head}\n  legal_claim:\n{body}\n  subject_access:{tail}", source="b-self.yaml")


def test_where_the_policy_allows_it_the_head_authorises_their_own_request_in_writing_and_hr_is_told(
        env_b: CallvaultEnv, recs: dict[str, str]) -> None:
    policy = _self_authorising_b()
    clock = env_b.runtime.clock
    with env_b.runtime.db.unit_of_work() as session:
        head = replace(identity.actor_for(session, identity.get_user(session, "head"), policy),
                       acknowledged_policy_sha256=policy.content_sha256)
        req = access.create_request(session, policy=policy, actor=head, new=access.NewRequest(
            recording_ids=(recs["tina"],), purpose="legal_claim", crm_ref="CRM-SELF",
            justification="Claim CL-12 names me; counsel needs the call today."), clock=clock)
        assert access.deciders(session, policy=policy, req=req) == ["head"]
        with pytest.raises(InvalidInput) as short:
            access.approve(session, policy=policy, actor=head, request_id=req.id, note="urgent", clock=clock)
        assert [p.location for p in short.value.problems] == ["note"]
        assert "Manager" in short.value.problems[0].message
        grants = access.approve(session, policy=policy, actor=head, request_id=req.id, clock=clock,
                                note="Counsel needs the call before the hearing; nobody else can approve.")
        assert [g.approved_by_id for g in grants] == [head.user_id]
        found = access.grants_for_decision(session, user_id=head.user_id, recording_id=recs["tina"], now=clock.now())
        row = session.get(Recording, recs["tina"])
        assert row is not None
        assert decide(policy=policy, actor=head, action=Action.PLAY, recording=recordings.facts(row),
                      purpose="legal_claim", grants=found, now=clock.now()).allowed
        report = session.scalars(select(MisuseReport).where(
            MisuseReport.dedup_key == f"self_authorised_access:{req.id}")).one()
        assert report.subject_user == "head" and "Counsel needs the call" in report.description
        mailed = set(session.scalars(select(OutboxMail.recipient_user).where(OutboxMail.dedup_key.like(
            f"misuse:{report.id}:%"))))
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "access.approved",
                                                         AuditEntry.object_id == req.id)).one()
    assert mailed == {"hr"}  # the misuse recipients except the Head the report is about (B12)
    assert entry.details["self_authorised"] is True and "B12" in entry.clauses
    assert report.evidence == [entry.seq]
