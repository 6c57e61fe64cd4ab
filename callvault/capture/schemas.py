"""API shapes for capture incidents and reconciliation (``/api/v1/capture/...``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class CaptureIncidentRead(BaseModel):
    """A call in mandatory recording scope that is not (wholly) on record. No caller number."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    status: str
    source: str
    call_id: str
    started_at: datetime
    duration_seconds: float | None
    direction: str
    extension: str | None
    team: str | None
    agent: str | None
    recording_id: str | None
    detail: str
    clause: str
    policy: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution_note: str


class IncidentResolve(BaseModel):
    note: str = Field(min_length=1, max_length=2000, description="what was found and done")


class ReconcileFinding(BaseModel):
    line: int
    call_id: str
    outcome: str
    """recorded | pending | missing | failed | gap | refused | out_of_scope"""
    detail: str
    stored_call_id: str
    incident_id: str | None


class ReconcileResult(BaseModel):
    summary: str
    policy: str
    mandatory: bool
    """False: the policy makes no call mandatory; the findings are reported and no incident was raised."""
    raised: int
    not_answered: int
    counts: dict[str, int]
    findings: list[ReconcileFinding]
