"""Guessing limits: failed sign-ins counted per account name and per client address, in the database.

Why the database: with several server nodes behind a load balancer, counters in process memory would
let an attacker spread guesses across nodes. The account key is the name *as typed*, whether or not
such an account exists, so a lockout reveals nothing about which names are real.

Rules (per key, in a sliding window that restarts after ``WINDOW``): at ``limit`` failures the key is
locked for ``LOCKOUT``; while locked, even a correct password is refused. A success clears the
account's counter (not the address's: one good password must not license more guessing from there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.identity.models import SignInThrottle

WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
ACCOUNT_LIMIT = 5
"""Failures per account name before it is locked (NIST 800-63B allows up to 100; 5 is OWASP's usual)."""
ADDRESS_LIMIT = 30
"""Failures per client address: higher, because an office can sit behind one NAT address."""


@dataclass(frozen=True)
class Lock:
    """A key that is locked, and until when."""

    key: str
    until: datetime


def account_key(username: str) -> str:
    return f"account:{username.strip().lower()[:64]}"


def address_key(address: str | None) -> str | None:
    return f"address:{address}" if address else None


def _keys(username: str, address: str | None) -> list[tuple[str, int]]:
    keys = [(account_key(username), ACCOUNT_LIMIT)]
    addr = address_key(address)
    if addr:
        keys.append((addr, ADDRESS_LIMIT))
    return keys


def _row(session: Session, key: str, *, for_update: bool) -> SignInThrottle | None:
    stmt = select(SignInThrottle).where(SignInThrottle.key == key)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def active_lock(session: Session, *, username: str, address: str | None, now: datetime) -> Lock | None:
    """The lock that stops this attempt, if any."""
    for key, _limit in _keys(username, address):
        row = _row(session, key, for_update=False)
        if row is not None and row.locked_until is not None and row.locked_until > now:
            return Lock(key=key, until=row.locked_until)
    return None


def record_failure(session: Session, *, username: str, address: str | None, now: datetime) -> list[Lock]:
    """Count one failure against the account name and the address; the locks this failure started."""
    started: list[Lock] = []
    for key, limit in _keys(username, address):
        row = _row(session, key, for_update=True)
        if row is None:
            row = SignInThrottle(key=key, failures=0, window_started_at=now)
            session.add(row)
        if row.window_started_at + WINDOW <= now or (row.locked_until is not None and row.locked_until <= now):
            row.failures, row.window_started_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= limit and (row.locked_until is None or row.locked_until <= now):
            row.locked_until = now + LOCKOUT
            started.append(Lock(key=key, until=row.locked_until))
    session.flush()
    return started


def record_success(session: Session, *, username: str) -> None:
    row = _row(session, account_key(username), for_update=True)
    if row is not None:
        session.delete(row)


def unlock(session: Session, *, username: str) -> bool:
    """Clear an account's counter (an administrator's decision); True if there was one."""
    row = _row(session, account_key(username), for_update=True)
    if row is None:
        return False
    session.delete(row)
    return True
