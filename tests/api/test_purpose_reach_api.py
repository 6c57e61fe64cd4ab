"""Issue 23 end to end: what a purpose reaches (B8 spot checks, B7/B10 subject access) and what it allows
(A9/A13: IT staff hear nothing, only three purposes share a copy): a role, a call, a purpose, the HTTP answer
and the audit entry that records it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.policy import service as policy_service
from callvault.quality import sampling
from tests.api.test_auth_web import web_sign_in
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer


def _upload(server: LiveServer, seed: int, **meta: Any) -> str:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=seed), metadata(**meta))
    assert resp.status_code == 201, resp.text
    rec_id: str = resp.json()["id"]
    return rec_id


@pytest.fixture(scope="module")
def calls_b(server_b: LiveServer, env_b: CallvaultEnv) -> dict[str, str]:
    """Sam's only call of the last complete month (by the product's clock), drawn into that month's QA sample
    (5 %, at least one), and one of his calls of the month before, which no reviewer can draw: a reviewer samples
    only the last complete period, once."""
    sam = {"agent": "sam", "extension": "3001", "team": "customer_success", "local_number": "+61 2 8197 9000",
           "remote_number": "+61 2 9374 4000"}
    with env_b.runtime.db.unit_of_work() as session:
        rules = policy_service.current_policy(session, clock=env_b.runtime.clock).quality_review
    assert rules is not None
    last = sampling.previous_period(env_b.runtime.clock.now(), rules.sampling)
    before = sampling.previous_period(last.start, rules.sampling)
    calls = {"sampled": _upload(server_b, 701, started=last.start + timedelta(days=1, hours=4), **sam),
             "unsampled": _upload(server_b, 702, started=before.start + timedelta(days=1, hours=4), **sam)}
    with server_b.client("qa") as qa:
        resp = qa.post("/api/v1/quality/samples", json={})
    assert resp.status_code == 201, resp.text
    assert resp.json()["selected"] == [calls["sampled"]]
    return calls


def _audio(client: httpx.Client, rec: str, purpose: str, *, download: bool = False) -> httpx.Response:
    return client.get(f"/api/v1/recordings/{rec}/audio", params={"purpose": purpose, "download": download})


def _entry(env: CallvaultEnv, actor: str, rec: str, action: str = "recording.play") -> AuditEntry:
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.actor == actor, AuditEntry.object_id == rec, AuditEntry.action == action,
        ).order_by(AuditEntry.seq.desc()).limit(1)).one()
        session.expunge(entry)
    return entry


# ------------------------------------------------------------------------------ B6/B8: spot checks
@pytest.mark.parametrize("who", ["lead", "qa", "head"])
def test_policy_b_spot_check_of_a_call_outside_the_qa_sample_is_refused_and_audited(
        server_b: LiveServer, env_b: CallvaultEnv, calls_b: dict[str, str], who: str) -> None:
    with server_b.client(who) as client:
        server_b.step_up(client, who)  # downloads need a fresh one-time code first (RELIABILITY 17)
        play = _audio(client, calls_b["unsampled"], "spot_check")
        download = _audio(client, calls_b["unsampled"], "spot_check", download=True)
    for resp in (play, download):
        assert resp.status_code == 403
        assert "QA sample" in resp.json()["message"] and "access request" in resp.json()["message"]
    entry = _entry(env_b, who, calls_b["unsampled"])
    assert entry.decision == "deny" and entry.purpose == "spot_check" and "B8" in entry.clauses
    assert _entry(env_b, who, calls_b["unsampled"], "recording.download").decision == "deny"


@pytest.mark.parametrize("who", ["lead", "qa", "head"])
def test_policy_b_reviewers_spot_check_the_sampled_call_without_a_request(
        server_b: LiveServer, env_b: CallvaultEnv, calls_b: dict[str, str], who: str) -> None:
    with server_b.client(who) as client:
        resp = _audio(client, calls_b["sampled"], "spot_check")
    assert resp.status_code == 200 and resp.headers["content-type"] == "audio/wav"
    entry = _entry(env_b, who, calls_b["sampled"])
    assert entry.decision == "allow" and entry.purpose == "spot_check"


def test_policy_b_the_review_queue_still_plays_the_sampled_call(
        server_b: LiveServer, env_b: CallvaultEnv, calls_b: dict[str, str]) -> None:
    with server_b.client("qa") as qa:
        items = qa.get("/api/v1/quality/queue").json()
        item = next(i for i in items if i["recording_id"] == calls_b["sampled"])
        resp = qa.get(f"/api/v1/quality/items/{item['id']}/audio")
    assert resp.status_code == 200
    entry = _entry(env_b, "qa", calls_b["sampled"])
    assert entry.decision == "allow" and entry.details["quality_item"] == item["id"]


# ---------------------------------------------------------------------- B7/B10: subject access
def test_policy_b_subject_access_to_a_call_nobody_asked_for_is_refused_and_audited(
        server_b: LiveServer, env_b: CallvaultEnv, calls_b: dict[str, str]) -> None:
    with server_b.client("head") as head:
        server_b.step_up(head, "head")
        resp = _audio(head, calls_b["unsampled"], "subject_access", download=True)
    assert resp.status_code == 403 and "matched to a verified request" in resp.json()["message"]
    entry = _entry(env_b, "head", calls_b["unsampled"], "recording.download")
    assert entry.decision == "deny" and entry.purpose == "subject_access" and "B7" in entry.clauses


def test_policy_b_an_operators_request_opens_their_calls_to_its_handlers_then_only_to_the_releaser(
        server_b: LiveServer, env_b: CallvaultEnv, calls_b: dict[str, str]) -> None:
    rec = calls_b["unsampled"]
    with server_b.client("sam") as sam:
        created = sam.post("/api/v1/me/subject-requests", json={"description": "all my calls"})
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    with server_b.client("lead") as lead, server_b.client("lead2") as lead2:
        assert _audio(lead, rec, "subject_access").status_code == 200  # in review: the team may check it
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [rec]}).status_code == 200
        server_b.step_up(lead, "lead")  # approving needs a fresh code
        released = lead.post(f"/api/v1/subject-requests/{request_id}/approve")
        assert released.status_code == 200, released.text
        server_b.step_up(lead2, "lead2")
        after = _audio(lead2, rec, "subject_access", download=True)
    assert after.status_code == 403  # released by lead: nobody else may reach it for this purpose
    assert _entry(env_b, "lead", rec, "recording.export").decision == "allow"
    assert _entry(env_b, "lead2", rec, "recording.download").decision == "deny"


# ------------------------------------------------------------------------- A9/A13 on policy A
@pytest.fixture(scope="module")
def alice_call(server: LiveServer) -> str:
    return _upload(server, 703)


@pytest.mark.parametrize("purpose", ["health_safety_crime", "regulatory_compliance"])
def test_policy_a_it_staff_cannot_play_or_download_content(
        server: LiveServer, env: CallvaultEnv, alice_call: str, purpose: str) -> None:
    with server.client("it") as it:
        server.step_up(it, "it")
        play = _audio(it, alice_call, purpose)
        download = _audio(it, alice_call, purpose, download=True)
        details = it.get(f"/api/v1/recordings/{alice_call}")
    assert play.status_code == 403 and download.status_code == 403
    assert "'it_staff' may not use purpose" in play.json()["message"]
    assert details.status_code == 200  # IT still sees the call record (A9 "administrative access")
    entry = _entry(env, "it", alice_call)
    assert entry.decision == "deny" and entry.purpose == purpose


def test_policy_a_regulatory_compliance_listens_but_does_not_share(
        server: LiveServer, env: CallvaultEnv, alice_call: str) -> None:
    with server.client("exec") as exec_:
        server.step_up(exec_, "exec")
        play = _audio(exec_, alice_call, "regulatory_compliance")
        download = _audio(exec_, alice_call, "regulatory_compliance", download=True)
    assert play.status_code == 200
    assert download.status_code == 403 and "allows listening" in download.json()["message"]
    entry = _entry(env, "exec", alice_call, "recording.download")
    assert entry.decision == "deny" and "A13" in entry.clauses


def test_policy_a_leadership_downloads_a_spot_checked_call(server: LiveServer, env: CallvaultEnv,
                                                           alice_call: str) -> None:
    with server.client("lead") as lead:
        server.step_up(lead, "lead")
        resp = _audio(lead, alice_call, "spot_check", download=True)
    assert resp.status_code == 200 and "attachment" in resp.headers["content-disposition"]
    assert _entry(env, "lead", alice_call, "recording.download").decision == "allow"


# ------------------------------------------------------------------ the web player's purpose picker
def _picker(server: LiveServer, env: CallvaultEnv, who: str, rec: str, purpose: str | None = None) -> str:
    with httpx.Client(base_url=server.base_url, timeout=30) as browser:
        web_sign_in(browser, env, who)
        page = browser.get(f"/recordings/{rec}", params={"purpose": purpose} if purpose else None)
    assert page.status_code in (200, 403), page.text
    return page.text


def test_policy_b_the_player_offers_spot_check_only_for_the_sampled_call(
        server_b: LiveServer, env_b: CallvaultEnv, calls_b: dict[str, str]) -> None:
    assert 'value="spot_check"' in _picker(server_b, env_b, "qa", calls_b["sampled"])
    unsampled = _picker(server_b, env_b, "qa", calls_b["unsampled"])
    assert 'value="spot_check"' not in unsampled and 'value="subject_access"' not in unsampled
    assert 'value="staff_performance"' in unsampled  # by access request: still offered, marked so


def test_policy_a_the_player_shows_no_download_link_for_a_listen_only_purpose(
        server: LiveServer, env: CallvaultEnv, alice_call: str) -> None:
    listen_only = _picker(server, env, "exec", alice_call, "regulatory_compliance")
    assert "download=true" not in listen_only and 'id="step-up"' not in listen_only
    assert 'id="download-refused"' in listen_only and "allows listening" in listen_only
    # Downloadable: offered behind the authenticator-code form (step-up), not yet as a plain link.
    assert 'id="step-up"' in _picker(server, env, "exec", alice_call, "spot_check")
