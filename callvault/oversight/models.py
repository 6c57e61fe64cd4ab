"""Misuse and breach reports (B12): filed by people or raised by the detection rules."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime

REPORT_STATUSES = ("open", "investigating", "closed")


class MisuseReport(Base):
    """A suspected breach or misuse, routed to the roles the policy names (``misuse.report_to_roles``).

    Status changes are audited (``misuse.status_changed``); the row keeps only the current state.
    """

    __tablename__ = "misuse_reports"
    __table_args__ = (Index("ix_misuse_reports_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(16))
    """``person`` (filed by someone signed in) or ``detection`` (a rule in the worker)."""
    reporter: Mapped[str] = mapped_column(String(64))
    """Username of whoever filed it, or ``system`` for detection."""
    rule: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The detection rule that raised it (``unusual_volume``, ``outside_hours``...)."""
    subject_user: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Whom the report is about, if known; that person is never sent or shown it."""
    summary: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[list[int]] = mapped_column(JSON, default=list)
    """Audit entry seqs that support it (``callvault audit proof SEQ`` proves each one)."""
    status: Mapped[str] = mapped_column(String(16), default="open")
    """``open`` → ``investigating`` → ``closed`` (a closed report may be reopened to investigating)."""
    assignee: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Username of the recipient handling it (one of ``misuse.report_to_roles``, never its subject)."""
    closing_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why it was closed (required to close); shown on the page, also kept in the audit entry."""
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When it must be closed (``misuse.report_deadline_days`` from filing, HIPAA 164.404(b)); None: no deadline."""
    dedup_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    """Detection hits: ``<rule>:<user>:<day>``, so a rerun never raises the same hit twice."""
