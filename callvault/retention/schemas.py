"""API shapes of retention: cases, legal holds, the report; and of recording control and quarantine."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str = Field(min_length=1, max_length=100, description="the case reference used as case_ref in metadata")
    kind: Literal["complaint", "investigation", "legal_claim"]
    description: str = ""


class CaseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ref: str
    kind: str
    status: str
    description: str
    opened_at: datetime
    opened_by: str
    resolved_at: datetime | None
    resolved_by: str | None


class CaseLink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recording_id: str


class HoldCreate(BaseModel):
    """A legal hold on one recording or on a whole case (give exactly one)."""

    model_config = ConfigDict(extra="forbid")

    recording_id: str | None = None
    case_ref: str | None = None
    reason: str
    owner: str
    review_date: date


class HoldRenewal(BaseModel):
    """A holder reviewed the hold and keeps it until a new review date."""

    model_config = ConfigDict(extra="forbid")

    review_date: date
    reason: str


class HoldRelease(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str


class HoldRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    recording_id: str | None
    case_ref: str | None
    reason: str
    owner: str
    review_on: date
    placed_at: datetime
    placed_by: str
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None


class RetentionRead(BaseModel):
    """A recording's destruction date and the rule that sets it."""

    recording_id: str
    state: str
    destroy_after: datetime | None
    retention_rule: str | None
    on_hold: bool
    case_ref: str | None


class PeriodRead(BaseModel):
    period: str
    total: int
    by_rule: dict[str, int]


class HeldRead(BaseModel):
    hold_id: str
    recording_id: str | None
    case_ref: str | None
    reason: str
    owner: str
    review_on: date
    review_overdue: bool
    recordings_held: int


class ReportRead(BaseModel):
    start: datetime
    end: datetime
    destroyed_total: int
    destroyed: list[PeriodRead]
    held: list[HeldRead]
    overdue_for_destruction: int


class ControlRequest(BaseModel):
    """A recording-control action. ``at``/``until`` are instants on the call (ISO 8601 with offset)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["stop", "pause", "resume", "personal", "announced", "notified"] = Field(
        description="stop/pause/resume/personal change what is kept; announced (inbound: the recording "
                    "announcement was played at `at`, ended at `until`) and notified (outbound: the agent told "
                    "the called party at `at`) are consent evidence for a call in progress (A5, B2)")
    at: datetime | None = None
    until: datetime | None = Field(default=None, description="pause: when recording resumed; announced: when "
                                                           "the announcement ended")
    version: str | None = Field(default=None, max_length=50, description=(
        "announced only: the version of the policy's announcement prompt that was played (consent."
        "inbound_announcement.version or accepted_versions); an announcement without it quarantines the call"))


class ControlRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    call_id: str
    recording_id: str | None
    kind: str
    at: datetime | None
    version: str | None = None
    """``announced``: the announcement prompt's version."""
    requested_by: str
    requested_role: str
    created_at: datetime
    applied_at: datetime | None
    outcome: str


class ControlResult(BaseModel):
    call_id: str
    recording_id: str | None
    control_ids: list[str]
    outcome: str


class QuarantineResolution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["release", "destroy"]
    reason: str


class QuarantineResult(BaseModel):
    recording_id: str
    decision: str
    state: str


class ExtensionCreate(BaseModel):
    """Keep a recording longer on request: a keep-until date or months after the call (one), and why."""

    model_config = ConfigDict(extra="forbid")

    keep_until: date | None = Field(default=None, description="keep at least until this day (the call's zone)")
    months: int | None = Field(default=None, description="or: keep this many months after the call")
    reason: str = Field(max_length=2000, description="who asked and why it must be kept longer")


class ExtensionRead(BaseModel):
    """A recording's retention as an extension sees it: the minimum, the furthest extension, the current date."""

    recording_id: str
    started_at: datetime
    minimum_until: datetime | None
    keep_until: datetime | None
    destroy_after: datetime | None
    extension_limit: datetime
    may_extend: bool
