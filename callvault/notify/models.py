"""The mail outbox: every mail callvault sends is a row here first, written in the same transaction as
the event that caused it, and sent later by the worker (``callvault.notify.jobs``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class OutboxState:
    """``pending`` → ``sending`` (claimed by one worker) → ``sent``; or back to ``pending`` after a
    failure (``attempts`` counts every try), and ``failed`` once the retries are used up."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class OutboxMail(Base):
    """One mail to one recipient."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_state_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dedup_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    """Stops the same notice being queued twice (e.g. ``misuse:<report>:<user>``)."""
    recipient: Mapped[str] = mapped_column(String(320))
    recipient_user: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The callvault username the address belongs to, when it is one."""
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    """Plain text. Never recording content: mails say that something happened and where to look."""
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Tries so far. A value above 1 on a sent mail says it may have been delivered more than once."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    secrets_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The secrets the mail carries (a verification code, a download link), sealed under
    ``secrets_wrapped_key``; ``subject`` and ``body`` hold only placeholders for them. Emptied, with the
    key, once the mail is sent or has failed for good: the outbox never keeps a usable secret."""
    secrets_kek_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    secrets_wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
