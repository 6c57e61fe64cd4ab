"""Access requests, the grants an approval creates, and employees' consents (B6, B9, A6)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class RequestStatus(StrEnum):
    """Life of an access request: ``pending`` until an approver decides or it lapses."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class AccessRequest(Base):
    """Someone asks to use recordings for a purpose that needs approval (B6: via a CRM ticket)."""

    __tablename__ = "access_requests"
    __table_args__ = (Index("ix_access_requests_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    requester_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    crm_ref: Mapped[str] = mapped_column(String(100))
    """The CRM ticket the request went through (B6)."""
    justification: Mapped[str] = mapped_column(Text)
    recording_ids: Mapped[list[str]] = mapped_column(JSON)
    actions: Mapped[list[str]] = mapped_column(JSON)
    """What the requester asks for: some of play, transcript, download, export."""
    approved_actions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    """What the approver approved (all or part of ``actions``), which the grants carry; None until approved."""
    grant_days: Mapped[int] = mapped_column(Integer)
    approver_roles: Mapped[list[str]] = mapped_column(JSON)
    """Who decides it, from the policy when the request was made: the purpose's approver roles, or the
    roles its rule names for a requester who holds one of them (B9)."""
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Username of the approver (or ``system`` for a lapse)."""
    decision_note: Mapped[str] = mapped_column(Text, default="")
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AccessGrant(Base):
    """One user may use one recording for one purpose, for a limited time and limited actions."""

    __tablename__ = "access_grants"
    __table_args__ = (Index("ix_access_grants_user_ends", "user_id", "ends_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    recording_id: Mapped[str] = mapped_column(String(36), index=True)
    """Not a foreign key: a grant's record outlives the recording's destruction."""
    purpose: Mapped[str] = mapped_column(String(64))
    actions: Mapped[list[str]] = mapped_column(JSON)
    approved_by_id: Mapped[str] = mapped_column(String(36))
    approved_by_role: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expiry_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the expiry job put the lapse on the audit log (once per grant)."""


class EmployeeConsent(Base):
    """A recorded employee's consent to one purpose (A6: training); revocable, history kept."""

    __tablename__ = "employee_consents"
    __table_args__ = (Index("ix_employee_consents_user_purpose", "user_id", "purpose"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(64))
    given_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class EmergencyDeclaration(Base):
    """A "break the glass" declaration: its holder reaches recordings beyond their role's scope, for a short
    time, for a stated reason, and a reviewer looks at what they did afterwards (``emergency_access``)."""

    __tablename__ = "emergency_declarations"
    __table_args__ = (
        Index("ix_emergency_declarations_user", "user_id", "ends_at"),
        Index("ix_emergency_declarations_review", "reviewed_at", "review_due_on"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    """The declarer (no foreign key: the record must outlive the account)."""
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    declared_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    """When access ends (at most ``emergency_access.max_minutes`` after the declaration)."""
    ended_early_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    review_due_on: Mapped[date] = mapped_column(Date)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    review_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """``justified`` or ``misuse`` (the latter files a misuse report)."""
    review_notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    overdue_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
