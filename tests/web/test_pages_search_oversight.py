"""Issue 26 points 4-6 in a real browser: search as people remember calls (part of a name or number,
their own time zone, words said), the oversight pages for the roles the policy names, and the rough
edges (HTML error pages, the page asked for kept across sign-in, phone widths).

Dates come from the product clock (``env.runtime.clock``), never from the test machine's calendar.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.transcription import engines
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.browser import new_page, require_browser, sign_in
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer
from tests.support.transcripts import transcribe_now

require_browser()
SHOTS = os.environ.get("CALLVAULT_SCREENSHOTS")
TORONTO = ZoneInfo("America/Toronto")


class _Words:
    """A transcription engine that says what the test wants, one script per channel."""

    name = "scripted"

    def __init__(self, *scripts: list[str]) -> None:
        self.scripts = list(scripts)

    def transcribe(self, samples: Any) -> list[engines.Segment]:
        words = self.scripts.pop(0) if self.scripts else ["hello"]
        timed = tuple(engines.Word(w, i * 0.2, (i + 1) * 0.2) for i, w in enumerate(words))
        return [engines.Segment(0.0, len(words) * 0.2, " ".join(words), timed)]


@pytest.fixture(scope="module")
def calls(server: LiveServer, env: CallvaultEnv) -> dict[str, Any]:
    """Three calls two days ago (product clock): alice's and bob's in the afternoon UTC, and one of
    alice's whose transcript has the caller asking for a refund."""
    day = env.runtime.clock.now().replace(hour=14, minute=0, second=0, microsecond=0) - timedelta(days=2)
    out: dict[str, Any] = {"day": day}
    with server.client("admin") as admin:
        for key, agent, ext, remote, at in (("alice", "alice", "2001", "+1 416 555 0142", day),
                                             ("bob", "bob", "2002", "+1 647 555 0199", day + timedelta(hours=1)),
                                             ("refund", "alice", "2001", "+1 905 555 0123", day + timedelta(hours=2))):
            resp = upload(admin, wav_bytes(2.0, seed=len(key)), metadata(
                agent=agent, extension=ext, remote_number=remote, started=at))
            assert resp.status_code == 201, resp.text
            out[key] = resp.json()["id"]
    transcribe_now(env, out["refund"], _Words(["i", "want", "a", "refund"], ["sorry", "to", "hear"]))
    return out


def _page(browser: Any, server: LiveServer, width: int = 1280) -> Any:
    return new_page(browser, server.base_url, width=width, timeout_ms=10_000)


def _shot(page: Any, name: str, tmp: Path) -> None:
    target = Path(SHOTS) if SHOTS else tmp
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def _rows(page: Any) -> str:
    return str(page.locator("#results tbody").inner_text())


def _audit(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.read_only() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# ----------------------------------------------------------------------------------------- 4: search
def test_search_finds_part_of_a_name_or_number_in_the_policys_time_zone(
        browser: Any, server: LiveServer, env: CallvaultEnv, calls: dict[str, Any], tmp_path: Path) -> None:
    page = _page(browser, server)
    sign_in(page, env, "lead")
    page.goto("/recordings")
    # Policy A's office is in Toronto: times are typed and shown there, and the page says so.
    assert "America/Toronto" in page.locator("#zone-hint").inner_text()
    local = calls["day"].astimezone(TORONTO)
    assert local.strftime("%Y-%m-%d %H:%M") in _rows(page)
    # The agent picker offers only agents of calls this person may see; typing part of a name works too.
    assert sorted(page.eval_on_selector_all("#agent-list option", "os => os.map(o => o.value)")) == ["alice", "bob"]
    page.get_by_label("Agent").fill("BO")
    page.get_by_role("button", name="Search").click()
    assert "bob" in _rows(page) and "alice" not in _rows(page)
    page.get_by_label("Agent").fill("")
    page.get_by_label("Phone number (any part)").fill("555-0199")
    page.get_by_role("button", name="Search").click()
    assert page.locator("#results tbody tr").count() == 1 and "bob" in _rows(page)
    page.get_by_label("Phone number (any part)").fill("")
    # Date pickers, read in the zone: the day of the calls (Toronto) holds all three.
    page.get_by_label("From").fill(local.date().isoformat())
    page.get_by_label("To (inclusive)").fill(local.date().isoformat())
    page.get_by_role("button", name="Search").click()
    assert page.locator("#results tbody tr").count() == 3
    _shot(page, "recordings-search", tmp_path)
    # A Sydney team picks its own zone: the same call shows Sydney's time; kept on the account page.
    page.get_by_label("From").fill("")
    page.get_by_label("To (inclusive)").fill("")
    page.get_by_label("Time zone").fill("Australia/Sydney")
    page.get_by_role("button", name="Search").click()
    sydney = calls["day"].astimezone(ZoneInfo("Australia/Sydney"))
    assert sydney.strftime("%Y-%m-%d %H:%M") in _rows(page)
    page.goto("/account")
    page.get_by_label("Your time zone").fill("Australia/Sydney")
    page.get_by_role("button", name="Save time zone").click()
    assert "Australia/Sydney" in page.get_by_role("status").inner_text()
    _shot(page, "account-timezone", tmp_path)
    page.goto("/recordings")
    assert "Australia/Sydney" in page.locator("#zone-hint").inner_text()
    assert sydney.strftime("%Y-%m-%d %H:%M") in _rows(page)
    page.goto("/account")
    page.get_by_label("Your time zone").fill("")
    page.get_by_role("button", name="Save time zone").click()


def test_a_bad_filter_and_a_reversed_range_are_explained(browser: Any, server: LiveServer, env: CallvaultEnv,
                                                        calls: dict[str, Any]) -> None:
    page = _page(browser, server)
    sign_in(page, env, "lead")
    page.goto("/recordings?started_from=yesterday")
    assert "is not a date like" in page.get_by_role("alert").inner_text()
    page.goto("/recordings?started_from=2026-11-05&started_to=2026-11-01")
    alert = page.get_by_role("alert").inner_text()
    assert "From (2026-11-05) is after To (2026-11-01)" in alert
    page.get_by_role("link", name="Swap From and To").click()
    assert page.get_by_label("From").input_value() == "2026-11-01"
    assert page.get_by_role("alert").count() == 0
    page.goto("/recordings?number=abc")
    assert "Number: type some digits" in page.get_by_role("alert").inner_text()


def test_words_said_find_transcribed_calls_for_a_named_purpose(browser: Any, server: LiveServer, env: CallvaultEnv,
                                                             calls: dict[str, Any]) -> None:
    page = _page(browser, server)
    sign_in(page, env, "lead")
    page.goto("/recordings")
    page.get_by_label("Words said", exact=True).fill("refund")
    page.get_by_role("button", name="Search").click()
    assert "choose why you are searching" in page.get_by_role("alert").inner_text()
    page.get_by_label("Purpose of the word search").select_option("complaint_investigation")
    page.get_by_role("button", name="Search").click()
    assert page.locator("#results tbody tr").count() == 1
    assert page.locator(f"#results a[href='/recordings/{calls['refund']}']").count() == 1
    searched = _audit(env, "transcript.search")
    assert searched and searched[-1].purpose == "complaint_investigation" and "refund" not in str(searched[-1].details)


def test_the_result_list_downloads_as_csv_metadata_only_and_audited(browser: Any, server: LiveServer,
                                                                   env: CallvaultEnv, calls: dict[str, Any]) -> None:
    page = _page(browser, server)
    sign_in(page, env, "lead")
    page.goto("/recordings?agent=alice")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download this list as CSV").click()
    text = Path(info.value.path()).read_text(encoding="utf-8")
    table = list(csv.DictReader(io.StringIO(text)))
    assert {r["id"] for r in table} == {calls["alice"], calls["refund"]}
    assert "started (America/Toronto)" in table[0] and "transcript" not in text.lower()
    exported = _audit(env, "recordings.list_exported")
    assert exported and exported[-1].actor == "lead" and exported[-1].details["rows"] == 2


# ----------------------------------------------------------------------------------------- 5: oversight
def test_overseers_search_the_audit_log_and_see_the_destruction_register(
        browser: Any, server: LiveServer, env: CallvaultEnv, calls: dict[str, Any], tmp_path: Path) -> None:
    page = _page(browser, server)
    sign_in(page, env, "exec")  # policy A's misuse recipients are executives
    page.get_by_role("link", name="Audit & destruction").click()
    page.get_by_label("Person").fill("lead")
    page.get_by_label("Decision").select_option("allow")
    page.get_by_role("button", name="Search").click()
    results = page.locator("#audit-results")
    assert results.locator("tbody tr").count() >= 1 and "lead" in results.inner_text()
    assert _audit(env, "audit.searched")[-1].actor == "exec"
    _shot(page, "audit-search", tmp_path)
    page.get_by_role("link", name="Destruction register").click()
    assert page.get_by_role("heading", name="Destruction register").is_visible()
    alice = _page(browser, server)
    sign_in(alice, env, "alice")
    assert alice.get_by_role("link", name="Audit & destruction").count() == 0  # links only where the role may go
    alice.goto("/oversight/audit?person=lead")
    assert "may not search the audit log" in alice.get_by_role("alert").inner_text()


def test_the_compliance_report_names_purposes_as_the_policy_does_and_downloads_as_csv(
        browser: Any, server: LiveServer, env: CallvaultEnv, calls: dict[str, Any], tmp_path: Path) -> None:
    page = _page(browser, server)
    sign_in(page, env, "exec")
    page.goto("/reports/compliance")
    # The words search above was allowed for complaint_investigation: each call it found is a transcript access
    # of that call (it tells what was said), so the chart has bars; every bar's purpose is in the legend with
    # the policy's name.
    bars = page.eval_on_selector_all(".report svg rect title", "ts => ts.map(t => t.textContent)")
    assert bars
    legend = page.locator(".report svg").text_content() or ""
    for purpose in bars:
        assert purpose.split(",")[0] in legend
    assert page.get_by_role("button", name="Print or save as PDF").is_visible()
    with page.expect_download() as info:
        page.get_by_role("link", name="Download as CSV").click()
    assert Path(info.value.path()).read_text(encoding="utf-8").startswith("section,")
    assert _audit(env, "report.compliance")[-1].details["format"] == "csv"


def test_a_recipient_reads_a_misuse_report_assigns_moves_and_closes_it_with_banners(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    alice = _page(browser, server)
    sign_in(alice, env, "alice")
    alice.goto("/misuse")
    alice.get_by_label("What you suspect (one line)").fill("Someone played calls at night")
    alice.get_by_label("What you saw, when, where").fill("The screen on desk 4 at 23:00.")
    alice.get_by_role("button", name="File the report").click()
    assert "filed" in alice.get_by_role("status").inner_text()
    boss = _page(browser, server)
    sign_in(boss, env, "exec")
    boss.goto("/misuse")
    card = boss.locator("li.card", has_text="Someone played calls at night")
    assert "desk 4" in card.inner_text()
    card.get_by_label("Move to").select_option("investigating")
    card.get_by_label("Note (why)").fill("checking badge logs")
    card.get_by_role("button", name="Update").click()
    assert "now investigating" in boss.get_by_role("status").inner_text()
    card = boss.locator("li.card", has_text="Someone played calls at night")
    card.get_by_label("Assign to").select_option("exec")
    card.get_by_role("button", name="Assign").click()
    assert "assigned to exec" in boss.get_by_role("status").inner_text()
    card = boss.locator("li.card", has_text="Someone played calls at night")
    assert "Assigned to: exec" in card.inner_text()
    card.get_by_label("Move to").select_option("closed")
    card.get_by_label("Note (why)").fill("Night shift QA playback, approved; no misuse")
    card.get_by_role("button", name="Update").click()
    assert "now closed" in boss.get_by_role("status").inner_text()
    assert "Closed: Night shift QA playback" in boss.locator(
        "li.card", has_text="Someone played calls at night").inner_text()
    _shot(boss, "misuse-assigned", tmp_path)


# ----------------------------------------------------------------------------------------- 6: rough edges
def test_a_browser_gets_html_error_pages_and_returns_to_the_page_it_asked_for(
        browser: Any, server: LiveServer, env: CallvaultEnv, calls: dict[str, Any]) -> None:
    page = _page(browser, server)
    page.goto("/no/such/page")
    assert page.get_by_role("heading", name="Not found").is_visible()
    page.goto("/recordings?agent=bob")  # not signed in: sign in first, then straight to the page asked for
    page.get_by_label("Username").fill("lead")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/mfa*")
    page.get_by_label("The 6-digit code").fill(env.otp("lead"))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/recordings?agent=bob")
    assert "bob" in _rows(page)
    # Only local paths: another site in next= lands on the home page.
    resp = httpx.get(f"{server.base_url}/?next=//evil.example/x", headers={"Accept": "text/html"})
    assert "evil.example" not in resp.text.split('name="next"')[-1][:80] if 'name="next"' in resp.text else True
    api = httpx.get(f"{server.base_url}/api/v1/no-such", headers={"Accept": "application/json"})
    assert api.headers["content-type"].startswith("application/json")


def test_pages_fit_a_phone_without_sideways_scrolling(browser: Any, server: LiveServer, env: CallvaultEnv,
                                                      calls: dict[str, Any]) -> None:
    page = _page(browser, server, width=390)
    sign_in(page, env, "exec")  # once: each sign-in spends a one-time code
    for path in ("/recordings", "/oversight/audit?person=lead", "/misuse", "/reports/compliance",
                 "/oversight/destroyed", "/compliance/incidents", "/"):
        page.goto(path)
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), path
