"""The import ledger (one row per PBX recording file) and the Twilio recording queue.

Both are the only memory of what was seen, imported or refused: a rescan, a second worker node or a
restarted process reads them, so nothing is imported twice and nothing is forgotten.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class ImportState(StrEnum):
    """Where one PBX file is in its life."""

    WAITING = "waiting"
    """Seen; still being written (no completion hook yet and not quiet long enough)."""
    READY = "ready"
    """Complete (hook or quiescence); the next import pass takes it."""
    WAITING_CDR = "waiting_cdr"
    """Complete, but its CDR row has not arrived yet; retried until ``cdr_wait_seconds``."""
    IMPORTING = "importing"
    """Claimed by one worker (``claimed_at``); a claim older than the lease is taken over."""
    IMPORTED = "imported"
    REFUSED = "refused"
    """Not recordable under the policy (out of scope, internal call, ended in the announcement): not stored, audited."""
    REJECTED = "rejected"
    """Quarantined: hostile name, symlink, unreadable audio. Never opened again; the reason says why."""
    CDR_MISSING = "cdr_missing"
    """Gave up waiting for the CDR row; the file stays where it is. Rescan with ``--cdr`` to retry."""
    FAILED = "failed"
    """An error a person must look at (e.g. a call id conflict); the file stays where it is."""


class PbxImport(Base):
    """One recording file under a configured PBX folder, keyed by its path (hashed, as names are untrusted)."""

    __tablename__ = "pbx_imports"
    __table_args__ = (Index("ix_pbx_imports_state", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    path_key: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of flavour + root + the raw path bytes: the stable identity a rescan finds again."""
    flavour: Mapped[str] = mapped_column(String(16))
    root: Mapped[str] = mapped_column(Text)
    cdr_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The CDR CSV to correlate with (so a later pass, on any node, retries with the same source)."""
    rel_path: Mapped[str] = mapped_column(Text)
    """The path below ``root``, printable (undecodable or control bytes escaped) — for people, not for opening."""
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    """Size and mtime at the last look: quiescence, and "changed after import" detection."""
    completed_by_hook: Mapped[bool] = mapped_column(Boolean, default=False)
    uniqueid: Mapped[str | None] = mapped_column(String(100), nullable=True)
    """The PBX's id for the recorded channel (Asterisk UNIQUEID, FreeSWITCH uuid), from the file name."""
    call_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    recording_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    """When size or mtime last changed (or first seen)."""
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TwilioState(StrEnum):
    PENDING = "pending"
    FETCHING = "fetching"
    STORED = "stored"
    REFUSED = "refused"
    """Not recordable under the policy; audited, nothing stored."""
    FAILED = "failed"
    """Gave up after the retries, or the callback itself said the recording failed/absent."""


class TwilioRecording(Base):
    """One Twilio recording announced by a RecordingStatusCallback; the worker fetches and stores it."""

    __tablename__ = "twilio_recordings"
    __table_args__ = (Index("ix_twilio_recordings_state", "state", "next_attempt_at"),)

    recording_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Idempotency: a repeated callback for the same RecordingSid adds nothing."""
    account_sid: Mapped[str] = mapped_column(String(64))
    call_sid: Mapped[str] = mapped_column(String(64))
    media_url: Mapped[str] = mapped_column(Text)
    """``RecordingUrl`` as received; checked against the configured base before it was stored."""
    status: Mapped[str] = mapped_column(String(32))
    channels: Mapped[int] = mapped_column(Integer, default=1)
    duration_seconds: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    source: Mapped[str] = mapped_column(String(64), default="")
    params: Mapped[str] = mapped_column(Text, default="{}")
    """The callback's other fields (JSON), kept for the metadata mapping; no audio, no secrets."""
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    recording_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
