"""Scorecards from the policy file (B8): weights, not-applicable answers, auto-fail questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from callvault.core.errors import InvalidInput
from callvault.policy.loader import load_policy_file
from callvault.policy.schema import PolicyDocument
from callvault.quality.scorecards import score
from tests.conftest import POLICY_A, POLICY_B


def card_of(path: Path) -> PolicyDocument:
    return load_policy_file(path)


ALL_YES = {"greeting": "yes", "recording_notice": "na", "understood": "yes", "accurate": "yes",
           "verified": "yes", "courteous": "yes", "close": "yes"}


def test_both_example_policies_carry_a_scorecard_and_a_sampling_rule() -> None:
    a, b = card_of(POLICY_A), card_of(POLICY_B)
    assert a.quality_review is not None and b.quality_review is not None
    assert a.quality_review.sampling.calls_per_agent == 2 and b.quality_review.sampling.percent == 5
    assert "qa_reviewer" in b.quality_review.reviewer_roles
    assert a.quality_review.training is not None and b.quality_review.training is None


def test_all_yes_scores_100_and_passes() -> None:
    result = score(card_of(POLICY_A).quality_review.scorecard, ALL_YES)  # type: ignore[union-attr]
    assert result.score == 100 and result.passed and not result.auto_failed
    assert result.section_scores["opening"] == 100  # the na question left the section


def test_weights_decide_the_total() -> None:
    card = card_of(POLICY_A).quality_review.scorecard  # type: ignore[union-attr]
    result = score(card, {**ALL_YES, "accurate": "no"})  # weight 3 of 5 in a section weighing 50 of 100
    assert result.section_scores["resolution"] == pytest.approx(100 * 3 / 6)
    assert result.score == pytest.approx(20 + 50 * 0.5 + 30)
    assert not result.passed  # 75 < pass mark 80


def test_an_auto_fail_question_answered_no_fails_the_review_whatever_the_rest() -> None:
    card = card_of(POLICY_A).quality_review.scorecard  # type: ignore[union-attr]
    result = score(card, {**ALL_YES, "verified": "no"})
    assert result.auto_failed and result.score == 0 and not result.passed
    assert result.failed_questions == ("verified",)


def test_missing_unknown_and_not_allowed_answers_are_named() -> None:
    card = card_of(POLICY_A).quality_review.scorecard  # type: ignore[union-attr]
    answers = {**ALL_YES, "greeting": "na", "bogus": "yes"}
    del answers["close"]
    with pytest.raises(InvalidInput) as info:
        score(card, answers)
    fields = {p.location for p in info.value.problems}
    assert fields == {"answers.greeting", "answers.bogus", "answers.close"}


def test_a_policy_whose_reviewers_may_not_use_the_review_purpose_is_refused(tmp_path: Path) -> None:
    text = POLICY_A.read_text().replace("reviewer_roles: [executive, support_lead]",
                                        "reviewer_roles: [executive, specialist]")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(InvalidInput, match=r"quality_review\.reviewer_roles"):
        load_policy_file(bad)
