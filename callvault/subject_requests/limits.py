"""Rate limits for the public request form, kept in the sign-in throttle's counter store.

This reuses ``identity.counters`` (the database's ``sign_in_throttles`` table by default, Redis when
``CALLVAULT_REDIS_URL`` is set) with keys of its own (``subject-…:``), so every server node behind
the load balancer sees the same counts and there is one mechanism to operate. The rule differs from
sign-in's only in what is counted: here every attempt counts, not only failures, and a key at its
limit stays refused until its window ends (a fixed window).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from callvault.core.errors import AccessDenied
from callvault.identity.counters import Counters


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
PHONE_CODES_PER_NUMBER = Limit("subject-phone:number", 3, timedelta(hours=24))
"""Codes sent to one phone number per day, whoever asks: the form cannot be used to flood a phone."""


class RateLimited(AccessDenied):
    """Too many attempts; the API answers 429 with ``Retry-After``."""

    def __init__(self, message: str, *, until: datetime) -> None:
        super().__init__(message, reason="rate limited")
        self.until = until


def _key(limit: Limit, value: str) -> str:
    return f"{limit.prefix}:{value.strip().lower()[:150]}"


def blocked_until(session: Session, counters: Counters, limit: Limit, value: str | None, *,
                  now: datetime) -> datetime | None:
    """When ``value`` may try again, if it is at its limit now."""
    if not value:
        return None
    key = _key(limit, value)
    row = counters.read(session, [key], lock=True).get(key)
    if row is None or row.window_started_at + limit.window <= now:
        return None
    return row.window_started_at + limit.window if row.failures >= limit.limit else None


def count(session: Session, counters: Counters, limit: Limit, value: str | None, *, now: datetime) -> None:
    """Count one attempt against ``value`` (the caller commits, even when it then refuses)."""
    if value:
        counters.bump(session, _key(limit, value), limit=limit.limit, window=limit.window, lock_for=None, now=now)


def check(session: Session, counters: Counters, limits: list[tuple[Limit, str | None]], *, now: datetime) -> None:
    """Raise ``RateLimited`` if any of the keys is at its limit."""
    for limit, value in limits:
        until = blocked_until(session, counters, limit, value, now=now)
        if until is not None:
            minutes = max(1, int((until - now).total_seconds() // 60) + 1)
            raise RateLimited(f"too many attempts; try again in {minutes} minute{'s' if minutes != 1 else ''}",
                              until=until)
