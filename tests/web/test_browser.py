"""The web application in a real browser (Debian's chromium driven by Playwright) against the real
server on loopback: sign in with MFA, acknowledge the policy, search, play with a purpose, be refused
with the reason, request access and have it approved by someone else, report misuse.

Set ``CALLVAULT_SCREENSHOTS=docs/screenshots`` to refresh the README's screenshots.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import POLICY_B, fresh_database
from tests.support.audio import CALL_START, metadata, upload, wav_bytes
from tests.support.browser import new_page, require_browser, sign_in, wait_for_js
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer, Persona

require_browser()
SHOTS = os.environ.get("CALLVAULT_SCREENSHOTS")



@pytest.fixture(scope="module")
def recs(server: LiveServer) -> dict[str, str]:
    ids = {}
    with server.client("admin") as admin:
        for name, ext, seed in (("alice", "2001", 1), ("bob", "2002", 2)):
            resp = upload(admin, wav_bytes(3.0, seed=seed), metadata(agent=name, extension=ext))
            assert resp.status_code == 201, resp.text
            ids[name] = resp.json()["id"]
    return ids


def _page(browser: Any, server: LiveServer, width: int = 1280) -> Any:
    return new_page(browser, server.base_url, width=width, timeout_ms=10_000)



def _shot(page: Any, name: str, tmp: Path) -> None:
    target = Path(SHOTS) if SHOTS else tmp
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def test_signing_in_takes_a_code_and_the_home_page_says_what_needs_you(browser: Any, server: LiveServer,
                                                                       env: CallvaultEnv, tmp_path: Path) -> None:
    page = _page(browser, server)
    page.goto("/")
    _shot(page, "sign-in", tmp_path)
    sign_in(page, env, "it")
    assert page.get_by_role("heading", name="What needs you now").is_visible()
    assert page.get_by_text("Quarantined recordings").is_visible()  # an administering role's tile
    _shot(page, "home", tmp_path)
    page.get_by_role("button", name="Sign out").click()
    assert page.get_by_role("heading", name="Sign in").is_visible()
    page.goto("/recordings")
    assert page.get_by_role("heading", name="Sign in").is_visible()  # signed out for good


def test_a_wrong_code_is_refused_with_the_reason(browser: Any, server: LiveServer) -> None:
    page = _page(browser, server)
    page.goto("/")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("The 6-digit code").fill("000000")
    page.get_by_role("button", name="Continue").click()
    assert page.get_by_role("alert").is_visible()


def test_a_new_hire_must_acknowledge_the_policy_before_anything_else(browser: Any, server: LiveServer,
                                                                     env: CallvaultEnv) -> None:
    page = _page(browser, server)
    sign_in(page, env, "newhire")
    assert page.get_by_text("You must acknowledge this policy").is_visible()
    page.goto("/recordings")  # every page leads back to the gate
    assert page.get_by_text("You must acknowledge this policy").is_visible()
    page.get_by_role("button", name="I have read and acknowledge this policy").click()
    page.wait_for_url("**/recordings")  # then on to the page asked for
    page.goto("/")
    assert page.get_by_role("heading", name="What needs you now").is_visible()


def test_search_shows_consent_retention_and_filters(browser: Any, server: LiveServer, env: CallvaultEnv,
                                                     recs: dict[str, str], tmp_path: Path) -> None:
    page = _page(browser, server)
    sign_in(page, env, "lead")
    page.get_by_role("link", name="Recordings", exact=True).click()
    rows = page.locator("#results tbody tr")
    assert rows.count() == 2
    assert "announcement" in rows.first.inner_text() or "agent notice" in rows.first.inner_text()
    _shot(page, "recordings", tmp_path)
    page.get_by_label("Extension").fill("2002")
    page.get_by_role("button", name="Search").click()
    assert page.locator("#results tbody tr").count() == 1 and "bob" in page.locator("#results tbody").inner_text()
    page.goto("/recordings?started_from=not+a+date")  # the date picker cannot send this; an edited address can
    assert "is not a date like" in page.get_by_role("alert").inner_text()
    phone = _page(browser, server, width=390)
    sign_in(phone, env, "lead")
    phone.goto("/recordings")
    assert phone.locator("#results tbody tr").count() == 2
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    _shot(phone, "recordings-phone", tmp_path)


def test_playing_asks_for_a_purpose_then_streams_and_draws_both_channels(
        browser: Any, server: LiveServer, env: CallvaultEnv, recs: dict[str, str], tmp_path: Path) -> None:
    page = _page(browser, server)
    sign_in(page, env, "lead")
    page.goto(f"/recordings/{recs['alice']}")
    assert page.locator("audio").count() == 0  # nothing plays before a purpose is named
    page.get_by_label("Why are you listening?").select_option("spot_check")
    page.get_by_role("button", name="Open player").click()
    wait_for_js(page, "document.getElementById('player').readyState >= 2")
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(3.0, abs=0.1)
    lanes = page.locator("#wave svg g.lane")
    assert lanes.count() == 2
    assert "caller" in (lanes.nth(0).text_content() or "") and "agent" in (lanes.nth(1).text_content() or "")
    page.evaluate("document.getElementById('player').currentTime = 2")  # seeking: a Range request
    wait_for_js(page, "document.getElementById('player').readyState >= 2")
    assert page.get_by_text("No transcript yet").is_visible()
    trail = page.locator("section", has=page.get_by_role("heading", name="Audit trail of this recording"))
    assert trail.count() == 0  # leadership, not an administrator
    _shot(page, "recording", tmp_path)


def test_downloading_asks_for_the_authenticator_code_first(
        browser: Any, server: LiveServer, env: CallvaultEnv, recs: dict[str, str]) -> None:
    """RELIABILITY 17: a signed-in browser may play, but the audio leaves only after the person
    re-enters their code (a wrong one is refused with the reason); then the download is served."""
    page = _page(browser, server)
    sign_in(page, env, "lead")
    page.goto(f"/recordings/{recs['alice']}?purpose=spot_check")
    assert page.locator("#download").count() == 0  # no direct link before the code
    code = page.get_by_label("To download, confirm with your authenticator code")
    code.fill("000000")
    page.get_by_role("button", name="Confirm and download").click()
    assert "wrong or already used" in page.get_by_role("alert").inner_text()
    page.get_by_label("To download, confirm with your authenticator code").fill(env.otp("lead"))
    with page.expect_download() as fetched:
        page.get_by_role("button", name="Confirm and download").click()
    assert fetched.value.suggested_filename == f"{recs['alice']}.wav"
    page.goto(f"/recordings/{recs['alice']}?purpose=spot_check")
    assert page.locator("#download").is_visible()  # stepped up: for the next few minutes, a plain link


def test_a_specialist_is_refused_anothers_recording_and_can_file_a_misuse_report(
        browser: Any, server: LiveServer, env: CallvaultEnv, recs: dict[str, str], tmp_path: Path) -> None:
    page = _page(browser, server)
    sign_in(page, env, "alice")
    resp = page.goto(f"/recordings/{recs['bob']}")
    assert resp.status == 404 and page.get_by_text("that you may see").is_visible()
    page.goto("/recordings")
    assert page.locator("#results tbody tr").count() == 1
    page.get_by_role("link", name="Misuse").click()
    page.get_by_label("What you suspect").fill("Someone replayed my calls at night")
    page.get_by_label("Username of whom it is about").fill("bob")
    page.get_by_role("button", name="File the report").click()
    assert page.get_by_role("status").inner_text().startswith("Your report was filed")
    assert page.get_by_text("Someone replayed my calls at night").is_visible()
    boss = _page(browser, server)
    sign_in(boss, env, "exec")
    assert "1" in boss.locator(".tile", has_text="Open misuse reports").inner_text()
    boss.goto("/misuse")
    assert boss.get_by_text("Someone replayed my calls at night").is_visible()
    _shot(boss, "misuse", tmp_path)
    boss.goto("/admin/users")
    assert "does not administer" in boss.get_by_role("alert").inner_text()


def test_administrators_see_users_policy_audit_and_a_recordings_trail(
        browser: Any, server: LiveServer, env: CallvaultEnv, recs: dict[str, str], tmp_path: Path) -> None:
    page = _page(browser, server)
    sign_in(page, env, "it")
    page.goto("/admin/users")
    assert page.locator("tr", has_text="newhire").count() == 1
    _shot(page, "admin-users", tmp_path)
    page.goto("/admin/audit")
    page.get_by_role("button", name="Verify the whole chain now").click()
    assert "Intact" in page.get_by_role("status").inner_text()
    page.goto("/admin/policy")
    assert page.get_by_text("In force").is_visible()
    page.goto(f"/recordings/{recs['alice']}")
    assert page.get_by_role("heading", name="Audit trail of this recording").is_visible()
    assert "recording.play" in page.locator("table").last.inner_text()
    page.goto("/reports/compliance")
    assert page.locator(".report svg").count() == 1
    _shot(page, "compliance", tmp_path)


def test_the_public_notice_needs_nosign_in(browser: Any, server: LiveServer) -> None:
    page = _page(browser, server)
    page.goto("/notice")
    assert page.get_by_role("link", name="Ask for a copy of your recordings").is_visible()


# ----------------------------------------------------------------------------------------- policy B: approvals
PERSONAS_B = [Persona("sam", "specialist", "3001", "customer_success"),
              Persona("lead", "support_lead", "3100", "customer_success")]


@pytest.fixture(scope="module")
def server_b(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("web-b")
    with fresh_database(request.config.getoption("--db"), tmp) as url:
        env_b = CallvaultEnv(tmp / "data", url, POLICY_B, personas=PERSONAS_B)
        live = LiveServer(env_b)
        live.start()
        try:
            yield live
        finally:
            live.stop()
            env_b.close()


def test_a_refusal_says_why_and_an_approved_request_lets_the_specialist_listen(
        browser: Any, server_b: LiveServer, tmp_path: Path) -> None:
    env_b = server_b.env
    with server_b.client("admin") as admin:
        resp = upload(admin, wav_bytes(2.0, seed=7), metadata(
            agent="sam", extension="3001", team="customer_success", local_number="+61 2 8197 9000",
            remote_number="+61 2 9374 4000"))
        assert resp.status_code == 201, resp.text
        rec = resp.json()["id"]
    sam = _page(browser, server_b)
    sign_in(sam, env_b, "sam")
    sam.goto(f"/recordings/{rec}")
    sam.get_by_label("Why are you listening?").select_option("self_review")
    sam.get_by_role("button", name="Open player").click()
    denial = sam.locator("#denial")
    assert "approv" in denial.inner_text().lower() and sam.locator("audio").count() == 0
    _shot(sam, "denied", tmp_path)
    denial.get_by_role("link", name="Request access").click()
    assert sam.get_by_label("Recording ids").input_value() == rec
    sam.get_by_label("CRM ticket").fill("CRM-77")
    sam.get_by_label("Why you need it").fill("The customer disputes the quote I gave.")
    sam.get_by_role("button", name="Send request").click()
    assert "sent to the approvers" in sam.get_by_role("status").inner_text()
    assert sam.get_by_text("you cannot approve your own request").is_visible()

    lead = _page(browser, server_b)
    sign_in(lead, env_b, "lead")
    assert "1" in lead.locator(".tile", has_text="waiting for your decision").inner_text()
    lead.goto("/access?status=pending")
    _shot(lead, "access-requests", tmp_path)
    lead.get_by_role("button", name="Approve").click()
    assert "Approved" in lead.get_by_role("status").inner_text()

    sam.goto("/access")
    sam.locator("#grants").scroll_into_view_if_needed()
    sam.locator("table a", has_text=rec[:8]).click()
    sam.get_by_role("button", name="Open player").click()
    wait_for_js(sam, "document.getElementById('player').readyState >= 2")
    assert sam.evaluate("document.getElementById('player').duration") > 0
    # The approval covers listening and reading, not download: the page offers to ask for it, never a
    # link that answers a raw refusal, and the request form comes back with exactly that action ticked.
    assert sam.locator("#download").count() == 0
    sam.get_by_role("link", name="Request download").click()
    assert sam.get_by_label("Recording ids").input_value() == rec
    assert sam.locator("#action-download").is_checked() and not sam.locator("#action-play").is_checked()


def test_a_caller_can_ask_for_their_recordings_without_an_account(browser: Any, server: LiveServer,
                                                                   env: CallvaultEnv, tmp_path: Path) -> None:
    from sqlalchemy import select

    from callvault.notify.models import OutboxMail
    from callvault.subject_requests.models import SubjectRequest

    page = _page(browser, server, width=390)  # a caller on a phone
    page.goto("/notice")
    page.get_by_role("link", name="Ask for a copy of your recordings").click()
    page.get_by_label("Your phone number(s)").fill("+1 416 555 0142")
    page.get_by_label("Email address to send the recordings to").fill("caller@example.org")
    page.get_by_label("Anything that helps us find the calls").fill("My call about an invoice last week")
    # No phone provider here: the form asks about one of the calls, and will not go without it.
    page.get_by_role("button", name="Send the request").click()
    assert page.get_by_role("heading", name="Check your email").count() == 0
    assert page.evaluate("document.getElementById('call_date').validity.valueMissing")
    page.get_by_label("Date of the call").fill(CALL_START.date().isoformat())
    page.get_by_label("About what time").fill("10:00")
    page.get_by_label("First name of the person you spoke to").fill("Alice")
    page.get_by_label("What the call was about").fill("An invoice")
    _shot(page, "caller-request", tmp_path)
    page.get_by_role("button", name="Send the request").click()
    assert page.get_by_role("heading", name="Check your email").is_visible()
    with env.runtime.db.unit_of_work() as session:
        request = session.scalars(select(SubjectRequest).where(SubjectRequest.email == "caller@example.org")).one()
        mails = list(session.scalars(select(OutboxMail).where(OutboxMail.recipient == "caller@example.org")))
    assert request.status == "awaiting_verification"
    assert request.phone_numbers == ["+14165550142"]
    assert (request.call_date, request.agent_first_name, request.call_reason) == (CALL_START.date(), "Alice",
                                                                                  "An invoice")
    assert len(mails) == 1 and "code" in mails[0].subject.lower()


def test_staff_see_the_callers_requests_queue_and_others_are_told_who_handles_it(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    page = _page(browser, server)
    sign_in(page, env, "lead")
    page.get_by_role("link", name="Callers' requests", exact=True).click()  # not the home tile
    assert page.get_by_role("heading", name="Callers' requests").is_visible()
    _shot(page, "callers-requests", tmp_path)
    other = _page(browser, server)
    sign_in(other, env, "alice")
    assert other.get_by_role("link", name="Callers' requests").count() == 0
    other.goto("/requests")
    assert "handled by" in other.content()
