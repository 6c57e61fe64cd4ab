"""The shared call player (static/player.js) in a real browser, as its users work it: on the recording page
Space plays and pauses, the speed changes, ±5 s moves, a transcript word seeks, a channel is muted or
soloed through Web Audio, media gaps are marked on the time axis; a mono call offers one channel. On the QA
review page the reviewer comments at the moment being heard (or a typed m:ss), clicks a comment to go
back to it, moves to the next call, changes the score until the agent acknowledges it, and the agent opens
the reviewed call from My scores.

Every wait is on the player's own state (``wait_for_js``), never on a clock."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.policy import service as policy_service
from callvault.quality import review as review_service
from callvault.quality import sampling
from callvault.recordings.models import Recording
from callvault.transcription import engines
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.browser import new_page, require_browser, sign_in, wait_for_js
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.transcripts import transcribe_now

require_browser()
SHOTS = os.environ.get("CALLVAULT_SCREENSHOTS")
SECONDS = 12.0
CALLER_WORDS = ["hello", "I", "need", "a", "refund", "please"]
AGENT_WORDS = ["sure", "let", "me", "check", "that", "now"]
"""One word a second from 0 s (caller) and from 6 s (agent), so each word is a distinct moment to seek to."""
PLAYER = "document.getElementById('player-box').callvaultPlayer"
AUDIO = "document.getElementById('player')"


class OneWordASecond:
    name = "scripted"

    def __init__(self) -> None:
        self.scripts = [(CALLER_WORDS, 0.0), (AGENT_WORDS, 6.0)]

    def transcribe(self, samples: np.ndarray[Any, np.dtype[np.float32]]) -> list[engines.Segment]:
        words, offset = self.scripts.pop(0)
        timed = tuple(engines.Word(w, offset + i, offset + i + 0.8) for i, w in enumerate(words))
        return [engines.Segment(offset, offset + len(words), " ".join(words), timed)]


@dataclass
class Calls:
    stereo: str
    mono: str
    sampled: list[str]


@pytest.fixture(scope="module")
def calls(server: LiveServer, env: CallvaultEnv) -> Calls:
    """Four 12 s calls of alice's in the last complete sampling period, two of them drawn into the review queue
    (policy A samples two per agent): a stereo call with a transcript and a 2 s media gap, a mono call, and
    two more stereo calls, one transcribed."""
    with env.runtime.db.unit_of_work() as session:
        rules = policy_service.current_policy(session, clock=env.runtime.clock).quality_review
    assert rules is not None
    period = sampling.previous_period(env.runtime.clock.now(), rules.sampling)
    ids = []
    with server.client("admin") as admin:
        for seed, channels in ((1, 2), (2, 1), (3, 2), (4, 2)):
            started = period.start + timedelta(days=1, hours=seed)
            meta = metadata(agent="alice", started=started, ended_at=(started + timedelta(seconds=SECONDS)).isoformat())
            resp = upload(admin, wav_bytes(SECONDS, seed=seed, channels=channels), meta)
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
    for rid in (ids[0], ids[2]):
        transcribe_now(env, rid, OneWordASecond())
    with env.runtime.db.unit_of_work() as session:
        row = session.get(Recording, ids[0])
        assert row is not None
        row.media_gaps, row.missing_seconds = [[3.0, 5.0]], 2.0  # what SIPREC capture records for lost media
        policy = policy_service.current_policy(session, clock=env.runtime.clock)
        sample = sampling.run_sample(session, policy=policy, trigger="on_demand", actor="lead", period=period,
                                     clock=env.runtime.clock)
        assert len(sample.selected) == 2, sample.selected  # alice's 2 of 4, drawn at random: any two will do
        items = [i.id for rid in ids for i in review_service.items_of_recording(session, rid)]
    return Calls(stereo=ids[0], mono=ids[1], sampled=items)


def _page(browser: Any, server: LiveServer) -> Any:
    return new_page(browser, server.base_url, timeout_ms=15_000)


def _shot(page: Any, name: str, tmp: Path) -> None:
    target = Path(SHOTS) if SHOTS else tmp
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def _near(page: Any, seconds: float) -> None:
    wait_for_js(page, f"{AUDIO}.readyState >= 1 && Math.abs({AUDIO}.currentTime - {seconds}) < 0.3")


def test_the_recording_player_plays_on_space_changes_speed_seeks_and_mutes_a_channel(
        browser: Any, server: LiveServer, env: CallvaultEnv, calls: Calls, tmp_path: Path) -> None:
    page = _page(browser, server)
    sign_in(page, env, "lead")
    page.goto(f"/recordings/{calls.stereo}?purpose=spot_check")
    wait_for_js(page, f"{AUDIO}.readyState >= 2 && document.getElementById('transcript').dataset.loaded === 'true'")
    assert page.locator("#step-up").is_visible()  # download stays behind the authenticator code

    page.locator("body").press("Space")
    wait_for_js(page, f"!{AUDIO}.paused")
    # The button follows the audio's "play" event, which the browser fires a task after `paused` turns false.
    page.get_by_role("button", name="Pause (Space)").wait_for(state="visible", timeout=10_000)
    page.locator("body").press("Space")
    wait_for_js(page, f"{AUDIO}.paused")

    page.get_by_label("Speed").select_option("1.5")
    wait_for_js(page, f"{AUDIO}.playbackRate === 1.5")
    page.get_by_label("Speed").select_option("0.5")
    wait_for_js(page, f"{AUDIO}.playbackRate === 0.5")

    page.get_by_text("refund", exact=True).click()  # the caller's 5th word: 4 s
    _near(page, 4.0)
    wait_for_js(page, "document.querySelector('#tx-lines .word.current') !== null"
                      " && document.querySelector('#tx-lines .word.current').textContent === 'refund'")
    page.get_by_role("button", name="Forward 5 seconds").click()
    _near(page, 9.0)
    assert page.locator("#tx-lines li.current").inner_text().startswith("0:06")  # the agent's line follows
    page.get_by_role("button", name="Back 5 seconds").click()
    _near(page, 4.0)
    page.get_by_role("button", name="Back 5 seconds").click()
    _near(page, 0.0)

    page.get_by_role("button", name="Mute caller").click()
    wait_for_js(page, f"{PLAYER}.graph !== null && {PLAYER}.graph.gains[0].gain.value === 0"
                      f" && {PLAYER}.graph.gains[1].gain.value === 1")
    assert page.locator("#player-box").get_attribute("data-audible") == "agent"
    page.get_by_role("button", name="Solo caller").click()
    wait_for_js(page, f"{PLAYER}.graph.gains[0].gain.value === 1 && {PLAYER}.graph.gains[1].gain.value === 0")
    page.get_by_role("button", name="Solo caller").click()  # solo off: back to the caller muted
    wait_for_js(page, f"{PLAYER}.graph.gains[0].gain.value === 0 && {PLAYER}.graph.gains[1].gain.value === 1")
    page.get_by_role("heading", name="Listen").click()  # away from the buttons: Space on one would press it
    page.keyboard.press("Space")  # plays through the Web Audio graph
    wait_for_js(page, f"!{AUDIO}.paused && {AUDIO}.currentTime > 0")
    page.keyboard.press("Space")
    wait_for_js(page, f"{AUDIO}.paused")

    gap = page.locator("#markers li", has_text="media gap")
    assert gap.count() == 1 and "0:03\u20130:05" in gap.inner_text()  # an en dash, as the page writes it
    assert page.locator(".axis-markers .marker-gap").count() == 1
    assert page.locator(".axis-ticks .tick").count() >= 3
    gap.get_by_role("button").click()
    _near(page, 3.0)
    _shot(page, "player", tmp_path)


def test_a_mono_call_offers_one_channel(browser: Any, server: LiveServer, env: CallvaultEnv, calls: Calls) -> None:
    page = _page(browser, server)
    sign_in(page, env, "lead")
    page.goto(f"/recordings/{calls.mono}?purpose=spot_check")
    wait_for_js(page, f"{AUDIO}.readyState >= 2 && {PLAYER} !== undefined")
    channels = page.locator(".player-channels button")
    assert channels.count() == 1 and "both sides" in (channels.first.get_attribute("aria-label") or "")
    channels.first.click()
    wait_for_js(page, f"{PLAYER}.graph.gains.length === 1 && {PLAYER}.graph.gains[0].gain.value === 0")


def _audit(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        for e in entries:
            session.expunge(e)
        return entries


def test_a_reviewer_comments_at_the_playback_time_and_edits_the_score_until_it_is_acknowledged(
        browser: Any, server: LiveServer, env: CallvaultEnv, calls: Calls, tmp_path: Path) -> None:
    assert len(calls.sampled) == 2
    first, second = calls.sampled
    lead = _page(browser, server)
    sign_in(lead, env, "lead")
    lead.goto("/quality")
    lead.locator(f"a[href='/quality/items/{first}']").click()
    lead.wait_for_url(f"**/quality/items/{first}")
    wait_for_js(lead, f"{PLAYER} !== undefined")
    assert lead.evaluate(f"{AUDIO}.readyState") == 0  # nothing fetched (nor audited) before the reviewer asks
    first_in_queue = lead.get_by_role("link", name="Next call →").count() == 1
    assert lead.get_by_role("link", name="← Previous call").count() == (0 if first_in_queue else 1)
    lead.get_by_role("link", name="Next call →" if first_in_queue else "← Previous call").click()
    lead.wait_for_url(f"**/quality/items/{second}")
    lead.get_by_role("link", name="← Previous call" if first_in_queue else "Next call →").click()
    lead.wait_for_url(f"**/quality/items/{first}")
    wait_for_js(lead, f"{PLAYER} !== undefined")

    lead.get_by_role("heading", level=1).click()
    lead.keyboard.press("Space")
    wait_for_js(lead, f"!{AUDIO}.paused && {AUDIO}.readyState >= 2")
    lead.keyboard.press("Space")
    wait_for_js(lead, f"{AUDIO}.paused")
    wait_for_js(lead, "document.getElementById('tx-status').textContent !== 'Loading the transcript…'")
    if lead.get_by_text("check", exact=True).count():
        lead.get_by_text("check", exact=True).click()  # the agent's 4th word: 9 s
        _near(lead, 9.0)
    else:  # this call has no transcript: the axis seeks
        lead.evaluate(f"{PLAYER}.seek(9, false)")
        _near(lead, 9.0)
    wait_for_js(lead, "document.getElementById('at_seconds').value === '0:09.0'")  # stamped at the moment heard
    lead.get_by_label("Comment").fill("Checks the account before answering")
    lead.get_by_role("button", name="Add comment").click()
    assert "9.0 s · lead: Checks the account before answering" in lead.get_by_role("main").inner_text()
    wait_for_js(lead, "document.getElementById('at_seconds').value === '0:09.0'")  # goes on from there

    lead.get_by_label("At (seconds)").fill("0:02.5")  # typed as the player shows time
    lead.get_by_label("Comment").fill("Greeting")
    lead.get_by_role("button", name="Add comment").click()
    assert "2.5 s · lead: Greeting" in lead.get_by_role("main").inner_text()
    lead.get_by_role("button", name="Forward 5 seconds").click()
    _near(lead, 7.5)
    lead.get_by_role("button", name="Go to 9.0 s").click()  # clicking a comment seeks to it
    _near(lead, 9.0)

    answers = {"Greeted the caller": "Yes", "On an outbound call": "Not applicable", "Understood the issue": "Yes",
               "Gave accurate information": "No", "Verified the caller's identity": "Yes",
               "Was courteous": "Yes", "Summarised what happens next": "Yes"}
    for question, answer in answers.items():
        lead.get_by_role("radiogroup", name=question).get_by_label(answer, exact=True).check()
    lead.get_by_label("Coaching note for the agent").fill("Quote from the price list.")
    lead.get_by_role("button", name="Submit score").click()
    assert lead.get_by_role("status").inner_text() == "Your review was saved."
    assert "lead: 75.0" in lead.get_by_role("main").inner_text()
    accurate = lead.get_by_role("radiogroup", name="Gave accurate information")
    assert accurate.get_by_label("No", exact=True).is_checked()  # the submitted scorecard, shown to edit
    assert lead.get_by_label("Coaching note for the agent").input_value() == "Quote from the price list."
    accurate.get_by_label("Yes", exact=True).check()
    lead.get_by_role("button", name="Update score").click()
    assert lead.get_by_role("status").inner_text() == "Your review was updated."
    assert "lead: 100.0" in lead.get_by_role("main").inner_text()
    revised = _audit(env, "quality.review.revised")
    assert [(e.actor, e.details["score_before"], e.details["score"]) for e in revised] == [("lead", 75.0, 100.0)]

    agent = _page(browser, server)
    sign_in(agent, env, "alice")
    agent.goto("/quality/mine")
    assert "Score 100.0" in agent.get_by_role("main").inner_text()
    agent.get_by_role("button", name="Acknowledge").click()
    assert "Acknowledged" in agent.get_by_role("status").inner_text()
    agent.get_by_role("link", name="Open the reviewed call").click()
    agent.wait_for_url("**/recordings/**")
    assert agent.get_by_role("heading", name="Listen").is_visible()  # her own call, a purpose to choose

    lead.reload()
    assert "can no longer be changed" in lead.get_by_role("main").inner_text()
    assert lead.get_by_role("button", name="Update score").count() == 0
    with server.client("lead") as api:
        refused = api.put(f"/api/v1/quality/items/{first}/reviews/mine",
                          json={"answers": {"greeting": "no"}, "coaching_note": "", "share": True})
    assert refused.status_code == 409 and "acknowledged" in refused.json()["message"]
    _shot(lead, "quality-review", tmp_path)
