"""The review-and-score flow in a real browser (Debian's chromium driven by Playwright): a reviewer draws
the sample, scores a call with the policy's scorecard and comments on it; the agent sees the score and
coaching note and acknowledges it; a second reviewer's score shows up in calibration."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.policy import service as policy_service
from callvault.quality import sampling
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.browser import new_page, require_browser, sign_in
from tests.support.env import CallvaultEnv, LiveServer

require_browser()



@pytest.fixture(scope="module")
def calls(server: LiveServer, env: CallvaultEnv) -> None:
    """Three calls of alice's in the last complete sampling period by the server's clock (what "Draw last
    period's sample now" samples, whatever the day), so the sample takes two."""
    with env.runtime.db.unit_of_work() as session:
        review = policy_service.current_policy(session, clock=env.runtime.clock).quality_review
    assert review is not None
    period = sampling.previous_period(env.runtime.clock.now(), review.sampling)
    with server.client("admin") as admin:
        for seed in (1, 2, 3):
            started = period.start + timedelta(days=1, hours=seed)
            assert upload(admin, wav_bytes(3.0, seed=seed), metadata(agent="alice", started=started)
                          ).status_code == 201


def _page(browser: Any, server: LiveServer) -> Any:
    return new_page(browser, server.base_url)



ANSWERS = {"Greeted the caller": "Yes", "On an outbound call": "Not applicable", "Understood the issue": "Yes",
           "Gave accurate information": "No", "Verified the caller's identity": "Yes",
           "Was courteous": "Yes", "Summarised what happens next": "Yes"}


def _item_decisions(env: CallvaultEnv, actor: str) -> list[tuple[str, str | None]]:
    """(decision, purpose) of the policy engine's answers to ``actor`` reaching a review item's call to write
    about it. The page's player fetches the audio as the browser sees fit (each fetch decided and audited as
    ``recording.play``); those are not counted here."""
    with env.runtime.db.unit_of_work() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.actor == actor).order_by(AuditEntry.seq))
        return [(e.decision, e.purpose) for e in entries
                if (e.details or {}).get("quality_item") and e.action != "recording.play"]


def _score(page: Any, answers: dict[str, str]) -> None:
    for question, answer in answers.items():
        page.get_by_role("radiogroup", name=question).get_by_label(answer, exact=True).check()


def test_reviewer_scores_a_sampled_call_and_the_agent_acknowledges_it(
    browser: Any, server: LiveServer, env: CallvaultEnv, calls: None,
) -> None:
    lead = _page(browser, server)
    sign_in(lead, env, "lead")
    lead.get_by_role("link", name="Quality").click()
    lead.get_by_role("button", name="Draw last period's sample now").click()
    assert "2 call(s) added" in lead.get_by_role("status").inner_text()
    lead.get_by_role("link", name=re.compile(r"^Review [0-9a-f]{8}$")).first.click()
    lead.wait_for_url("**/quality/items/**")
    assert lead.get_by_role("heading", name="Review: alice's inbound call").is_visible()

    lead.get_by_role("button", name="Submit score").click()  # nothing answered: every question is named
    assert "answers.greeting" in lead.get_by_role("alert").inner_text()

    _score(lead, ANSWERS)
    lead.get_by_label("Coaching note for the agent").fill("Check the price list before quoting.")
    lead.get_by_role("button", name="Submit score").click()
    assert lead.get_by_role("status").inner_text() == "Your review was saved."
    assert "lead: 75.0" in lead.get_by_role("main").inner_text()
    decided = _item_decisions(env, "lead")
    lead.get_by_label("At (seconds)").fill("1.5")
    lead.get_by_label("Comment").fill("Price quoted from memory here")
    lead.get_by_role("button", name="Add comment").click()
    assert "1.5 s · lead: Price quoted from memory here" in lead.get_by_role("main").inner_text()
    assert _item_decisions(env, "lead") == [*decided, ("allow", "spot_check")]  # the comment was decided, audited
    item_url = lead.url.split("?")[0]

    agent = _page(browser, server)
    sign_in(agent, env, "alice")
    agent.get_by_role("link", name="Quality").click()
    agent.wait_for_url("**/quality/mine")
    text = agent.get_by_role("main").inner_text()
    assert "Score 75.0" in text and "Check the price list before quoting." in text
    assert "1.5 s: Price quoted from memory here" in text
    agent.get_by_label("Your response (optional)").fill("Understood")
    agent.get_by_role("button", name="Acknowledge").click()
    assert "Acknowledged" in agent.get_by_role("status").inner_text()
    assert "“Understood”" in agent.get_by_role("main").inner_text()
    agent.goto("/quality/dashboard")
    assert agent.get_by_role("heading", name="Not a reviewer").is_visible()

    second = _page(browser, server)
    sign_in(second, env, "exec")
    second.goto(item_url)
    _score(second, {**ANSWERS, "Gave accurate information": "Yes"})
    second.get_by_role("button", name="Submit score").click()
    second.get_by_role("link", name="Dashboard & calibration").click()
    row = second.get_by_role("row").filter(has_text="alice").filter(has_text="accurate")
    assert "lead 75.0" in row.inner_text() and "exec 100.0" in row.inner_text()
