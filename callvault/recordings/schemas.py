"""API shapes of recordings, apart from the ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class RecordingRead(BaseModel):
    """A recording's metadata as a user with the right scope sees it. Never the audio."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    call_id: str
    direction: str
    started_at: datetime
    ended_at: datetime
    duration_seconds: float
    extension: str | None
    agent: str | None
    team: str | None
    remote_number: str | None
    local_number: str | None
    consent: dict[str, str | bool]
    consent_state: str
    consent_source: str = "none"
    """Where the consent evidence came from: ``metadata``, ``control_api``, ``standing_rule`` (the policy's
    ``consent.standing_evidence``; ``consent.rule`` and ``consent.policy`` name the rule and version) or ``none``."""
    quarantined: bool
    quarantine_reason: str | None = None
    """Why it is quarantined (consent evidence missing, or not matching the policy's prompt or the call)."""
    consent_flag: str | None = None
    """Why it was stored flagged: its jurisdiction rule's evidence was missing and the rule says ``store_flagged``."""
    case_ref: str | None
    crm_ref: str | None
    audio_format: str
    sample_rate: int
    channels: int
    size_bytes: int
    sha256: str | None
    created_at: datetime
    destroy_after: datetime | None = None
    """When retention destroys it (A3, B11), unless ``on_hold``."""
    retention_rule: str | None = None
    """Which rule sets ``destroy_after``: ``max_age`` or ``case_resolved``."""
    on_hold: bool = False
    """A legal hold suspends destruction."""


class RecordingPage(BaseModel):
    """One page of search results; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: list[RecordingRead]
    next_cursor: str | None
    limit: int


class RecordingFilters(BaseModel):
    """Search filters; all optional, combined with AND."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    extension: str | None = None
    agent: str | None = None
    team: str | None = None
    direction: Literal["inbound", "outbound"] | None = None
    remote_number: str | None = None
    local_number: str | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None
    case_ref: str | None = None
    agent_contains: str | None = None
    """Any part of the agent's username, case-insensitive (the search page's partial names)."""
    number_contains: str | None = None
    """Digits that occur anywhere in the remote or the local number (the search page's partial numbers:
    people remember "the call from ...4000", not the whole E.164 form)."""
    recording_ids: tuple[str, ...] | None = None
    """Only these recordings (the search page narrows to a transcript search's hits this way)."""
    state: Literal["available", "listed", "failed", "gaps"] = "available"
    """Which capture outcomes: ``available`` (stored audio, the API's search), ``listed`` (those and the
    content-free ``failed`` rows, the search page's default, so a call capture lost is never silently absent),
    ``failed`` only, or ``gaps``: stored calls with stretches where no media arrived (``missing_seconds`` > 0)."""


class IngestResponse(BaseModel):
    id: str
    created: bool
