"""API shapes of emergency ("break the glass") access, its reviews and the accounting of disclosures."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DeclarationCreate(BaseModel):
    """Declare an emergency: why (required) and for how long (default and at most the policy's maximum)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=2000, description="what the emergency is (at least 10 characters)")
    minutes: int | None = Field(default=None, description="how long; default emergency_access.max_minutes")


class DeclarationRead(BaseModel):
    """One declaration, and (once reviewed) its review."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    username: str
    role: str
    reason: str
    declared_at: datetime
    ends_at: datetime
    ended_early_at: datetime | None
    review_due_on: date
    reviewed_at: datetime | None
    reviewed_by: str | None
    review_outcome: str | None
    review_notes: str | None


class ActiveRead(BaseModel):
    """The caller's declaration in force now, if any (what the page banner shows)."""

    active: bool
    declaration_id: str | None = None
    ends_at: datetime | None = None
    seconds_left: int = 0


class AccessRead(BaseModel):
    """One access made under a declaration (from its audit entry)."""

    at: datetime
    action: str
    recording_id: str
    decision: str
    purpose: str | None
    audit_seq: int


class ReviewTaskRead(BaseModel):
    """A declaration awaiting review, what was done under it, and whether the review is late."""

    declaration: DeclarationRead
    accesses: list[AccessRead]
    overdue: bool


class ReviewCreate(BaseModel):
    """The reviewer's judgement: justified or misuse (misuse files a misuse report), with notes."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["justified", "misuse"]
    notes: str = Field(max_length=4000, description="what was reviewed and why it was (not) justified")


class DisclosureRead(BaseModel):
    """One time a caller's recording left the system or was reached in an emergency."""

    at: datetime
    recording_id: str
    action: str
    actor: str
    actor_role: str | None
    purpose: str | None
    reason: str
    emergency_declaration: str | None
    audit_seq: int


class DisclosureList(BaseModel):
    """A caller's accounting of disclosures, oldest first."""

    number: str
    since: date | None
    disclosures: list[DisclosureRead]
