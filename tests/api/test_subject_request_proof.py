"""Issue 24 point 2: the public request page handed a caller's recordings to whoever controlled an email
address. Here no phone provider is configured (the default), so the requester must state facts about a
call, the team sees which match, and nothing is released until a reviewer confirms them by name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.notify import service as notify
from callvault.subject_requests import proof
from tests.support.audio import CALL_START, metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.smtp import MailSink, smtp_server

VICTIM = "+14165550777"
TORONTO = ZoneInfo("America/Toronto")
"""Policy A's region for +1 416 numbers (CA-ON)."""


@pytest.fixture(scope="module")
def mail() -> Iterator[MailSink]:
    with smtp_server() as sink:
        yield sink


@pytest.fixture(autouse=True)
def _fresh_limits(env: CallvaultEnv) -> None:
    with env.runtime.db.unit_of_work() as session:
        env.runtime.counters.clear_prefix(session, "subject-")


@pytest.fixture(scope="module")
def calls(server: LiveServer) -> dict[str, str]:
    """The victim's calls: one with alice at CALL_START, one three days earlier."""
    made = {}
    with server.client("admin") as admin:
        for name, started, seed in (("recent", CALL_START, 701), ("older", CALL_START - timedelta(days=3), 702)):
            resp = upload(admin, wav_bytes(0.5, seed=seed), metadata(remote_number=VICTIM, started=started))
            assert resp.status_code == 201, resp.text
            made[name] = resp.json()["id"]
    return made


def _code(mail: MailSink, env: CallvaultEnv, to: str) -> str:
    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock, keyring=env.runtime.keyring)
    subjects = [str(r.message["Subject"]) for r in mail.to(to) if "verification code" in str(r.message["Subject"])]
    found = re.search(r"(\d{6})", subjects[-1])
    assert found
    return found.group(1)


def _request(server: LiveServer, env: CallvaultEnv, mail: MailSink, email: str, **facts: Any) -> str:
    """A request for the victim's number, its email code confirmed (which proves only the mailbox)."""
    with server.client() as public:
        resp = public.post("/api/v1/subject-requests", json={"phone_numbers": [VICTIM], "email": email, **facts})
        assert resp.status_code == 202, resp.text
        request_id: str = resp.json()["id"]
        ok = public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": _code(mail, env, email)})
        assert ok.status_code == 200, ok.text
        assert ok.json()["phone_codes_sent"] == [], "no provider: no code can reach the phone"
    return request_id


def _text(message: Any) -> str:
    payload = message.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(payload)


def _local(when: Any) -> Any:
    return when.astimezone(TORONTO)


def _denials(env: CallvaultEnv, request_id: str, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry).where(
            AuditEntry.object_id == request_id, AuditEntry.action == action, AuditEntry.decision == "deny")))


def test_a_stranger_with_their_own_email_cannot_get_someone_elses_calls(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, calls: dict[str, str]) -> None:
    """As the outside tester did: someone else's number, the stranger's own mailbox, review, approve."""
    with server.client() as public:
        bare = public.post("/api/v1/subject-requests", json={"phone_numbers": [VICTIM],
                                                              "email": "stranger@example.org"})
        assert bare.status_code == 422
        assert {"call_date", "call_reason"} <= {p["location"] for p in bare.json()["problems"]}
    # Even a stranger who knows the day the victim called gets only as far as the review.
    email = "stranger@example.org"
    request_id = _request(server, env, mail, email, call_date=_local(CALL_START).date().isoformat(),
                          call_reason="a refund")
    with server.client("lead") as lead:
        shown = lead.get(f"/api/v1/subject-requests/{request_id}").json()
        assert shown["identity"]["phone_verified"] is False
        assert shown["identity"]["warning"] == proof.UNVERIFIED_WARNING
        candidates = lead.get(f"/api/v1/subject-requests/{request_id}/candidates").json()
        assert [c["id"] for c in candidates] == [calls["recent"]], "only the call on the stated day"
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [calls["older"]]}).status_code == 422
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [calls["recent"]]}).status_code == 200
        server.step_up(lead, "lead")  # approving needs a fresh code
        refused = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={})
        assert refused.status_code == 403
        assert "Phone number NOT verified" in refused.json()["message"]
        assert "facts_checked" in refused.json()["message"]
        assert lead.get(f"/api/v1/subject-requests/{request_id}").json()["status"] == "ready", "nothing released"
    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock, keyring=env.runtime.keyring)
    assert not [r for r in mail.to(email) if str(r.message["Subject"]) == "Your call recordings"]
    denied = _denials(env, request_id, "subject_request.release")
    assert denied and "NOT verified" in denied[-1].reason and denied[-1].actor == "lead"


def test_the_reviewer_sees_which_facts_match_and_must_confirm_them_by_name(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, calls: dict[str, str]) -> None:
    email = "victim@example.org"
    stated = _local(CALL_START + timedelta(minutes=40))
    request_id = _request(server, env, mail, email, call_date=stated.date().isoformat(),
                          call_time=stated.strftime("%H:%M"), agent_first_name="Bob", call_reason="my invoice")
    with server.client("lead") as lead:
        identity = lead.get(f"/api/v1/subject-requests/{request_id}").json()["identity"]
        assert identity["warning"] == proof.UNVERIFIED_WARNING
        assert identity["facts_given"] == ["call_time", "agent_name", "reason"]
        (candidate,) = lead.get(f"/api/v1/subject-requests/{request_id}/candidates").json()
        assert candidate["id"] == calls["recent"] and candidate["phone_verified"] is False
        assert candidate["facts"]["call_time"] is True, "40 minutes off is inside the 2-hour window"
        assert candidate["facts"]["agent_name"] is False and "alice" in candidate["facts"]["agent_note"]
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [calls["recent"]]}).status_code == 200
        approve = f"/api/v1/subject-requests/{request_id}/approve"
        server.step_up(lead, "lead")  # approving needs a fresh code
        one = lead.post(approve, json={"facts_checked": ["call_time"]})
        assert one.status_code == 403 and "at least 2" in one.json()["message"]
        wrong_agent = lead.post(approve, json={"facts_checked": ["call_time", "agent_name"]})
        assert wrong_agent.status_code == 403 and "does not match the stated agent" in wrong_agent.json()["message"]
        unknown = lead.post(approve, json={"facts_checked": ["shoe_size"]})
        assert unknown.status_code == 422 and "facts_checked" in unknown.text
        released = lead.post(approve, json={"facts_checked": ["call_time", "reason"]})
        assert released.status_code == 200, released.text
        identity = released.json()["identity"]
        assert identity["facts_confirmed"] == ["call_time", "reason"] and identity["facts_confirmed_by"] == "lead"
    assert len(_denials(env, request_id, "subject_request.release")) == 2
    with env.runtime.db.unit_of_work() as session:
        confirmed = session.scalars(select(AuditEntry).where(
            AuditEntry.object_id == request_id, AuditEntry.action == "subject_request.facts_confirmed")).one()
        assert confirmed.actor == "lead" and (confirmed.details or {})["facts_checked"] == ["call_time", "reason"]
    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock, keyring=env.runtime.keyring)
    links = [re.search(r"(http\S+/s/\S+)", _text(r.message)) for r in mail.to(email)
             if str(r.message["Subject"]) == "Your call recordings"]
    assert links and links[-1]
    with httpx.Client(timeout=30) as anyone:
        assert anyone.get(links[-1].group(1)).status_code == 200


def test_a_call_outside_the_stated_time_is_not_offered(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, calls: dict[str, str]) -> None:
    stated = _local(CALL_START + timedelta(hours=5))
    request_id = _request(server, env, mail, "late@example.org", call_date=stated.date().isoformat(),
                          call_time=stated.strftime("%H:%M"), call_reason="a delivery")
    with server.client("lead") as lead:
        assert lead.get(f"/api/v1/subject-requests/{request_id}/candidates").json() == []
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [calls["recent"]]}).status_code == 422


def test_the_staff_page_warns_that_the_phone_number_was_not_verified(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, calls: dict[str, str]) -> None:
    request_id = _request(server, env, mail, "page@example.org", call_date=_local(CALL_START).date().isoformat(),
                          agent_first_name="Alice", call_reason="opening hours")
    with server.client("lead") as lead:
        page = lead.get(f"/requests/{request_id}")
        assert page.status_code == 200
        assert proof.UNVERIFIED_WARNING in page.text
        assert calls["recent"][:8] in page.text and calls["older"][:8] not in page.text
        assert "Agent: matches" in page.text and "Time: matches" in page.text
    with server.client("alice") as alice:
        assert alice.get(f"/requests/{request_id}").status_code == 403
