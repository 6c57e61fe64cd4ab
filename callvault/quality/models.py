"""Quality review rows: samples (with seed and population, for auditors), the review queue, scored
reviews with coaching notes, time-stamped comments, and anonymised training clips (A6, B8)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class QaSample(Base):
    """One random draw. ``seed`` + ``population`` let an auditor re-derive ``selected`` exactly."""

    __tablename__ = "qa_samples"
    __table_args__ = (Index("ix_qa_samples_period", "policy_id", "period_start"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    policy_id: Mapped[str] = mapped_column(String(100))
    policy_version: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    trigger: Mapped[str] = mapped_column(String(16))
    """``schedule`` (the worker, once per period) or ``on_demand`` (a person, CLI or API)."""
    schedule_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    """``policy:unit:start`` of the period, for every draw (scheduled or on demand; None on samples drawn before
    a period could be sampled only once): unique, so two draws racing for one period (two worker nodes, a
    second click) cannot both be stored. The name is the column's from when only the worker set it."""
    seed: Mapped[str] = mapped_column(String(64))
    """128 random bits (hex) drawn when the sample is run: nobody can know the selection beforehand."""
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    population: Mapped[list[list[str]]] = mapped_column(JSON)
    """Every eligible call as ``[recording_id, agent, team, direction]``, sorted by id."""
    population_sha256: Mapped[str] = mapped_column(String(64))
    selected: Mapped[list[str]] = mapped_column(JSON)
    excluded: Mapped[dict[str, int]] = mapped_column(JSON)
    """Calls of the period left out, by reason (quarantined, on_hold, no_agent); counts only."""
    run_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReviewItemState(StrEnum):
    OPEN = "open"
    REVIEWED = "reviewed"


class QaReviewItem(Base):
    """A sampled call waiting in (or done with) the review queue."""

    __tablename__ = "qa_review_items"
    __table_args__ = (
        UniqueConstraint("sample_id", "recording_id"),
        Index("ix_qa_review_items_state_created", "state", "created_at"),
        Index("ix_qa_review_items_agent", "agent"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sample_id: Mapped[str] = mapped_column(ForeignKey("qa_samples.id", ondelete="CASCADE"))
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id"))
    agent: Mapped[str] = mapped_column(String(64))
    team: Mapped[str | None] = mapped_column(String(64), nullable=True)
    direction: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class QaReview(Base):
    """One reviewer's scorecard for a queued call; two reviewers on one call is a calibration pair."""

    __tablename__ = "qa_reviews"
    __table_args__ = (
        UniqueConstraint("item_id", "reviewer"),
        Index("ix_qa_reviews_agent_submitted", "agent", "submitted_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("qa_review_items.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(64))
    agent: Mapped[str] = mapped_column(String(64))
    team: Mapped[str | None] = mapped_column(String(64), nullable=True)
    scorecard_id: Mapped[str] = mapped_column(String(64))
    scorecard_version: Mapped[str] = mapped_column(String(32))
    answers: Mapped[dict[str, str]] = mapped_column(JSON)
    """Question id -> ``yes`` | ``no`` | ``na``."""
    section_scores: Mapped[dict[str, float | None]] = mapped_column(JSON)
    score: Mapped[float] = mapped_column(Float)
    auto_failed: Mapped[bool] = mapped_column(Boolean)
    passed: Mapped[bool] = mapped_column(Boolean)
    coaching_note: Mapped[str] = mapped_column(Text, default="")
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    shared_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the score and note were shared with the agent; the agent sees only shared reviews."""
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    agent_response: Mapped[str] = mapped_column(Text, default="")


class QaComment(Base):
    """A reviewer's comment pinned to a moment of the recording."""

    __tablename__ = "qa_comments"
    __table_args__ = (Index("ix_qa_comments_item", "item_id", "at_seconds"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("qa_review_items.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(64))
    at_seconds: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ClipState(StrEnum):
    AVAILABLE = "available"
    DESTROYED = "destroyed"


class TrainingClip(Base):
    """An anonymised derivative of a reviewed call (A6): agent channel only, personal data toned out.

    Holds no caller identifier (no numbers, call id, case or CRM reference, start time). Its audio is
    encrypted under its own data key, wrapped here, so destroying the clip is dropping that key.
    """

    __tablename__ = "qa_training_clips"
    __table_args__ = (
        Index("ix_qa_training_clips_state_due", "state", "destroy_after"),
        Index("ix_qa_training_clips_agent", "agent", "state"),
        Index("ix_qa_training_clips_recording", "recording_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id"))
    """Kept so a clip is made once per call and withdrawn with it; never shown to library users."""
    title: Mapped[str] = mapped_column(String(200))
    agent: Mapped[str] = mapped_column(String(64))
    team: Mapped[str | None] = mapped_column(String(64), nullable=True)
    direction: Mapped[str] = mapped_column(String(8))
    duration_seconds: Mapped[float] = mapped_column(Float)
    sample_rate: Mapped[int] = mapped_column(Integer)
    masked_spans: Mapped[int] = mapped_column(Integer)
    transcript_used: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))
    blob_key: Mapped[str] = mapped_column(String(200))
    kek_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """None once destroyed (crypto-shredded)."""
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    destroy_after: Mapped[datetime] = mapped_column(UTCDateTime())
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    destroyed_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
