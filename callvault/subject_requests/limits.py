"""Rate limits for the public request form, kept in the database like the sign-in throttle.

This reuses ``identity.throttle``'s table (``sign_in_throttles``: one row per key with a count, the
start of its window and a ``locked_until``) with keys of its own (``subject-…:``), so every server
node behind the load balancer sees the same counts and there is one mechanism to operate. The rule
differs from sign-in's only in what is counted: here every attempt counts, not only failures, and a key
at its limit stays refused until its window ends (a fixed window).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.core.errors import AccessDenied
from callvault.identity.models import SignInThrottle


@dataclass(frozen=True)
class Limit:
    prefix: str
    limit: int
    window: timedelta


SUBMIT_PER_ADDRESS = Limit("subject-submit:address", 5, timedelta(hours=1))
"""Requests submitted from one client address per hour."""
SUBMIT_PER_EMAIL = Limit("subject-submit:email", 3, timedelta(hours=1))
"""Requests naming one email address per hour (stops the form being used to mail-bomb someone)."""
VERIFY_PER_ADDRESS = Limit("subject-verify:address", 20, timedelta(minutes=15))
"""Wrong verification codes from one client address per 15 minutes, across all requests."""


class RateLimited(AccessDenied):
    """Too many attempts; the API answers 429 with ``Retry-After``."""

    def __init__(self, message: str, *, until: datetime) -> None:
        super().__init__(message, reason="rate limited")
        self.until = until


def _key(limit: Limit, value: str) -> str:
    return f"{limit.prefix}:{value.strip().lower()[:150]}"


def _row(session: Session, key: str) -> SignInThrottle | None:
    return session.scalar(select(SignInThrottle).where(SignInThrottle.key == key).with_for_update())


def blocked_until(session: Session, limit: Limit, value: str | None, *, now: datetime) -> datetime | None:
    """When ``value`` may try again, if it is at its limit now."""
    if not value:
        return None
    row = _row(session, _key(limit, value))
    if row is None or row.window_started_at + limit.window <= now:
        return None
    return row.window_started_at + limit.window if row.failures >= limit.limit else None


def count(session: Session, limit: Limit, value: str | None, *, now: datetime) -> None:
    """Count one attempt against ``value`` (the caller commits, even when it then refuses)."""
    if not value:
        return
    key = _key(limit, value)
    row = _row(session, key)
    if row is None:
        row = SignInThrottle(key=key, failures=0, window_started_at=now)
        session.add(row)
    if row.window_started_at + limit.window <= now:
        row.failures, row.window_started_at = 0, now
    row.failures += 1
    row.locked_until = row.window_started_at + limit.window if row.failures >= limit.limit else None
    session.flush()


def check(session: Session, limits: list[tuple[Limit, str | None]], *, now: datetime) -> None:
    """Raise ``RateLimited`` if any of the keys is at its limit."""
    for limit, value in limits:
        until = blocked_until(session, limit, value, now=now)
        if until is not None:
            minutes = max(1, int((until - now).total_seconds() // 60) + 1)
            raise RateLimited(f"too many attempts; try again in {minutes} minute{'s' if minutes != 1 else ''}",
                              until=until)
