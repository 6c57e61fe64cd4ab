"""Retention's tables: cases, legal holds, the destruction register and the key-destruction log.

None of these rows ever holds audio, transcript or key material: the destruction register and the
key-destruction log are kept forever, after the content is gone, as proof of what was destroyed.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Date, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class CaseKind(StrEnum):
    """What a case is about; recordings linked to it are kept until it resolves (A9)."""

    COMPLAINT = "complaint"
    INVESTIGATION = "investigation"
    LEGAL_CLAIM = "legal_claim"


class CaseStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class RetentionRule(StrEnum):
    """Why a recording is (or was) destroyed; shown on the recording and kept in its destruction record."""

    MAX_AGE = "max_age"
    """The policy's maximum age (A3: 6 months; B11: 12 months)."""
    MIN_AGE = "min_age"
    """The retention minimum (``retention.min_age_months``, or an extension on request) ends after the date
    the cap or a case resolution would have given: the recording is destroyed when the minimum ends."""
    CASE_RESOLVED = "case_resolved"
    """Its case resolved and the grace period passed (A9), before the cap."""
    PERSONAL_CALL = "personal_call"
    """The agent marked the call personal (A14, B4): the whole recording goes at once."""
    STOPPED = "stopped"
    """Recording was stopped before any audio was kept."""
    QUARANTINE_DESTROYED = "quarantine_destroyed"
    """An administrator destroyed a recording that arrived without consent evidence (A5, B2)."""
    CALLER_ERASURE = "caller_erasure"
    """A caller's erasure request was approved (only where ``notice.caller_requests`` promises deletion)."""


class Case(Base):
    """A complaint, investigation or legal claim; recordings link to it by ``recordings.case_ref``."""

    __tablename__ = "retention_cases"

    ref: Mapped[str] = mapped_column(String(100), primary_key=True)
    """The case reference as used in call metadata (``case_ref``), e.g. a CRM ticket id."""
    kind: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_by: Mapped[str] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class LegalHold(Base):
    """Suspends destruction of one recording or of every recording of a case while active."""

    __tablename__ = "legal_holds"
    __table_args__ = (
        Index("ix_legal_holds_recording", "recording_id"),
        Index("ix_legal_holds_case", "case_ref"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recording_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """The held recording, or None when the hold covers a case."""
    case_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(64))
    """Who is responsible for the hold (and for reviewing it)."""
    review_on: Mapped[date] = mapped_column(Date)
    """When the hold must be looked at again; the report lists overdue reviews."""
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    placed_by: Mapped[str] = mapped_column(String(64))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    release_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    overdue_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the misuse recipients were told the review date had passed; cleared when the hold is renewed."""


class DestructionRecord(Base):
    """Proof that a recording was destroyed: what, when, why, by which rule. Kept forever, no content.

    No foreign key to ``recordings`` on purpose: the register must outlive any later clean-up of
    the catalog.
    """

    __tablename__ = "destruction_records"
    __table_args__ = (Index("ix_destruction_records_at", "destroyed_at"),)

    recording_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(200))
    content_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """SHA-256 of the audio that was destroyed, so a later copy can be recognised as the same."""
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    rule: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    kek_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The KEK the destroyed data key was wrapped under (None if the key was already gone)."""
    key_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    destroyed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    destroyed_by: Mapped[str] = mapped_column(String(64))
    recorded_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the call started (for reports by age); not content."""


class KeyDestruction(Base):
    """A data key (and blob) replaced when a recording was re-encrypted, e.g. truncated by a ``stop``.

    Written in the transaction that switches the recording to its new key. ``completed_at`` is set
    once the old key's fingerprint is on the key-destruction list and the old blob is deleted; a row
    without it is work a crash left, finished by the next sweep. (Whole destructions are logged in
    ``destruction_records``, which carries the key's KEK id and fingerprint.)
    """

    __tablename__ = "key_destructions"
    __table_args__ = (Index("ix_key_destructions_pending", "completed_at"),)

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    recording_id: Mapped[str] = mapped_column(String(36))
    kek_id: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(32))
    """``replaced`` (a truncation re-encrypted the recording under a new key)."""
    destroyed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
