"""Issue 26's last points at the HTTP level (a browser-like client through the pages, no Chromium): misuse
reports assigned and closed with a note, each person's own time zone kept on their account, a banner after
every action, the caller form offering deletion where the policy's notice promises it, and the compliance
report as a PDF. Times come from the product clock and from stored calls, never from the test machine's date.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.policy import service as policy_service
from tests.api.test_auth_web import web_sign_in
from tests.support.audio import CALL_START, metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


@pytest.fixture()
def browser_as(server: LiveServer, env: CallvaultEnv) -> Iterator[object]:
    clients: list[httpx.Client] = []

    def sign_in(username: str) -> httpx.Client:
        client = httpx.Client(base_url=server.base_url, timeout=30, headers={"Accept": "text/html"})
        clients.append(client)
        web_sign_in(client, env, username)
        return client

    yield sign_in
    for c in clients:
        c.close()


def _audit(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


# ----------------------------------------------------------------------------------------- 1: misuse assignment
def test_a_recipient_assigns_and_closes_a_misuse_report_on_the_page(browser_as: object, env: CallvaultEnv) -> None:
    alice = browser_as("alice")  # type: ignore[operator]
    page = alice.get("/misuse")
    filed = alice.post("/misuse", data={"summary": "Replays at night", "csrf_token": _csrf(page.text)})
    assert filed.status_code == 303
    boss = browser_as("exec")  # type: ignore[operator]
    page = boss.get("/misuse")
    report_id = re.search(r'action="/misuse/([^/]+)/assignee"', page.text).group(1)  # type: ignore[union-attr]
    assert '<option value="exec"' in page.text  # the policy's recipients (executives) are offered
    resp = boss.post(f"/misuse/{report_id}/assignee", data={"assignee": "exec", "csrf_token": _csrf(page.text)})
    assert resp.status_code == 303
    shown = boss.get(resp.headers["location"])
    assert "The report is assigned to exec." in shown.text and "Assigned to: <strong>exec</strong>" in shown.text
    refused = boss.post(f"/misuse/{report_id}/assignee", data={"assignee": "lead", "csrf_token": _csrf(page.text)})
    assert refused.status_code == 422 and "Lead is not an active executive" in refused.text
    no_note = boss.post(f"/misuse/{report_id}/status", data={"status": "closed", "csrf_token": _csrf(page.text)})
    assert no_note.status_code == 422 and "closing note" in no_note.text
    closed = boss.post(f"/misuse/{report_id}/status", data={"status": "closed", "note": "Approved QA replay",
                                                            "csrf_token": _csrf(page.text)})
    assert closed.status_code == 303
    assert "Closed: Approved QA replay" in boss.get("/misuse").text
    assert [(e.actor, e.details["to"]) for e in _audit(env, "misuse.assigned") if e.object_id == report_id] == [
        ("exec", "exec")]


def test_someone_outside_the_recipients_cannot_assign_a_report(browser_as: object, env: CallvaultEnv) -> None:
    lead = browser_as("lead")  # type: ignore[operator]
    page = lead.get("/misuse")
    filed = lead.post("/misuse", data={"summary": "Odd downloads", "csrf_token": _csrf(page.text)})
    assert filed.status_code == 303
    with env.runtime.db.unit_of_work() as session:
        from callvault.oversight.models import MisuseReport
        report_id = session.scalars(select(MisuseReport.id).where(MisuseReport.summary == "Odd downloads")).one()
    assert 'action="/misuse/' not in lead.get("/misuse").text.split("Odd downloads")[1][:2000]
    resp = lead.post(f"/misuse/{report_id}/assignee", data={"assignee": "exec", "csrf_token": _csrf(page.text)})
    assert resp.status_code == 403
    assert [(e.actor, e.decision) for e in _audit(env, "misuse.assigned") if e.object_id == report_id] == [
        ("lead", "deny")]


# ----------------------------------------------------------------------------------------- 2: the account's zone
@pytest.fixture(scope="module")
def toronto_call(server: LiveServer) -> str:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=2606), metadata(remote_number="+1 416 555 0111"))
        assert resp.status_code == 201, resp.text
        rec: str = resp.json()["id"]
    return rec


def _set_zone(client: httpx.Client, zone: str) -> httpx.Response:
    page = client.get("/account")
    return client.post("/account/timezone", data={"timezone": zone, "csrf_token": _csrf(page.text)})


def test_toronto_and_sydney_users_see_the_same_call_in_their_own_local_times(
        browser_as: object, toronto_call: str, env: CallvaultEnv) -> None:
    alice, lead = browser_as("alice"), browser_as("lead")  # type: ignore[operator]
    resp = _set_zone(alice, "Australia/Sydney")
    assert resp.status_code == 303
    assert "Your time zone is now Australia/Sydney" in alice.get(resp.headers["location"]).text
    sydney = CALL_START.astimezone(ZoneInfo("Australia/Sydney")).strftime("%Y-%m-%d %H:%M:%S")
    toronto = CALL_START.astimezone(ZoneInfo("America/Toronto")).strftime("%Y-%m-%d %H:%M:%S")
    mine = alice.get(f"/recordings/{toronto_call}").text
    theirs = lead.get(f"/recordings/{toronto_call}").text  # lead never chose: the policy's zone (Toronto)
    assert sydney in mine and "Australia/Sydney" in mine and toronto not in mine
    assert toronto in theirs and "America/Toronto" in theirs and sydney not in theirs
    # The search's date pickers are read in the account's zone too, and say which it is.
    search = alice.get("/recordings")
    assert 'name="tz" value="Australia/Sydney"' in search.text
    day = CALL_START.astimezone(ZoneInfo("Australia/Sydney")).date().isoformat()
    found = alice.get("/recordings", params={"started_from": day, "started_to": day})
    assert toronto_call in found.text
    # Kept on the account, not in this browser: a fresh sign-in elsewhere sees it.
    other = browser_as("alice")  # type: ignore[operator]
    assert "Australia/Sydney" in other.get("/recordings").text
    assert [e.details["to"] for e in _audit(env, "account.timezone_changed") if e.actor == "alice"][-1] == (
        "Australia/Sydney")
    assert _set_zone(alice, "").status_code == 303  # back to the policy's zone
    assert toronto in alice.get(f"/recordings/{toronto_call}").text


def test_a_zone_that_does_not_exist_is_refused_with_an_example(browser_as: object) -> None:
    alice = browser_as("alice")  # type: ignore[operator]
    resp = _set_zone(alice, "Mars/Olympus_Mons")
    assert resp.status_code == 422
    assert "is not a time zone name; use one like America/Toronto" in resp.text
    assert "Traceback" not in resp.text and not resp.text.lstrip().startswith("{")


# ----------------------------------------------------------------------------------------- 4: erasure offered
def test_the_request_form_offers_only_what_the_shipped_notice_promises(server: LiveServer) -> None:
    """Policy A's notice promises callers copies (A4), not deletion: the form does not offer it, and the API
    refuses an erasure request naming the field."""
    with server.client() as public:
        form = public.get("/request", headers={"Accept": "text/html"})
        assert form.status_code == 200 and "erasure" not in form.text.lower()
        resp = public.post("/api/v1/subject-requests", json={
            "phone_numbers": ["+1 416 555 0100"], "email": "x@example.org", "asks_for": "erasure",
            "call_date": CALL_START.date().isoformat(), "call_reason": "a refund"})
    assert resp.status_code == 422 and "asks_for" in resp.text


@pytest.fixture(scope="module")
def erasure_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[
        tuple[LiveServer, CallvaultEnv]]:
    """Policy A whose caller notice also promises deletion (``notice.caller_requests: [copy, erasure]``)."""
    from tests.support.env import served
    from tests.support.policies import policy_a_with_erasure

    tmp = tmp_path_factory.mktemp("erasure")
    with served(request.config.getoption("--db"), tmp, policy_a_with_erasure(tmp)) as world:
        yield world


def test_where_the_notice_promises_deletion_the_form_offers_it_and_staff_see_the_kind(
        erasure_server: tuple[LiveServer, CallvaultEnv]) -> None:
    from callvault.notify import service as notify
    from tests.support.smtp import smtp_server

    server, env = erasure_server
    local = CALL_START.astimezone(ZoneInfo("America/Toronto"))
    with server.client() as public, smtp_server() as mail:
        form = public.get("/request", headers={"Accept": "text/html"})
        assert 'value="erasure"' in form.text and "Delete my call recordings (erasure)" in form.text
        sent = public.post("/request", headers={"Accept": "text/html"}, data={
            "asks_for": "erasure", "phone_numbers": "+1 416 555 0123", "email": "erase@example.org",
            "call_date": local.date().isoformat(), "call_time": local.strftime("%H:%M"),
            "agent_first_name": "Alice", "call_reason": "A refund"})
        assert sent.status_code == 200, sent.text
        request_id = re.search(r'action="/request/([^/]+)/verify"', sent.text).group(1)  # type: ignore[union-attr]
        notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock, keyring=env.runtime.keyring)
        message = [r for r in mail.to("erase@example.org") if "code" in str(r.message["Subject"])][-1]
        body = message.message.get_payload(decode=True)
        assert isinstance(body, bytes) and "deletion of call recordings" in body.decode()
        code = re.search(r"(\d{6})", str(message.message["Subject"])).group(1)  # type: ignore[union-attr]
        ok = public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": code})
        assert ok.status_code == 200, ok.text
    with httpx.Client(base_url=server.base_url, timeout=30, headers={"Accept": "text/html"}) as lead:
        web_sign_in(lead, env, "lead")
        assert "erasure" in lead.get("/requests").text
        detail = lead.get(f"/requests/{request_id}")
        assert "Asks for: <strong>deletion (erasure) of their recordings</strong>" in detail.text


# ----------------------------------------------------------------------------------------- 5: the PDF report
def test_the_compliance_report_downloads_as_a_pdf_with_its_tables_and_a_full_legend(
        browser_as: object, server: LiveServer, env: CallvaultEnv, toronto_call: str) -> None:
    import io

    from pypdf import PdfReader

    with server.client("lead") as lead_api:  # one allowed play, so the chart has a purpose to name
        played = lead_api.get(f"/api/v1/recordings/{toronto_call}/audio", params={"purpose": "spot_check"})
        assert played.status_code in (200, 206), played.text
    exec_ = browser_as("exec")  # type: ignore[operator]
    page = exec_.get("/reports/compliance")
    assert 'href="/reports/compliance.pdf?' in page.text
    start = (env.runtime.clock.now().date().replace(day=1)).isoformat()
    end = (env.runtime.clock.now().date()).isoformat()
    resp = exec_.get("/reports/compliance.pdf", params={"from": start, "to": end + "T23:59:59"})
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["content-type"] == "application/pdf"
    assert resp.headers["content-disposition"].startswith('attachment; filename="compliance-')
    assert resp.content.startswith(b"%PDF-")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(resp.content)).pages)
    for heading in ("Compliance report", "Recorded", "Accesses per week and purpose", "Accessed (by whom, why, "
                    "decision)", "Denied", "Legal holds in force", "Misuse reports"):
        assert heading in text, heading
    with env.runtime.db.read_only() as session:
        label = policy_service.current_policy(session).purposes["spot_check"].description
    assert f"{label} (spot_check)" in " ".join(text.split()), "the legend names the purpose as the policy does"
    assert "lead" in text and "support_lead" in text
    assert _audit(env, "report.compliance")[-1].details["format"] == "pdf"


def test_the_pdf_report_is_refused_to_a_role_that_may_not_read_it(browser_as: object, env: CallvaultEnv) -> None:
    alice = browser_as("alice")  # type: ignore[operator]
    resp = alice.get("/reports/compliance.pdf")
    assert resp.status_code == 403 and "may not read the compliance report" in resp.text
    assert not resp.content.startswith(b"%PDF")


def test_in_a_browser_the_caller_picks_deletion_on_the_form(erasure_server: tuple[LiveServer, CallvaultEnv],
                                                            request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The one browser check of this module: the choice is a labelled radio a caller can pick (screenshot
    ``caller-request-erasure.png`` for docs/web.md)."""
    from tests.support.browser import CHROMIUM, new_page

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing")
    server, _ = erasure_server
    page = new_page(request.getfixturevalue("browser"), server.base_url, width=900, timeout_ms=10_000)
    page.goto("/request")
    choice = page.get_by_label("Delete my call recordings (erasure)")
    choice.check()
    assert choice.is_checked() and not page.get_by_label("Copies of my call recordings").is_checked()
    target = Path(os.environ["CALLVAULT_SCREENSHOTS"]) if os.environ.get("CALLVAULT_SCREENSHOTS") else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / "caller-request-erasure.png"), full_page=True)
