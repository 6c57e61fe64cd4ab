"""API shapes of misuse reports and policy acknowledgements."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MisuseReportCreate(BaseModel):
    """A report of suspected misuse or a breach (B12). Don't paste recording content in it."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1, max_length=300, description="one line: what you suspect")
    description: str = Field(default="", max_length=20_000, description="what you saw, when, where")
    subject_user: str | None = Field(default=None, max_length=64, description="username of whom it is about")
    evidence: list[int] = Field(default_factory=list, max_length=1000, description="audit entry seqs, if known")


class MisuseReportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: datetime
    updated_at: datetime
    source: str
    reporter: str
    rule: str | None
    subject_user: str | None
    summary: str
    description: str
    evidence: list[int]
    status: str
    assignee: str | None = None
    """The recipient handling it; None: nobody yet."""
    closing_note: str | None = None
    """How it was resolved (set when closed)."""
    due_at: datetime | None = None
    """When the report must be closed (``misuse.report_deadline_days``); None: the policy names no deadline."""


class MisuseStatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["open", "investigating", "closed"]
    note: str = Field(default="", max_length=2000, description="why (kept in the audit log); required to close")


class MisuseAssignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str | None = Field(default=None, max_length=64,
                                 description="username of a recipient to handle it; null takes it back")


class PendingAcknowledgement(BaseModel):
    username: str
    role: str
    last_acknowledged_version: str | None


class AcknowledgementStatus(BaseModel):
    policy_id: str
    version: str
    acknowledgement_required: bool
    pending: list[PendingAcknowledgement]
