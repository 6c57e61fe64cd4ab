"""callvault's own CRM event format: signed JSON any CRM (or a small script) can send.

``POST /api/v1/integrations/crm/generic/events`` with the headers of ``integrations.signing``
(``X-Callvault-Timestamp``, ``X-Callvault-Signature: sha256=<hex>``) under
``CALLVAULT_CRM_GENERIC_SECRET``, and a body::

    {"event_id": "evt-1001", "type": "ticket.created", "ticket_ref": "CRM-1042",
     "occurred_at": "2026-11-20T14:05:00+00:00", "actor": "crm-user-17",
     "access_request": {"requester": "crm-user-17", "recording_ids": ["…"], "purpose": "self_review",
                        "justification": "…", "actions": ["play"], "grant_days": 7},
     "note": ""}

``type`` is one of ``TYPES``; ``access_request`` is required for ``ticket.created`` and ``actor``
for ``ticket.approved``/``ticket.rejected``. docs/integrations.md is the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from callvault.core.clock import Clock
from callvault.integrations import signing
from callvault.integrations.crm.connector import AccessAsk, Connector, EventKind, TicketEvent, problems_of

TYPES: Final = {
    "ticket.created": EventKind.CREATED,
    "ticket.approved": EventKind.APPROVED,
    "ticket.rejected": EventKind.REJECTED,
    "ticket.closed": EventKind.CLOSED,
    "case.resolved": EventKind.RESOLVED,
    "case.reopened": EventKind.REOPENED,
}
EventType = Literal["ticket.created", "ticket.approved", "ticket.rejected", "ticket.closed", "case.resolved",
                    "case.reopened"]


class GenericAccessRequest(BaseModel):
    model_config = {"extra": "forbid"}

    requester: str = Field(min_length=1, max_length=100)
    recording_ids: list[str] = Field(min_length=1, max_length=200)
    purpose: str = Field(min_length=1, max_length=64)
    justification: str = Field(min_length=1, max_length=2000)
    actions: list[str] = Field(default_factory=lambda: ["play", "transcript"], min_length=1, max_length=4)
    grant_days: int = Field(default=7, ge=1, le=90)


class GenericEvent(BaseModel):
    model_config = {"extra": "forbid"}

    event_id: str = Field(min_length=1, max_length=200)
    type: EventType
    ticket_ref: str = Field(min_length=1, max_length=100)
    occurred_at: datetime
    actor: str | None = Field(default=None, min_length=1, max_length=100)
    access_request: GenericAccessRequest | None = None
    note: str = Field(default="", max_length=2000)

    @field_validator("occurred_at")
    @classmethod
    def _offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must include a UTC offset, e.g. 2026-11-20T14:05:00+00:00")
        return value

    @model_validator(mode="after")
    def _complete(self) -> GenericEvent:
        if self.type == "ticket.created" and self.access_request is None:
            raise ValueError("ticket.created needs access_request (requester, recording_ids, purpose, "
                             "justification)")
        if self.type in ("ticket.approved", "ticket.rejected") and not self.actor:
            raise ValueError(f"{self.type} needs actor: the CRM user who decided")
        return self


class GenericConnector(Connector):
    name = "generic"
    secret_env = "CALLVAULT_CRM_GENERIC_SECRET"  # noqa: S105 (a variable name)

    def authenticate(self, secret: bytes, headers: Mapping[str, str], body: bytes, clock: Clock) -> str:
        return signing.verify(secret, timestamp=headers.get(signing.TIMESTAMP_HEADER),
                              signature=headers.get(signing.SIGNATURE_HEADER), body=body, clock=clock)

    def parse(self, body: bytes) -> list[TicketEvent]:
        try:
            event = GenericEvent.model_validate_json(body)
        except ValidationError as exc:
            raise problems_of(exc, "CRM event") from None
        ask = event.access_request
        return [TicketEvent(
            event_id=event.event_id, kind=TYPES[event.type], ticket_ref=event.ticket_ref.strip(),
            occurred_at=event.occurred_at, actor=event.actor, note=event.note,
            access=None if ask is None else AccessAsk(
                requester=ask.requester, recording_ids=tuple(ask.recording_ids), purpose=ask.purpose,
                justification=ask.justification, actions=tuple(ask.actions), grant_days=ask.grant_days))]
