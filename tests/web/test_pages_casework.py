"""Casework in a real browser (issue 26 point 1): the jobs that were CLI/API-only, done from the pages by the
demo personas — a callers' request reviewed, its facts confirmed and released, or refused with a reason; a case
opened, a call linked, a legal hold placed, found overdue, renewed and released; quarantined calls released with
where the evidence was found, or destroyed after a confirmation. Each checks the confirmation banner, the record
the services keep (status, audit), and that other roles neither see the links nor get through.

Set ``CALLVAULT_SCREENSHOTS=docs/screenshots`` to refresh the screenshots in docs/web.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.notify import service as notify
from callvault.notify.models import OutboxMail
from callvault.recordings.models import Recording
from callvault.retention import service as retention
from callvault.retention.models import LegalHold
from callvault.subject_requests.models import SubjectRequest
from tests.support.audio import CALL_START, metadata, upload, wav_bytes
from tests.support.browser import new_page, require_browser, sign_in
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.smtp import MailSink, smtp_server

require_browser()
SHOTS = os.environ.get("CALLVAULT_SCREENSHOTS")
CALLER = "+1 416 555 0177"
TORONTO = ZoneInfo("America/Toronto")


def _page(browser: Any, server: LiveServer, width: int = 1280) -> Any:
    return new_page(browser, server.base_url, width=width, timeout_ms=10_000)


def _shot(page: Any, name: str, tmp: Path) -> None:
    target = Path(SHOTS) if SHOTS else tmp
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def mail() -> Iterator[MailSink]:
    with smtp_server() as sink:
        yield sink


@pytest.fixture(scope="module")
def call(server: LiveServer) -> str:
    """The caller's call with alice, at CALL_START."""
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=901), metadata(remote_number=CALLER))
        assert resp.status_code == 201, resp.text
        rec: str = resp.json()["id"]
    return rec


def _verified_request(server: LiveServer, env: CallvaultEnv, mail: MailSink, email: str) -> str:
    """A caller's request through the public API, its emailed code entered (no phone provider: the number
    is proven only by the facts a reviewer checks)."""
    with env.runtime.db.unit_of_work() as session:
        env.runtime.counters.clear_prefix(session, "subject-")
    local = CALL_START.astimezone(TORONTO)
    with server.client() as public:
        resp = public.post("/api/v1/subject-requests", json={
            "phone_numbers": [CALLER], "email": email, "call_date": local.date().isoformat(),
            "call_time": local.strftime("%H:%M"), "agent_first_name": "Alice", "call_reason": "A refund"})
        assert resp.status_code == 202, resp.text
        request_id: str = resp.json()["id"]
        notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock, keyring=env.runtime.keyring)
        subjects = [str(r.message["Subject"]) for r in mail.to(email) if "code" in str(r.message["Subject"])]
        code = re.search(r"(\d{6})", subjects[-1])
        assert code
        ok = public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": code.group(1)})
        assert ok.status_code == 200, ok.text
    return request_id


def _audit(env: CallvaultEnv, action: str, object_id: str, decision: str | None = None) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        query = select(AuditEntry).where(AuditEntry.action == action, AuditEntry.object_id == object_id)
        if decision:
            query = query.where(AuditEntry.decision == decision)
        return list(session.scalars(query))


def test_staff_review_a_callers_request_confirm_the_facts_and_release_it(
        browser: Any, server: LiveServer, env: CallvaultEnv, mail: MailSink, call: str, tmp_path: Path) -> None:
    request_id = _verified_request(server, env, mail, "release@example.org")
    lead = _page(browser, server)
    sign_in(lead, env, "lead")
    tile = lead.locator(".tile", has_text="Callers' requests waiting")
    assert tile.is_visible() and int(tile.locator(".count").inner_text()) >= 1
    tile.get_by_role("link").click()
    lead.get_by_role("link", name=request_id[:8]).click()
    assert "working day" in lead.locator("#due").inner_text() or "due today" in lead.locator("#due").inner_text()
    assert "NOT verified" in lead.get_by_role("alert").inner_text()

    lead.get_by_label(f"Release recording {call[:8]}").check()
    lead.get_by_role("button", name="Confirm the chosen recordings").click()
    assert "ready to release" in lead.get_by_role("status").first.inner_text()
    # Releasing mails recordings outside: the form asks for a fresh one-time code in place (RELIABILITY 17).
    lead.get_by_label("Your one-time code").fill(env.otp("lead"))
    lead.get_by_role("button", name="Release to the requester").click()  # no facts named: refused, nothing out
    assert "Nothing was released" in lead.locator("#form-errors").inner_text()
    assert _audit(env, "subject_request.release", request_id, "deny")
    lead.get_by_label("I checked the date and time of the call").check()
    lead.get_by_label("I checked the agent's first name").check()
    assert lead.get_by_label("Your one-time code").count() == 0, "the code just confirmed still counts"
    _shot(lead, "callers-request-release", tmp_path)
    lead.get_by_role("button", name="Release to the requester").click()
    assert "Released" in lead.get_by_role("status").first.inner_text()
    with env.runtime.db.unit_of_work() as session:
        row = session.get(SubjectRequest, request_id)
        assert row is not None and row.status == "sent" and row.approved_by == "lead"
        assert row.facts_confirmed == ["call_time", "agent_name"]
    assert _audit(env, "subject_request.released", request_id)


def test_a_reviewer_refuses_a_request_with_a_reason_that_is_mailed_and_others_cannot(
        browser: Any, server: LiveServer, env: CallvaultEnv, mail: MailSink, call: str, tmp_path: Path) -> None:
    request_id = _verified_request(server, env, mail, "refuse@example.org")
    alice = _page(browser, server)
    sign_in(alice, env, "alice")
    assert alice.locator(".tile", has_text="Callers' requests").count() == 0
    alice.goto(f"/requests/{request_id}")
    assert "handled by" in alice.content() and alice.locator("form[action$='/refuse']").count() == 0
    assert _audit(env, "subject_request.show", request_id, "deny")

    lead = _page(browser, server)
    sign_in(lead, env, "lead")
    lead.goto(f"/requests/{request_id}")
    reason = "The calls on this number were made by our business customer's office, not by you."
    lead.get_by_label("Why (mailed to the requester as written)").fill(reason)
    lead.get_by_role("button", name="Refuse the request").click()
    assert "Refused" in lead.get_by_role("status").first.inner_text()
    assert reason in lead.locator("#refusal").inner_text()
    assert lead.locator("form[action$='/approve']").count() == 0  # nothing left to release
    with env.runtime.db.unit_of_work() as session:
        row = session.get(SubjectRequest, request_id)
        assert row is not None and (row.status, row.refused_by) == ("refused", "lead")
        mails = list(session.scalars(select(OutboxMail).where(OutboxMail.recipient == "refuse@example.org",
                                                              OutboxMail.subject.contains("request"))))
    assert any(reason in m.body for m in mails)
    assert _audit(env, "subject_request.refused", request_id)


def test_a_hold_role_opens_a_case_links_a_call_and_places_renews_and_releases_a_hold(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=902), metadata(remote_number="+1 416 555 0188"))
        assert resp.status_code == 201, resp.text
        rec = resp.json()["id"]
    today = env.runtime.clock.now().date()
    first, last = retention.review_bounds(_policy(env), today)
    lead = _page(browser, server)
    sign_in(lead, env, "lead")
    lead.get_by_role("link", name="Cases & holds").click()
    lead.get_by_label("Case reference (e.g. the CRM ticket)").fill("COMPLAINT-9")
    lead.get_by_label("Description").fill("Caller disputes a refund")
    lead.get_by_role("button", name="Open the case").click()
    assert "Case opened" in lead.get_by_role("status").inner_text()
    lead.get_by_label("Recording id", exact=True).fill(rec)
    lead.get_by_role("button", name="Link the recording").click()
    assert "linked" in lead.get_by_role("status").inner_text()

    assert lead.get_by_label(re.compile("Review by")).get_attribute("max") == last.isoformat()
    lead.get_by_label("Hold").select_option("recording")
    lead.get_by_label("Recording id or case reference").fill(rec)
    lead.get_by_label("Reason", exact=True).fill("Litigation expected over the refund")
    lead.get_by_label("Owner (who answers for it)").fill("legal@example.com")
    lead.get_by_label(re.compile("Review by")).fill((first + timedelta(days=20)).isoformat())
    lead.get_by_role("button", name="Place the hold").click()
    assert "Legal hold placed" in lead.get_by_role("status").inner_text()
    assert _audit(env, "retention.hold_placed", _hold_id(env, rec))

    # Time passes without a review: the hold is past its date and the page says so.
    hold_id = _hold_id(env, rec)
    with env.runtime.db.unit_of_work() as session:
        hold = session.get(LegalHold, hold_id)
        assert hold is not None
        hold.review_on = today - timedelta(days=1)
    lead.goto("/cases")
    row = lead.locator(f"#hold-{hold_id}")
    assert "OVERDUE" in row.inner_text() and "overdue" in (row.get_attribute("class") or "")
    _shot(lead, "cases-and-holds", tmp_path)
    row.get_by_label("New review date").fill((first + timedelta(days=30)).isoformat())
    row.get_by_label("Why it must still be kept").fill("Claim filed; awaiting the court date")
    row.get_by_role("button", name="Renew").click()
    assert "renewed" in lead.get_by_role("status").inner_text()
    assert "OVERDUE" not in lead.locator(f"#hold-{hold_id}").inner_text()
    lead.locator(f"#hold-{hold_id}").get_by_label("Why it is no longer needed").fill("Claim settled")
    lead.locator(f"#hold-{hold_id}").get_by_role("button", name="Release").click()
    assert "released" in lead.get_by_role("status").inner_text()
    lead.get_by_role("button", name="Resolve case COMPLAINT-9").click()
    assert "Case resolved" in lead.get_by_role("status").inner_text()
    assert _audit(env, "retention.hold_released", hold_id) and _audit(env, "retention.case_resolved", "COMPLAINT-9")

    # IT staff manage cases but the policy does not name them for holds: no hold forms, and a forged one is refused.
    it = _page(browser, server)
    sign_in(it, env, "it")
    it.goto("/cases")
    assert it.locator("#place-hold").count() == 0 and it.locator("#hold-roles").is_visible()
    it.evaluate("""([rec]) => {
        const f = document.createElement('form'); f.method = 'post'; f.action = '/holds/place';
        const add = (n, v) => { const i = document.createElement('input'); i.type = 'hidden'; i.name = n;
                                i.value = v; f.appendChild(i); };
        add('csrf_token', document.querySelector('input[name=csrf_token]').value); add('target', 'recording');
        add('target_id', rec); add('reason', 'keep it'); add('owner', 'it'); add('review_date', '2030-01-01');
        document.body.appendChild(f); f.submit(); }""", [rec])
    it.wait_for_url("**/holds/place")
    assert "may not place legal holds" in it.locator("main").inner_text()
    assert _audit(env, "retention.hold_place", rec, "deny")


def _policy(env: CallvaultEnv) -> Any:
    from callvault.policy import service as policy_service

    with env.runtime.db.unit_of_work() as session:
        return policy_service.current_policy(session, clock=env.runtime.clock)


def _hold_id(env: CallvaultEnv, rec: str) -> str:
    with env.runtime.db.unit_of_work() as session:
        hold_id: str = session.scalars(select(LegalHold.id).where(LegalHold.recording_id == rec)).one()
    return hold_id


def test_administrators_release_or_destroy_quarantined_calls_and_others_are_refused(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    ids = []
    with server.client("admin") as admin:
        for seed in (903, 904):
            resp = upload(admin, wav_bytes(0.5, seed=seed), metadata(consent=None, remote_number="+1 416 555 0199"))
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
    keep, drop = ids
    it = _page(browser, server)
    sign_in(it, env, "it")
    it.locator(".tile", has_text="Quarantined recordings").get_by_role("link").click()
    card = it.locator(f"#q-{keep}")
    assert "Why it is quarantined" in card.inner_text()
    _shot(it, "quarantine", tmp_path)
    card.get_by_label("Where the consent evidence was found").fill("Announcement found in the IVR log")
    card.get_by_role("button", name="Release from quarantine").click()
    assert "Released from quarantine" in it.get_by_role("status").inner_text()

    card = it.locator(f"#q-{drop}")
    card.get_by_label("Why it must be destroyed").fill("No notice was given on this call")
    card.get_by_role("button", name="Destroy permanently").click()  # the confirmation box is required first
    assert it.evaluate(f"document.getElementById('confirm-{drop}').validity.valueMissing")
    assert "Destroyed" not in it.get_by_role("status").inner_text()
    card.get_by_label("I understand this destroys the recording permanently").check()
    card.get_by_role("button", name="Destroy permanently").click()
    assert "Destroyed" in it.get_by_role("status").inner_text()
    with env.runtime.db.unit_of_work() as session:
        kept, gone = session.get(Recording, keep), session.get(Recording, drop)
        assert kept is not None and not kept.quarantined and kept.state == "available"
        assert gone is not None and gone.state == "destroyed"
    assert _audit(env, "recording.quarantine_release", keep) and _audit(env, "recording.quarantine_destroy", drop)

    lead = _page(browser, server)
    sign_in(lead, env, "lead")
    assert lead.locator(".tile", has_text="Quarantined").count() == 0
    lead.goto("/quarantine")
    assert "administering role" in lead.locator("main").inner_text()
    assert _audit(env, "recording.quarantine_list", "", "deny")
