"""Scoring a review against the policy's scorecard (B8).

Each question is answered ``yes``, ``no`` or (where the scorecard allows it) ``na``. A section scores
the weighted share of its answered questions that are ``yes`` (0-100); questions answered ``na`` leave
the section, and a section with only ``na`` leaves the total. The total is the sections' scores
averaged by section weight. An ``auto_fail`` question answered ``no`` fails the review with a total of
0, whatever the rest says: these are the things (a missing recording notice, an unverified caller)
no amount of courtesy makes up for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from callvault.core.errors import FieldProblem, InvalidInput
from callvault.policy.schema import Scorecard

ANSWERS = ("yes", "no", "na")


@dataclass(frozen=True)
class ScoreResult:
    section_scores: dict[str, float | None]
    score: float
    auto_failed: bool
    passed: bool
    failed_questions: tuple[str, ...]
    """Auto-fail questions answered ``no``."""


def validate_answers(card: Scorecard, answers: Mapping[str, str]) -> dict[str, str]:
    """Every question answered once with an allowed answer; InvalidInput naming each problem otherwise."""
    problems: list[FieldProblem] = []
    known = {q.id: q for s in card.sections for q in s.questions}
    for qid in answers:
        if qid not in known:
            problems.append(FieldProblem(f"answers.{qid}", f"not a question of scorecard {card.id} v{card.version}"))
    clean: dict[str, str] = {}
    for qid, q in known.items():
        value = str(answers.get(qid, "")).strip().lower()
        if not value:
            problems.append(FieldProblem(f"answers.{qid}", f"answer {q.text!r}: yes or no"
                                         + (" or na" if q.allow_na else "")))
        elif value not in ANSWERS or (value == "na" and not q.allow_na):
            allowed = "yes, no or na" if q.allow_na else "yes or no"
            problems.append(FieldProblem(f"answers.{qid}", f"{value!r} is not an answer here; use {allowed}"))
        else:
            clean[qid] = value
    if problems:
        raise InvalidInput("the scorecard is not complete:", problems)
    return clean


def score(card: Scorecard, answers: Mapping[str, str]) -> ScoreResult:
    """The review's scores for ``answers`` (validated first)."""
    clean = validate_answers(card, answers)
    sections: dict[str, float | None] = {}
    failed: list[str] = []
    total_weight = weighted = 0.0
    for section in card.sections:
        got = possible = 0.0
        for q in section.questions:
            answer = clean[q.id]
            if answer == "na":
                continue
            possible += q.weight
            if answer == "yes":
                got += q.weight
            elif q.auto_fail:
                failed.append(q.id)
        if possible == 0:
            sections[section.id] = None
            continue
        sections[section.id] = round(100.0 * got / possible, 2)
        total_weight += section.weight
        weighted += section.weight * 100.0 * got / possible
    if total_weight == 0:
        raise InvalidInput("the scorecard is not complete:", [FieldProblem(
            "answers", "every question was answered na; at least one must be answered yes or no")])
    total = 0.0 if failed else round(weighted / total_weight, 2)
    return ScoreResult(section_scores=sections, score=total, auto_failed=bool(failed),
                       passed=not failed and total >= card.pass_mark, failed_questions=tuple(failed))
