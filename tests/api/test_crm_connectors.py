"""CRM tickets drive access requests over the real HTTP server: a Zendesk ticket (recorded-shape
payloads) files a request, a tag approves it, solving the ticket ends the grant; duplicates and
early decisions are handled; bad, expired and replayed signatures are refused and audited (B6, B9)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from callvault.access.models import AccessRequest
from callvault.audit.models import AuditEntry
from callvault.integrations.crm import service as crm
from tests.conftest import POLICY_B, fresh_database
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.crm import generic_event, generic_headers, policy_with_crm, post, zendesk_body, zendesk_headers
from tests.support.env import CallvaultEnv, LiveServer, Persona

SECRET = "zendesk-signing-secret-for-tests-0123"
GENERIC_SECRET = "generic-crm-secret-for-tests-456789"
SAM, LEAD, HEAD, STRANGER = "9001", "9002", "9003", "9999"
PERSONAS = [
    Persona("sam", "specialist", "3001", "customer_success"),
    Persona("lead", "support_lead", "3100", "customer_success"),
    Persona("head", "head_of_customer_success", "3200", "customer_success"),
]


@pytest.fixture(scope="module")
def env_b(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallvaultEnv]:
    """Policy B with the CRM allowed to file requests and relay approvals (not to resolve cases)."""
    tmp = tmp_path_factory.mktemp("crm-b")
    policy = policy_with_crm(POLICY_B, tmp / "policy-b-crm.yaml", file_access_requests=True, relay_approvals=True)
    with fresh_database(request.config.getoption("--db"), tmp) as url:
        environment = CallvaultEnv(tmp / "data", url, policy, personas=PERSONAS)
        rt = environment.runtime
        rt.settings = dataclasses.replace(rt.settings, env={
            **rt.settings.env, "CALLVAULT_CRM_ZENDESK_SECRET": SECRET, "CALLVAULT_CRM_GENERIC_SECRET": GENERIC_SECRET})
        with rt.db.unit_of_work() as session:
            for external, user in ((SAM, "sam"), (LEAD, "lead"), (HEAD, "head")):
                crm.link_user(session, connector="zendesk", external_id=external, username=user, actor="test")
        yield environment
        environment.close()


@pytest.fixture(scope="module")
def sams_call(server_b: LiveServer) -> str:
    with server_b.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=31), metadata(
            agent="sam", extension="3001", team="customer_success", local_number="+61 2 8197 9000",
            remote_number="+61 2 9374 4000"))
    assert resp.status_code == 201, resp.text
    rec_id: str = resp.json()["id"]
    return rec_id


def ticket() -> str:
    return str(uuid.uuid4().int % 10**8)


def zd(server: LiveServer, name: str, values: dict[str, str], *, secret: str = SECRET,
       sent_at: datetime | None = None) -> httpx.Response:
    body = zendesk_body(name, **values)
    with server.client() as client:
        return post(client, "zendesk", body, zendesk_headers(secret, body, sent_at=sent_at))


def audio(server: LiveServer, rec_id: str) -> int:
    with server.client("sam") as sam:
        return sam.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "self_review"}).status_code


def only(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    events: list[dict[str, Any]] = resp.json()["events"]
    assert len(events) == 1, events
    return events[0]


def audit_for(env: CallvaultEnv, ref: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry).where(
            AuditEntry.object_type == "crm_ticket", AuditEntry.object_id == f"zendesk:{ref}").order_by(AuditEntry.seq)))


def test_a_zendesk_ticket_files_the_request_its_approval_opens_the_call_and_solving_it_closes_it(
        env_b: CallvaultEnv, server_b: LiveServer, sams_call: str) -> None:
    ref = ticket()
    ids = {"ticket": ref, "requester": SAM, "approver": LEAD, "recording": sams_call}
    assert audio(server_b, sams_call) == 403
    created = only(zd(server_b, "ticket_created_access_request", ids))
    assert created["outcome"] == "applied", created
    assert created["kind"] == "created" and created["ticket_ref"] == ref
    with server_b.client("sam") as sam:
        mine = [r for r in sam.get("/api/v1/access-requests").json() if r["id"] == created["access_request_id"]]
    assert mine and mine[0]["status"] == "pending" and mine[0]["crm_ref"] == ref
    assert mine[0]["purpose"] == "self_review" and mine[0]["actions"] == ["play"]
    assert audio(server_b, sams_call) == 403  # filed, not yet approved

    approved = only(zd(server_b, "ticket_tags_changed_approved", ids))
    assert approved["outcome"] == "applied" and "approved by lead" in approved["detail"]
    assert audio(server_b, sams_call) == 200

    resp = zd(server_b, "ticket_status_changed_solved", ids)
    assert resp.status_code == 200, resp.text
    closed, resolved = resp.json()["events"]
    assert closed["kind"] == "closed" and closed["outcome"] == "applied" and "1 grant(s) ended" in closed["detail"]
    # Policy B does not let the CRM resolve cases: refused, and said so.
    assert resolved["kind"] == "resolved" and resolved["outcome"] == "refused"
    assert "integrations.crm.resolve_cases" in resolved["detail"]
    assert audio(server_b, sams_call) == 403

    actions = [e.action for e in audit_for(env_b, ref)]
    assert actions == ["crm.ticket_created", "crm.ticket_approved", "crm.ticket_closed", "crm.ticket_resolved"]
    assert all(e.actor == "crm:zendesk" for e in audit_for(env_b, ref))


def test_a_redelivered_event_changes_nothing_and_says_so(env_b: CallvaultEnv, server_b: LiveServer,
                                                         sams_call: str) -> None:
    ref = ticket()
    ids = {"ticket": ref, "requester": SAM, "approver": LEAD, "recording": sams_call}
    first = only(zd(server_b, "ticket_created_access_request", ids))
    # The CRM's retry: newly signed (another timestamp), same event id.
    again = only(zd(server_b, "ticket_created_access_request", ids, sent_at=datetime.now(UTC) - timedelta(seconds=2)))
    assert first["outcome"] == "applied" and again["outcome"] == "duplicate"
    assert "already received (applied)" in again["detail"]
    with env_b.runtime.db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(AccessRequest).where(AccessRequest.crm_ref == ref)) == 1


def test_an_approval_that_overtakes_its_ticket_is_deferred_and_applies_once_the_ticket_arrives(
        server_b: LiveServer, sams_call: str) -> None:
    ref = ticket()
    ids = {"ticket": ref, "requester": SAM, "approver": LEAD, "recording": sams_call}
    early = zd(server_b, "ticket_tags_changed_approved", ids)
    assert early.status_code == 409
    assert "deliver its creation first" in early.json()["message"]
    assert only(zd(server_b, "ticket_created_access_request", ids))["outcome"] == "applied"
    assert only(zd(server_b, "ticket_tags_changed_approved", ids))["outcome"] == "applied"
    # A solve that was sent before the approval but arrives after it ended nothing it should not have:
    resp = zd(server_b, "ticket_status_changed_solved", ids)
    assert resp.json()["events"][0]["outcome"] == "applied"


def test_a_reopen_that_arrived_before_an_older_solve_wins(server_b: LiveServer, sams_call: str) -> None:
    ref = ticket()
    ids = {"ticket": ref, "requester": SAM, "approver": LEAD, "recording": sams_call}
    only(zd(server_b, "ticket_created_access_request", ids))
    only(zd(server_b, "ticket_tags_changed_approved", ids))
    assert only(zd(server_b, "ticket_status_changed_reopened", ids))["outcome"] == "noop"  # 16:00
    late = zd(server_b, "ticket_status_changed_solved", ids).json()["events"]  # 15:00, arrives later
    assert [e["outcome"] for e in late] == ["stale", "stale"]
    assert audio(server_b, sams_call) == 200  # the grant was not ended by the stale solve


def test_the_crm_cannot_approve_its_own_requesters_request_or_speak_for_unlinked_people(
        server_b: LiveServer, sams_call: str) -> None:
    # The team leader asks (abusive_call is open to support_lead and needs a support_lead/head approval) ...
    ref = ticket()
    body_ids = {"ticket": ref, "requester": LEAD, "approver": LEAD, "recording": sams_call}
    created = zendesk_body("ticket_created_access_request", **body_ids).replace(b"self_review", b"abusive_call")
    with server_b.client() as client:
        resp = post(client, "zendesk", created, zendesk_headers(SECRET, created))
    assert only(resp)["outcome"] == "applied"
    # ... and tags their own ticket approved: the access service refuses self-approval (B9).
    own = only(zd(server_b, "ticket_tags_changed_approved", body_ids))
    assert own["outcome"] == "refused" and "nobody may approve or reject their own" in own["detail"]
    # The head approves it instead: fine.
    other = zendesk_body("ticket_tags_changed_approved", ticket=ref, requester=LEAD, approver=HEAD,
                         recording=sams_call).replace(b"01HX4ZB3M2R7P8V4W6XJ0K9C1D", b"01HX4ZB3M2R7P8V4W6XJ0K9C1E")
    with server_b.client() as client:
        assert only(post(client, "zendesk", other, zendesk_headers(SECRET, other)))["outcome"] == "applied"
    # A requester nobody linked to an account is refused, naming the fix.
    stranger = only(zd(server_b, "ticket_created_access_request", {
        "ticket": ticket(), "requester": STRANGER, "approver": LEAD, "recording": sams_call}))
    assert stranger["outcome"] == "refused" and "callvault crm link-user" in stranger["detail"]


def test_forged_expired_and_replayed_deliveries_are_refused_and_audited(
        env_b: CallvaultEnv, server_b: LiveServer, sams_call: str) -> None:
    ids = {"ticket": ticket(), "requester": SAM, "approver": LEAD, "recording": sams_call}
    forged = zd(server_b, "ticket_created_access_request", ids, secret="not-the-secret-at-all-000")
    assert forged.status_code == 401 and "signature does not match" in forged.json()["message"]
    old = zd(server_b, "ticket_created_access_request", ids, sent_at=datetime.now(UTC) - timedelta(minutes=10))
    assert old.status_code == 401 and "more than 5 minutes" in old.json()["message"]
    body = zendesk_body("ticket_created_access_request", **ids)
    headers = zendesk_headers(SECRET, body)
    with server_b.client() as client:
        assert post(client, "zendesk", body, headers).status_code == 200
        replay = post(client, "zendesk", body, headers)
    assert replay.status_code == 401 and "replay refused" in replay.json()["message"]
    body = generic_event("g-1", "ticket.closed", "G-1", "2026-11-20T15:00:00+00:00")
    with server_b.client() as client:
        missing = post(client, "generic", body, {"Content-Type": "application/json"})
        expired = post(client, "generic", body, generic_headers(GENERIC_SECRET, body, age_seconds=600))
    assert missing.status_code == 401 and "X-Callvault-Signature" in missing.json()["message"]
    assert expired.status_code == 401
    with env_b.runtime.db.unit_of_work() as session:
        refusals = list(session.scalars(select(AuditEntry).where(
            AuditEntry.action == "crm.delivery", AuditEntry.decision == "deny").order_by(AuditEntry.seq)))
    reasons = " | ".join(e.reason for e in refusals[-5:])
    assert "signature does not match" in reasons and "replay refused" in reasons and "5 minutes" in reasons


def test_bodies_the_connector_cannot_use_get_a_clear_answer(server_b: LiveServer, sams_call: str) -> None:
    ids = {"ticket": ticket(), "requester": SAM, "approver": LEAD, "recording": sams_call}
    broken = zendesk_body("ticket_created_access_request", **ids).replace(b"recordings:", b"calls:")
    with server_b.client() as client:
        resp = post(client, "zendesk", broken, zendesk_headers(SECRET, broken))
        assert resp.status_code == 422
        assert "recordings: <id>" in resp.text
        not_json = b"{not json"
        assert post(client, "zendesk", not_json, zendesk_headers(SECRET, not_json)).status_code == 422
        bad = generic_event("g-2", "ticket.created", "G-2", "2026-11-20T15:00:00")
        resp = post(client, "generic", bad, generic_headers(GENERIC_SECRET, bad))
        assert resp.status_code == 422 and "occurred_at" in resp.text and "UTC offset" in resp.text
        bad = generic_event("g-2", "ticket.created", "G-2", "2026-11-20T15:00:00Z")
        resp = post(client, "generic", bad, generic_headers(GENERIC_SECRET, bad))
        assert resp.status_code == 422 and "ticket.created needs access_request" in resp.text
        unknown = post(client, "salesforce", b"{}", {})
        assert unknown.status_code == 404 and "generic, zendesk" in unknown.json()["message"]
    # An event type callvault does not act on is acknowledged and ignored.
    comment = zd(server_b, "ticket_comment_added", ids)
    assert comment.status_code == 202 and comment.json()["events"] == []


def test_a_connector_without_a_secret_is_unavailable(env_b: CallvaultEnv, server_b: LiveServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    rt = env_b.runtime
    settings = rt.settings
    rt.settings = dataclasses.replace(settings, env={
        k: v for k, v in settings.env.items() if k != "CALLVAULT_CRM_GENERIC_SECRET"})
    try:
        body = generic_event("g-3", "ticket.closed", "G-3", "2026-11-20T15:00:00+00:00")
        with server_b.client() as client:
            resp = post(client, "generic", body, generic_headers(GENERIC_SECRET, body))
    finally:
        rt.settings = settings
    assert resp.status_code == 503  # the operator's log names the setting; the caller is not told
    assert "set CALLVAULT_CRM_GENERIC_SECRET" in caplog.text
