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
    # A Sydney team picks its own zone: the same call shows Sydney's time, and the choice is remembered.
    page.get_by_label("From").fill("")
    page.get_by_label("To (inclusive)").fill("")
    page.get_by_label("Time zone").fill("Australia/Sydney")
    page.get_by_role("button", name="Search").click()
    sydney = calls["day"].astimezone(ZoneInfo("Australia/Sydney"))
    assert sydney.strftime("%Y-%m-%d %H:%M") in _rows(page)
    page.goto("/recordings")
    assert "Australia/Sydney" in page.locator("#zone-hint").inner_text()


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
