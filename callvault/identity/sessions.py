"""Server-side web sessions: revocable at once, ended when idle and at an absolute limit (A12).

Contracts:
- The cookie carries a random 256-bit value; only its SHA-256 is stored, so a database leak yields no
  usable session.
- A sign-in always makes a brand-new session (never adopts one the browser brought: no fixation), and
  completing MFA replaces the half-signed-in session with another new one.
- Each session has its own CSRF token; every state-changing form must echo it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callvault.core.clock import Clock, system_clock
from callvault.core.ids import new_id
from callvault.identity.models import User, WebSession

Stage = Literal["full", "mfa", "enrol"]
TOUCH_EVERY = timedelta(seconds=30)
"""Write ``last_seen_at`` at most this often: idle timeouts need minutes, not per-request writes."""
HALF_SIGNED_IN = timedelta(minutes=10)
"""A session waiting for its second factor or MFA set-up lasts at most this long."""


@dataclass(frozen=True)
class NewSession:
    """The cookie value (shown once) and the stored row."""

    cookie: str
    row: WebSession


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def create(
    session: Session, *, user: User, stage: Stage, source_ip: str | None, absolute_seconds: int,
    clock: Clock = system_clock, first_factor: str = "password",
) -> NewSession:
    now = clock.now()
    lifetime = timedelta(seconds=absolute_seconds) if stage == "full" else min(
        HALF_SIGNED_IN, timedelta(seconds=absolute_seconds))
    cookie = secrets.token_urlsafe(32)
    row = WebSession(
        id=new_id(), session_sha256=_hash(cookie), user_id=user.id, stage=stage,
        csrf_token=secrets.token_urlsafe(32), created_at=now, last_seen_at=now, expires_at=now + lifetime,
        source_ip=source_ip, first_factor=first_factor,
    )
    session.add(row)
    session.flush()
    return NewSession(cookie=cookie, row=row)


def peek(
    session: Session, *, cookie: str, idle_seconds: int, clock: Clock = system_clock
) -> tuple[WebSession | None, bool]:
    """``resolve`` without writing: (the live session or None, whether ``resolve`` has something to
    write: the idle end or the last-seen touch). Every signed-in page request and poll checks its
    session; only one in ``TOUCH_EVERY`` needs the database's write lock."""
    if not cookie:
        return None, False
    row = session.scalar(select(WebSession).where(WebSession.session_sha256 == _hash(cookie)))
    now = clock.now()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None, False
    if row.last_seen_at + timedelta(seconds=idle_seconds) <= now:
        return None, True
    return row, now - row.last_seen_at >= TOUCH_EVERY


def resolve(
    session: Session, *, cookie: str, idle_seconds: int, clock: Clock = system_clock
) -> WebSession | None:
    """The live session behind ``cookie``: not revoked, not past its absolute end, not idle too long."""
    if not cookie:
        return None
    row = session.scalar(select(WebSession).where(WebSession.session_sha256 == _hash(cookie)))
    now = clock.now()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.last_seen_at + timedelta(seconds=idle_seconds) <= now:
        row.revoked_at = now  # idle: end it for good, so a later request cannot revive it
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return row


def rotate(
    session: Session, *, old: WebSession, user: User, stage: Stage, source_ip: str | None, absolute_seconds: int,
    clock: Clock = system_clock,
) -> NewSession:
    """End ``old`` and start a fresh session (new id, new CSRF token) at ``stage``."""
    old.revoked_at = clock.now()
    return create(session, user=user, stage=stage, source_ip=source_ip, absolute_seconds=absolute_seconds,
                  clock=clock, first_factor=old.first_factor)


def revoke(session: Session, *, cookie: str, clock: Clock = system_clock) -> bool:
    row = session.scalar(select(WebSession).where(WebSession.session_sha256 == _hash(cookie)))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = clock.now()
    return True


def revoke_all(session: Session, *, user_id: str, when: datetime) -> int:
    """End every session of a user (deactivation, MFA reset, "sign out everywhere")."""
    result = session.execute(update(WebSession).where(
        WebSession.user_id == user_id, WebSession.revoked_at.is_(None)).values(revoked_at=when))
    return int(getattr(result, "rowcount", 0) or 0)
