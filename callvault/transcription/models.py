"""Transcripts, their keyed-hash search index, and CRM notes: all content is sealed, none is plain.

Every row here hangs off ``data_keys.recording_id`` with ``ON DELETE CASCADE``: destroying a
recording's data key (crypto-shredding) removes its transcript, its index terms and its CRM notes
in the same statement, and what a backup still holds is sealed under the destroyed key anyway.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class TranscriptStatus(StrEnum):
    """Life of a transcript row (the worker's claim state).

    ``pending``: waiting for a worker. ``running``: claimed by ``claimed_by`` at ``claimed_at``;
    a claim older than the lease is taken over (the worker died). ``done``: the sealed transcript
    is stored. ``failed``: gave up after ``MAX_ATTEMPTS``; ``error`` says why (never content).
    """

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Transcript(Base):
    """One recording's transcript, sealed with a key derived from the recording's data key."""

    __tablename__ = "transcripts"
    __table_args__ = (Index("ix_transcripts_status_claimed", "status", "claimed_at"),)

    recording_id: Mapped[str] = mapped_column(
        ForeignKey("data_keys.recording_id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16))
    engine: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The transcript JSON (segments, words, speakers), sealed; None until ``done``."""
    word_count: Mapped[int] = mapped_column(Integer, default=0)
    seconds_processed: Mapped[float] = mapped_column(Float, default=0.0)
    card_spans_removed: Mapped[int] = mapped_column(Integer, default=0)
    """How many spoken card-number/security-code spans were cut from audio and transcript (no digits)."""
    dtmf_spans_removed: Mapped[int] = mapped_column(Integer, default=0)
    """How many keyed (DTMF) tone runs were blanked in the audio."""
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class TranscriptTerm(Base):
    """One normalised word of a transcript, as an HMAC under the search key (never the word itself)."""

    __tablename__ = "transcript_terms"
    __table_args__ = (Index("ix_transcript_terms_hash", "term_hash"),)

    recording_id: Mapped[str] = mapped_column(
        ForeignKey("data_keys.recording_id", ondelete="CASCADE"), primary_key=True
    )
    term_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Hex HMAC-SHA-256 of the normalised token; one row per distinct token per recording."""


class CrmNote(Base):
    """A CRM note about a call, sealed like the transcript, with the result of comparing the two (B5)."""

    __tablename__ = "crm_notes"
    __table_args__ = (Index("ix_crm_notes_recording", "recording_id", "received_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recording_id: Mapped[str] = mapped_column(ForeignKey("data_keys.recording_id", ondelete="CASCADE"))
    crm_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    source: Mapped[str] = mapped_column(String(32))
    """``api`` or ``webhook``."""
    sealed_note: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_check: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The comparison's flags with their evidence spans (content, so sealed); None until checked."""
    flag_count: Mapped[int] = mapped_column(Integer, default=0)
    """How many mismatches were flagged (0 = consistent); the QA queue sorts on this, no content needed."""
    similarity: Mapped[float | None] = mapped_column(Float, nullable=True)
    similarity_method: Mapped[str | None] = mapped_column(String(32), nullable=True)
    check_state: Mapped[str] = mapped_column(String(16))
    """``waiting`` (no transcript yet) or ``checked``."""
    flags_summary: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Kinds of the flags (``number_mismatch``...), no content."""
    received_by: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class CrmWebhookDelivery(Base):
    """A signed CRM-connector delivery that was accepted: its signature, so a replay is refused.

    Holds no content (the HMAC and the CRM's opaque note id). Rows older than twice the replay window
    are deleted as new deliveries arrive: past the window the timestamp check refuses a replay anyway.
    """

    __tablename__ = "crm_webhook_deliveries"
    __table_args__ = (Index("ix_crm_webhook_deliveries_received", "received_at"),)

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    note_id: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
