"""The CRM side's tables: the event ledger, per-ticket state and the CRM-user → account links.

None holds recording content. The ledger is kept (it is small and it is the evidence of what a CRM
asked callvault to do); the audit log holds the same facts, chained.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class CrmEvent(Base):
    """One CRM event callvault handled: a second delivery of the same ``event_id`` changes nothing."""

    __tablename__ = "crm_events"
    __table_args__ = (Index("ix_crm_events_ticket", "connector", "ticket_ref"),)

    connector: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    ticket_ref: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(24))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    """``applied``, ``refused`` (a rule said no), ``stale`` (older than what the ticket already saw)
    or ``noop`` (nothing to change)."""
    detail: Mapped[str] = mapped_column(Text, default="")


class CrmTicket(Base):
    """What callvault knows of one ticket: the newest event applied, and the access request it filed.

    ``last_event_at`` orders events: a state change older than it arrived late and is ignored.
    """

    __tablename__ = "crm_tickets"

    connector: Mapped[str] = mapped_column(String(32), primary_key=True)
    ticket_ref: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_event_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))
    """``open``, ``closed`` (finished: its grants ended) or ``reopened``."""
    access_request_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CrmIdentity(Base):
    """A CRM user linked to a callvault account by an administrator.

    The CRM can only speak for people linked here: an unlinked requester or approver is refused, so a
    CRM account cannot make itself an approver.
    """

    __tablename__ = "crm_identities"

    connector: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    linked_by: Mapped[str] = mapped_column(String(64))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime())
