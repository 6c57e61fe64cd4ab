"""Capture's tables: recording-control events (stop, pause, resume, personal) per call, capture nodes, and
incidents (calls in mandatory scope that are not on record).

Keyed by the telephony ``call_id`` because the agent presses "stop" while the call is live, before
any recording exists. Ingest applies the events it finds; events on a stored recording are applied
after the fact. Either way the row stays as the call's timeline (no content, only instants).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class ControlKind(StrEnum):
    """What the agent (or the capture integration) asked for (A14, B4)."""

    STOP = "stop"
    """Nothing after ``at`` is kept."""
    PAUSE = "pause"
    """Nothing from ``at`` until the next ``resume`` is kept (silenced)."""
    RESUME = "resume"
    PERSONAL = "personal"
    """The whole call is personal: nothing is kept."""
    ANNOUNCED = "announced"
    """Consent evidence (A5, B2), inbound: the recording announcement (prompt ``version``) was played at ``at``
    (and, with ``until``, ended then). Filed by the telephony integration or the agent while the call runs."""
    ANNOUNCEMENT_END = "announcement_end"
    """Filed with ``announced`` when its ``until`` is given: when the announcement finished (A14)."""
    NOTIFIED = "notified"
    """Consent evidence, outbound: the agent told the called party about the recording at ``at``."""


CONTROL_ACTIONS = (ControlKind.STOP, ControlKind.PAUSE, ControlKind.RESUME, ControlKind.PERSONAL)
"""The kinds that change what is kept (live capture acts on these); the others are consent evidence."""
EVIDENCE_KINDS = (ControlKind.ANNOUNCED, ControlKind.ANNOUNCEMENT_END, ControlKind.NOTIFIED)


class RecordingControl(Base):
    """One control event on one call."""

    __tablename__ = "recording_controls"
    __table_args__ = (Index("ix_recording_controls_call", "call_id", "at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(200))
    recording_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """The stored recording it applies to, once there is one."""
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """The instant in the call (None for ``personal``, which covers the whole call)."""
    version: Mapped[str | None] = mapped_column(String(50), nullable=True)
    """``announced``: the version of the policy's announcement prompt that was played; it becomes the call's
    ``consent.announcement_version`` (an announcement that names none quarantines the call, A5/B2)."""
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_role: Mapped[str] = mapped_column(String(64), default="")
    requester_extension: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """A specialist may control only calls on their own extension; checked again when the call arrives."""
    administrative: Mapped[bool] = mapped_column(default=False)
    """Relayed by the phone system's integration (a role in ``controls.integration_roles``): applies whatever the
    extension. Before issue 23 (6) administering roles filed such events too; ingest ignores those now."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    outcome: Mapped[str] = mapped_column(Text, default="")
    """What applying it did, in words (``truncated at 12.0 s``, ``ignored: other extension``)."""


class CaptureNode(Base):
    """A running SIPREC capture process, so that a restart can tell a dead process's calls from a live one's.

    Registered before the process answers its first call, refreshed every ``HEARTBEAT_SECONDS`` and
    deleted after a clean shutdown. Pending recordings carry the id (``Recording.capture_node``); the
    rows of a node that is gone (its row deleted, a dead pid on this host, or a stale heartbeat) can
    never be finished (their spool key died with the process) and are marked failed
    (``capture.siprec.nodes``).
    """

    __tablename__ = "capture_nodes"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    """``host:pid:start-ms``: unique even when a pid is reused."""
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IncidentKind(StrEnum):
    """Why a call in mandatory recording scope is not (wholly) on record (``recording_scope.mandatory``)."""

    MISSING = "missing"
    """The PBX/SBC's call records show the call; nothing of it reached callvault."""
    FAILED = "failed"
    """Capture started but could not produce audio (a ``failed`` recording)."""
    GAP = "gap"
    """Stored, but with spans where no media arrived (``missing_seconds`` > 0)."""
    REFUSED = "refused"
    """Admission refused to store it (past retention, personal, stopped, no consent, ...)."""


INCIDENT_STATUSES = ("open", "resolved")


class CaptureIncident(Base):
    """A call the policy says must be recorded and is not (wholly) on record: never a silent drop.

    One row per call and kind (``uq_capture_incidents_call_kind``), so capture raising it when the call is
    refused and a later reconciliation finding the same call never make two. Holds the call's facts as the
    call records or capture knew them, no audio and no content.
    """

    __tablename__ = "capture_incidents"
    __table_args__ = (
        UniqueConstraint("call_id", "kind", name="uq_capture_incidents_call_kind"),
        Index("ix_capture_incidents_status_started", "status", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``IncidentKind``."""
    call_id: Mapped[str] = mapped_column(String(200))
    """The stored recording's call id when one was found, else the call records' id for the call."""
    source: Mapped[str] = mapped_column(String(16))
    """``capture`` (raised when capture refused or failed the call) or ``reconcile`` (from call records)."""
    status: Mapped[str] = mapped_column(String(16), default="open")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    direction: Mapped[str] = mapped_column(String(8))
    extension: Mapped[str | None] = mapped_column(String(32), nullable=True)
    team: Mapped[str | None] = mapped_column(String(64), nullable=True)
    agent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    remote_number: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The other party (E.164 where it is a phone number); kept out of audit entries and mail."""
    local_number: Mapped[str | None] = mapped_column(String(32), nullable=True)
    recording_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    """What was found, in words (the failure reason, the refusal, the seconds without media)."""
    clause: Mapped[str] = mapped_column(String(300), default="")
    """``recording_scope.mandatory_clause`` of the policy in force when it was raised."""
    policy: Mapped[str] = mapped_column(String(200), default="")
    """``policy_id@version`` in force when it was raised."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resolution_note: Mapped[str] = mapped_column(Text, default="")
