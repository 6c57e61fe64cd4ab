"""The catalog: one row per call recording, plus its wrapped data key kept apart for shredding."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class RecordingState(StrEnum):
    """Life of a recording row.

    ``pending``: the row is reserved and the blob is being written; invisible to everyone; a crash
    here is cleaned up by ``callvault check --repair``/the worker (blob first, then row).
    ``available``: blob complete and verified; usable under the policy.
    ``destroyed``: key and blob destroyed (retention, personal call, quarantine); only this
    content-free row and its destruction record remain (see ``callvault.retention``).
    ``failed``: capture could not produce audio (a call whose media never arrived, a call a killed
    capture process left unfinished): no blob, no key; the row stays so that the gap in the record is
    visible (UI, compliance report, ``/metrics``, ``recording.failed`` webhook) with ``failure_reason``.
    """

    PENDING = "pending"
    AVAILABLE = "available"
    DESTROYED = "destroyed"
    FAILED = "failed"


class Recording(Base):
    """A call recording's metadata. The audio lives encrypted in the blob store under ``blob_key``."""

    __tablename__ = "recordings"
    __table_args__ = (
        Index("ix_recordings_state_started", "state", "started_at", "id"),
        Index("ix_recordings_extension_started", "extension", "started_at"),
        Index("ix_recordings_agent_started", "agent", "started_at"),
        Index("ix_recordings_team_started", "team", "started_at"),
        # Number + time, so "calls with this number, newest first" reads one index range (bench/search.py).
        Index("ix_recordings_remote_number_started", "remote_number", "started_at"),
        Index("ix_recordings_local_number_started", "local_number", "started_at"),
        Index("ix_recordings_retention_due", "state", "on_hold", "destroy_after"),
        Index("ix_recordings_case_ref", "case_ref"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(200), unique=True)
    """The telephony system's id for the call; ingest is idempotent on it."""
    state: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(8))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    extension: Mapped[str | None] = mapped_column(String(32), nullable=True)
    agent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    team: Mapped[str | None] = mapped_column(String(64), nullable=True)
    remote_number: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """E.164; the caller for inbound calls, the callee for outbound."""
    local_number: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """E.164 trunk/DID number on our side."""
    consent: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Consent evidence as received (A5, B2): announcement time/version or agent notice time."""
    consent_state: Mapped[str] = mapped_column(String(24))
    """``announcement`` | ``agent_notice`` | ``missing``."""
    consent_source: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    """Where the evidence came from (``CallMetadata.consent_source``): ``metadata``, ``control_api``,
    ``standing_rule`` (the policy's ``consent.standing_evidence``) or ``none``; counted by the compliance
    report."""
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False)
    """Excluded from normal use until an admin resolves it (missing consent evidence)."""
    quarantine_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why it is quarantined (``capture.consent_check``): no evidence, a prompt version the policy does not
    list, or evidence outside the call; shown to the administrator who resolves it."""
    consent_flag: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the call was stored without the consent evidence its jurisdiction rule asks for, when the rule says
    ``without_evidence: store_flagged`` (usable, but flagged for follow-up); None otherwise."""
    case_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    crm_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    audio_format: Mapped[str] = mapped_column(String(16))
    """``wav`` | ``flac`` | ``ogg``: the original container, served back unchanged."""
    sample_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    duration_seconds: Mapped[float] = mapped_column(Float)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    """Plaintext size of the original audio file."""
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """SHA-256 of the original audio, checked when the whole file is read back."""
    blob_key: Mapped[str] = mapped_column(String(200))
    ingested_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    destroy_after: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When retention destroys it (unless ``on_hold``); recomputed when cases, holds or the policy change."""
    retention_rule: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """Which rule set ``destroy_after`` (``max_age``, ``case_resolved``), or why it was destroyed."""
    retention_basis: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """The policy (``id@version``) ``destroy_after`` was computed under; the sweep recomputes stale ones."""
    keep_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """The earliest moment anything may destroy or alter it: the longest retention minimum that ever applied
    to it (``retention.min_age_months`` of any version in force while it was kept) or an extension on request.
    Only ever moves later; a later policy version with a shorter cap or no minimum cannot undercut it."""
    keep_until_basis: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """What set ``keep_until``: ``min_age_months@policy@version`` or ``extension:<audit seq>``."""
    on_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A legal hold suspends destruction while true."""
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """Why a ``failed`` recording has no audio (no media received, capture stopped mid-call)."""
    media_gaps: Mapped[list[list[float]] | None] = mapped_column(JSON, nullable=True)
    """Spans ``[start, end]`` (seconds from the call's start) in which no media arrived on any stream
    (SIPREC capture); the audio holds silence there. None: not measured (uploads, older rows)."""
    missing_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    """Total length of ``media_gaps``: > 0 flags an incomplete recording."""
    capture_node: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """The SIPREC capture process (``host:pid:start-ms``, ``capture_nodes.id``) writing this ``pending``
    row; when that process is gone, the next capture start marks the row failed. None: not SIPREC."""


class DataKey(Base):
    """A recording's AES-256 data key, wrapped by a key-encryption key.

    Kept in its own table so destroying it (crypto-shredding) is one DELETE, and so a restore of
    an old recordings table without this row still cannot decrypt anything.
    """

    __tablename__ = "data_keys"

    recording_id: Mapped[str] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True
    )
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    chunk_size: Mapped[int] = mapped_column(Integer)
    ciphertext_size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
