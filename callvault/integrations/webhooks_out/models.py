"""Outgoing webhook subscriptions and their deliveries (the outbox, and the delivery log)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class DeliveryState:
    """``pending`` → ``sending`` (claimed by one worker) → ``delivered``; back to ``pending`` after a
    failed try, ``failed`` once the tries are used up, ``cancelled`` when the subscription is removed."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WebhookSubscription(Base):
    """An endpoint that receives some event types, signed with its own secret.

    The secret is needed to sign, so it cannot be hashed: it is wrapped under the keyring's current
    KEK (bound to ``webhook:<id>``) like a recording's data key, and shown once when created.
    """

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    events: Mapped[list[str]] = mapped_column(JSON)
    """Event types delivered, or ``["*"]`` for all."""
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped_secret: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))


class WebhookDelivery(Base):
    """One event for one subscription: the outbox row while pending, the delivery log afterwards.

    ``payload`` is the exact JSON body sent (ids, states and dates; never audio, transcript or notes).
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_state_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(36), index=True)
    """Not a foreign key: the log outlives a removed subscription."""
    subscription_name: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(48))
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The receiver's HTTP status on the last try (None: no answer)."""
    last_error: Mapped[str] = mapped_column(Text, default="")
