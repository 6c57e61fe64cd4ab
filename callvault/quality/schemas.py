"""API shapes for quality review (B8) and the training library (A6). Clips carry no caller identifier."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SampleCreate(_In):
    first_day: date | None = None
    """Default: the last complete period of the policy's sampling rule."""
    last_day: date | None = None


class SampleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    policy_id: str
    policy_version: str
    period_start: datetime
    period_end: datetime
    trigger: str
    seed: str
    rule: dict[str, object]
    population_sha256: str
    population_size: int
    selected: list[str]
    excluded: dict[str, int]
    run_by: str
    created_at: datetime


class SampleVerification(BaseModel):
    sample_id: str
    matches: bool
    rederived: list[str]


class ReviewItemRead(BaseModel):
    id: str
    sample_id: str
    recording_id: str
    agent: str
    team: str | None
    direction: str
    state: str
    created_at: datetime


class ReviewCreate(_In):
    answers: dict[str, str] = Field(description="question id -> yes | no | na")
    coaching_note: str = Field(default="", max_length=5000)
    share: bool = Field(default=False, description="show the score and coaching note to the agent now")


class ReviewRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    item_id: str
    reviewer: str
    agent: str
    team: str | None
    scorecard_id: str
    scorecard_version: str
    answers: dict[str, str]
    section_scores: dict[str, float | None]
    score: float
    auto_failed: bool
    passed: bool
    coaching_note: str
    submitted_at: datetime
    shared_at: datetime | None
    acknowledged_at: datetime | None
    agent_response: str


class CommentCreate(_In):
    at_seconds: float = Field(ge=0)
    text: str = Field(min_length=1, max_length=2000)


class CommentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    reviewer: str
    at_seconds: float
    text: str
    created_at: datetime


class AcknowledgeCreate(_In):
    response: str = Field(default="", max_length=5000)


class DashboardRow(BaseModel):
    key: str
    month: str
    reviews: int
    average: float
    passed: int
    auto_failed: int


class CalibrationRead(BaseModel):
    item_id: str
    recording_id: str
    agent: str
    spread: float
    scores: dict[str, float]
    disagreements: list[str]


class ClipCreate(_In):
    title: str = Field(default="", max_length=200)


class ClipRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    agent: str
    team: str | None
    direction: str
    duration_seconds: float
    masked_spans: int
    transcript_used: bool
    created_at: datetime
    destroy_after: datetime
