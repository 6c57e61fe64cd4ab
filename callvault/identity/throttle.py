"""Guessing limits: failed sign-ins counted per account name, per client address and per pair, in
the database.

Why the database: with several server nodes behind a load balancer, counters in process memory would
let an attacker spread guesses across nodes. The account key is the name *as typed*, whether or not
such an account exists, so a lockout reveals nothing about which names are real.

Rules (RELIABILITY.md 15: at most 100 failures per account per hour, and attackers must not be able
to lock the real user out):

* **pair** (account name + address): ``PAIR_LIMIT`` failures in ``WINDOW`` lock that name *from that
  address* for ``LOCKOUT``; even the right password is refused there. The real user elsewhere is not
  affected.
* **address**: ``ADDRESS_LIMIT`` failures (any names) lock the address (a password sprayer).
* **account**: ``ACCOUNT_LIMIT`` failures in ``ACCOUNT_WINDOW`` from anywhere close the account to
  addresses it has never signed in from (``known`` rows, kept ``KNOWN_FOR``) until the window ends.
  So a distributed guesser gets at most 100 tries an hour, and the user, from an address they used
  before, still gets in.

A success clears the pair's counter only: one good password must not license more guessing from
there, and the account's hourly budget is not refilled by the user's own sign-ins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from callvault.identity.models import SignInThrottle

WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
PAIR_LIMIT = 5
"""Failures per account name from one address before that pair is locked (OWASP's usual 5)."""
ADDRESS_LIMIT = 30
"""Failures per client address: higher, because an office can sit behind one NAT address."""
ACCOUNT_LIMIT = 100
"""Failures per account name per ``ACCOUNT_WINDOW`` from all addresses (NIST 800-63B's ceiling)."""
ACCOUNT_WINDOW = timedelta(hours=1)
KNOWN_FOR = timedelta(days=90)
"""An address the account signed in from stays "known" (exempt from the account-wide lock) this long."""


@dataclass(frozen=True)
class Lock:
    """A key that is locked, and until when."""

    key: str
    until: datetime


def _name(username: str) -> str:
    return username.strip().lower()[:64]


def account_key(username: str) -> str:
    return f"account:{_name(username)}"


def address_key(address: str | None) -> str | None:
    return f"address:{address}" if address else None


def pair_key(username: str, address: str | None) -> str:
    return f"pair:{_name(username)}|{address or '-'}"


def known_key(username: str, address: str) -> str:
    return f"known:{_name(username)}|{address}"


def _keys(username: str, address: str | None) -> list[tuple[str, int, timedelta, timedelta]]:
    """(key, limit, counting window, lock length) for every counter one attempt touches."""
    keys = [(pair_key(username, address), PAIR_LIMIT, WINDOW, LOCKOUT),
            (account_key(username), ACCOUNT_LIMIT, ACCOUNT_WINDOW, ACCOUNT_WINDOW)]
    addr = address_key(address)
    if addr:
        keys.append((addr, ADDRESS_LIMIT, WINDOW, LOCKOUT))
    return keys


def _row(session: Session, key: str, *, for_update: bool) -> SignInThrottle | None:
    stmt = select(SignInThrottle).where(SignInThrottle.key == key)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def is_known_address(session: Session, *, username: str, address: str | None, now: datetime) -> bool:
    if not address:
        return False
    row = _row(session, known_key(username, address), for_update=False)
    return row is not None and row.window_started_at + KNOWN_FOR > now


def active_lock(session: Session, *, username: str, address: str | None, now: datetime) -> Lock | None:
    """The lock that stops this attempt, if any (``address`` None: the account-wide lock only)."""
    keys = [key for key, *_ in _keys(username, address)] if address else [account_key(username)]
    for key in keys:
        if key == account_key(username) and is_known_address(session, username=username, address=address, now=now):
            continue  # the user's own address: the distributed guesser's lock does not apply
        row = _row(session, key, for_update=False)
        if row is not None and row.locked_until is not None and row.locked_until > now:
            return Lock(key=key, until=row.locked_until)
    return None


def record_failure(session: Session, *, username: str, address: str | None, now: datetime) -> list[Lock]:
    """Count one failure against the pair, the account name and the address; the locks it started."""
    started: list[Lock] = []
    for key, limit, window, lock_for in _keys(username, address):
        row = _row(session, key, for_update=True)
        if row is None:
            row = SignInThrottle(key=key, failures=0, window_started_at=now)
            session.add(row)
        if row.window_started_at + window <= now or (row.locked_until is not None and row.locked_until <= now):
            row.failures, row.window_started_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= limit and (row.locked_until is None or row.locked_until <= now):
            row.locked_until = (row.window_started_at + window) if key == account_key(username) else now + lock_for
            started.append(Lock(key=key, until=row.locked_until))
    session.flush()
    return started


def record_success(session: Session, *, username: str, address: str | None, now: datetime) -> None:
    """Clear the pair's counter and remember the address as one this account signs in from."""
    row = _row(session, pair_key(username, address), for_update=True)
    if row is not None:
        session.delete(row)
    if address:
        known = _row(session, known_key(username, address), for_update=True)
        if known is None:
            session.add(SignInThrottle(key=known_key(username, address), failures=0, window_started_at=now))
        else:
            known.window_started_at = now


def unlock(session: Session, *, username: str) -> bool:
    """Clear an account's counters, from every address (an administrator's decision); True if there were any."""
    name = _name(username)
    result = session.execute(delete(SignInThrottle).where(
        (SignInThrottle.key == account_key(username)) | SignInThrottle.key.like(f"pair:{name}|%")))
    return bool(getattr(result, "rowcount", 0))
