"""Issue 28 in a real browser: a specialist declares an emergency, sees the banner with the time left, opens a
call on another extension (still asked why), and an executive marks the declaration justified in the queue."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from callvault.audit.models import AuditEntry
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.browser import new_page, require_browser, sign_in, wait_for_js
from tests.support.env import CallvaultEnv, LiveServer

require_browser()


def test_declare_see_the_banner_open_a_call_beyond_scope_and_the_reviewer_marks_it_justified(
        browser: Any, server_r: LiveServer, env_r: CallvaultEnv) -> None:
    with server_r.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=2829), metadata())  # alice's extension 2001
    assert resp.status_code == 201, resp.text
    call = resp.json()["id"]

    bob = new_page(browser, server_r.base_url, timeout_ms=10_000)
    sign_in(bob, env_r, "bob")
    bob.get_by_role("link", name="Emergency").click()
    bob.get_by_label("What is the emergency?").fill("caller collapsed mid-call; the ambulance needs the address")
    bob.get_by_label("For how many minutes").fill("15")
    bob.get_by_role("button", name="Declare an emergency").click()
    banner = bob.locator("#emergency-banner")
    banner.wait_for()
    assert "15 minutes left" in banner.inner_text()

    bob.goto(f"/recordings/{call}")
    assert bob.locator("#emergency-banner").is_visible()
    bob.get_by_label("Why are you listening?").select_option("emergency_access")
    bob.locator("#purpose-form button[type=submit]").click()
    bob.locator("#player-box").wait_for()
    wait_for_js(bob, "document.getElementById('player').readyState >= 1")  # the audio route let it play

    erin = new_page(browser, server_r.base_url, timeout_ms=10_000)
    sign_in(erin, env_r, "exec")
    erin.get_by_role("link", name="Emergency").click()
    erin.get_by_role("link", name="Review emergency access").click()
    card = erin.locator("section.card", has_text="bob")
    assert call in card.inner_text()
    card.get_by_label("Justified").check()
    card.get_by_label("Notes").fill("the address went to the ambulance; nothing else was opened")
    card.get_by_role("button", name="Record the review").click()
    erin.locator("#reviewed").wait_for()
    assert "justified" in erin.locator("#reviewed").inner_text()
    with env_r.runtime.db.unit_of_work() as session:
        reviewed = session.scalars(select(AuditEntry).where(AuditEntry.action == "emergency.reviewed")).one()
        assert reviewed.actor == "exec" and reviewed.details["outcome"] == "justified"
        assert reviewed.details["accesses"] >= 2  # the page's look at the call and its playback
