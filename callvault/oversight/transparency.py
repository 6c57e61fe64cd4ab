"""Who reached the content of an employee's calls, and why (A10 "access is known", B12 transparency).

The answer comes from the audit log only: every content decision (play, download, export, transcript)
is an entry there, allowed or refused, with the actor, the purpose and the engine's reason. Reading
the log rather than keeping a separate "listens" table means the employee sees exactly what an auditor
would, and nothing can be left out by a serving path that forgot to record itself.

A call is the employee's when its metadata names them as the agent; a call with no agent recorded is
theirs when it was on their extension (how a specialist's own scope is drawn). Their own accesses are
left out: the page answers "who else".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from callvault.audit.models import AuditEntry
from callvault.identity.models import User
from callvault.policy.decide import CONTENT_ACTIONS, Action
from callvault.recordings.models import Recording

CONTENT_AUDIT_ACTIONS = tuple(sorted(f"recording.{a.value}" for a in CONTENT_ACTIONS if a != Action.MONITOR))
"""The audit actions that reach what was said on a stored recording (live monitoring is shown on /live)."""


@dataclass(frozen=True)
class ContentAccess:
    """One decision about the content of one of the employee's calls."""

    at: datetime
    actor: str
    actor_role: str
    action: str
    """``play``, ``download``, ``export`` or ``transcript``."""
    purpose: str | None
    decision: str
    """``allow`` or ``deny``."""
    reason: str
    recording_id: str
    call_started_at: datetime


def accesses_to_calls_of(session: Session, *, user: User, limit: int = 200) -> list[ContentAccess]:
    """Content decisions about ``user``'s calls by anyone but ``user``, newest first (at most ``limit``)."""
    mine = Recording.agent == user.username
    if user.extension:
        mine = or_(mine, and_(Recording.agent.is_(None), Recording.extension == user.extension))
    rows = session.execute(
        select(AuditEntry, Recording.started_at)
        .join(Recording, and_(AuditEntry.object_type == "recording", AuditEntry.object_id == Recording.id))
        .where(AuditEntry.action.in_(CONTENT_AUDIT_ACTIONS), AuditEntry.actor != user.username, mine)
        .order_by(AuditEntry.seq.desc()).limit(limit))
    return [ContentAccess(at=e.at, actor=e.actor, actor_role=e.actor_role, action=e.action.removeprefix("recording."),
                          purpose=e.purpose, decision=e.decision, reason=e.reason, recording_id=e.object_id,
                          call_started_at=started) for e, started in rows]
