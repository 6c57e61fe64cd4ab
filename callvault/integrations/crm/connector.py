"""The connector interface: how a CRM's webhook becomes callvault's normalised ``TicketEvent``.

A connector knows two things about its CRM: how its deliveries are signed (``authenticate``) and
what its payloads mean (``parse``). Everything after that (who may do what, idempotency, ordering,
audit) is ``service``'s, the same for every CRM, so adding a help desk means writing a mapping and
its fixtures, never touching the rules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import ValidationError

from callvault.core.clock import Clock
from callvault.core.errors import FieldProblem, InvalidInput
from callvault.integrations import signing

MIN_SECRET_CHARS = signing.MIN_SECRET_CHARS


class EventKind(StrEnum):
    """What happened to a ticket, in callvault's terms."""

    CREATED = "created"
    """The ticket asks for recordings: an access request (B6)."""
    APPROVED = "approved"
    """An approver approved the ticket's request: the grants start."""
    REJECTED = "rejected"
    CLOSED = "closed"
    """The ticket is finished: its grants end, a pending request is cancelled."""
    RESOLVED = "resolved"
    """The issue is resolved: recordings kept for it enter the post-resolution grace period (A9)."""
    REOPENED = "reopened"
    """The issue is open again: its recordings' destruction date is recomputed."""


@dataclass(frozen=True)
class AccessAsk:
    """The access request a ticket carries (B6)."""

    requester: str
    """The CRM's id for the person asking; linked to a callvault account by an administrator."""
    recording_ids: tuple[str, ...]
    purpose: str
    justification: str
    actions: tuple[str, ...] = ("play", "transcript")
    """Named on the ticket, else listen and read (as a request made in callvault)."""
    grant_days: int = 7


@dataclass(frozen=True)
class TicketEvent:
    event_id: str
    """Unique per event in that CRM; a second delivery of the same id changes nothing."""
    kind: EventKind
    ticket_ref: str
    occurred_at: datetime
    actor: str | None = None
    """The CRM's id for whoever did it (the approver, for ``approved``)."""
    access: AccessAsk | None = None
    note: str = ""


class Connector(ABC):
    """One CRM's webhook dialect."""

    name: ClassVar[str]
    secret_env: ClassVar[str]

    def load_secret(self, env: Mapping[str, str]) -> bytes:
        """The shared secret; ConfigurationError (503 at the edge) while it is not set."""
        return signing.load_shared_secret(env, self.secret_env, f"the {self.name} CRM connector")

    @abstractmethod
    def authenticate(self, secret: bytes, headers: Mapping[str, str], body: bytes, clock: Clock) -> str:
        """The signature as 64 hex digits (for the replay ledger) when authentic and fresh; else
        AuthenticationFailed. ``headers`` has lower-case names."""

    @abstractmethod
    def parse(self, body: bytes) -> list[TicketEvent]:
        """The events a delivery carries (none for events callvault does not act on); InvalidInput
        naming the field when the body is not what this CRM sends."""


def problems_of(exc: ValidationError, what: str) -> InvalidInput:
    """A pydantic error as the InvalidInput the API turns into a 422 naming each field."""
    problems = [FieldProblem(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()]
    return InvalidInput(f"invalid {what}:", problems)
