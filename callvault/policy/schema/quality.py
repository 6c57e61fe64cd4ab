"""Quality review: samples, scorecards and the anonymised training library (A6, B8)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from callvault.policy.schema.common import Identifier, Text, _check_timezone, _duplicates, _Model, _no_duplicates

# ------------------------------------------------------------------------------------- quality review
Period = Literal["day", "week", "month", "quarter"]
Stratum = Literal["team", "direction"]
Answer = Literal["yes", "no", "na"]


class SamplingRule(_Model):
    """How calls are drawn at random for review (B8): N per agent per period, or a percentage.

    Exactly one of ``calls_per_agent`` and ``percent`` is given: a rule with both would leave the
    reviewer guessing which one the auditor will check.
    """

    period: Period = "week"
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    """IANA zone in which a period starts and ends (a week starts on Monday at 00:00)."""
    calls_per_agent: int | None = Field(default=None, ge=1, le=1000)
    percent: float | None = Field(default=None, gt=0, le=100)
    """Of each agent's calls in the period, rounded up (so an agent with any call gets one reviewed)."""
    stratify_by: tuple[Stratum, ...] = ("team", "direction")
    """Each agent's sample is spread over these groups in proportion to their calls."""
    teams: tuple[Identifier, ...] = ()
    """Only calls of these teams are drawn (e.g. the trading desks, not the back office); empty: every team."""
    directions: tuple[Literal["inbound", "outbound"], ...] = ()
    """Only calls in these directions are drawn; empty: both."""

    @model_validator(mode="after")
    def _one_size(self) -> SamplingRule:
        if (self.calls_per_agent is None) == (self.percent is None):
            raise ValueError("give exactly one of calls_per_agent (N calls per agent per period) or percent")
        _no_duplicates(self.stratify_by, "stratum")
        return self


class ScorecardQuestion(_Model):
    """One yes/no question; ``auto_fail``: answering no fails the whole review whatever the rest scores."""

    id: Identifier
    text: Text
    weight: float = Field(default=1.0, gt=0, le=100)
    auto_fail: bool = False
    allow_na: bool = False
    """Whether "not applicable" is an answer (the question then leaves the section's total)."""


class ScorecardSection(_Model):
    """A group of questions; its score (0-100) counts ``weight`` in the review's total."""

    id: Identifier
    title: Text
    weight: float = Field(gt=0, le=100)
    questions: tuple[ScorecardQuestion, ...] = Field(min_length=1)


class Scorecard(_Model):
    """The form reviewers fill in for a sampled call (B8)."""

    id: Identifier
    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    title: Text
    pass_mark: float = Field(default=80.0, ge=0, le=100)
    sections: tuple[ScorecardSection, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Scorecard:
        dupes = _duplicates(s.id for s in self.sections)
        if dupes:
            raise ValueError(f"section id listed more than once: {', '.join(dupes)}")
        dupes = _duplicates(q.id for s in self.sections for q in s.questions)
        if dupes:
            raise ValueError(f"question id listed more than once: {', '.join(dupes)}")
        return self


class TrainingLibraryRules(_Model):
    """Anonymised training clips (A6): who may browse them and how long they are kept."""

    purpose: Identifier = "training"
    """The purpose the library serves; it must serve only an anonymised derivative."""
    library_roles: tuple[Identifier, ...] = Field(min_length=1)
    retention_months: int = Field(ge=1, le=120)
    """Clips are crypto-shredded this long after they were made (their own retention, not the call's)."""


class QualityReviewRules(_Model):
    """Random quality review of calls (B8) and the training library built from reviewed calls (A6)."""

    purpose: Identifier = "spot_check"
    """The purpose a reviewer's listening is decided and audited under (implied by the queue)."""
    reviewer_roles: tuple[Identifier, ...] = Field(min_length=1)
    sampling: SamplingRule
    scorecard: Scorecard
    training: TrainingLibraryRules | None = None

    @field_validator("reviewer_roles")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "role")

