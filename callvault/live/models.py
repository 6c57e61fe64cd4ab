"""Live-monitoring tables: the calls being recorded now, and who listens to which (A7, A14).

Both live in the database, not in a process, because the capture process that holds a call and the
API node a supervisor reaches are usually different processes (or machines): the live view, the
agent's "who is monitoring me" and the tap's ticket check all read these rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class ActiveCall(Base):
    """One call a capture process is recording now; deleted when the call ends.

    The capture process refreshes ``heartbeat_at`` every few seconds for all of its calls; a row whose
    heartbeat is older than ``STALE_AFTER`` belongs to a process that died and is ignored (and swept).
    """

    __tablename__ = "active_calls"
    __table_args__ = (Index("ix_active_calls_extension", "extension"), Index("ix_active_calls_heartbeat",
                                                                              "heartbeat_at"))

    call_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    """The catalog's call id (``siprec:...``), the key of ``recording_controls`` too."""
    recording_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """The pending recording row the call is written to."""
    node: Mapped[str] = mapped_column(String(200))
    """Which capture process holds the call (host:pid), for operators."""
    tap_url: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """The capture process's live tap (``ws://127.0.0.1:PORT``); None when the process offers none."""
    direction: Mapped[str] = mapped_column(String(16))
    extension: Mapped[str | None] = mapped_column(String(32), nullable=True)
    agent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    team: Mapped[str | None] = mapped_column(String(64), nullable=True)
    consent_state: Mapped[str] = mapped_column(String(32), default="missing")
    state: Mapped[str] = mapped_column(String(16), default="recording")
    """``recording``, ``paused`` or ``stopped`` (a personal call's row is deleted at once)."""
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MonitoringSession(Base):
    """One supervisor listening to one live call: who, why, from when to when, and why it ended."""

    __tablename__ = "live_monitoring_sessions"
    __table_args__ = (Index("ix_live_monitoring_call", "call_id", "ended_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(200))
    extension: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The monitored agent's extension (their "who is monitoring me" reads by it)."""
    listener: Mapped[str] = mapped_column(String(64))
    listener_role: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    parties: Mapped[str] = mapped_column(String(16), default="both")
    """What the listener hears: ``both`` parties or the ``agent`` alone (policy ``monitoring.parties``)."""
    ticket_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """SHA-256 of the one-time ticket the API node shows the capture tap; cleared when used."""
    ticket_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_reason: Mapped[str] = mapped_column(Text, default="")
