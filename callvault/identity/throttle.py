"""Guessing limits: failed sign-ins counted per account name, per client address and per pair, in a
``Counters`` store shared by every node: the database by default, Redis when ``CALLVAULT_REDIS_URL``
is set (``identity.counters``; the rules here are the same for both).

Why not process memory: with several server nodes behind a load balancer, counters in memory would
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

from sqlalchemy.orm import Session

from callvault.identity.counters import Counters

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


def is_known_address(session: Session, *, counters: Counters, username: str, address: str | None,
                     now: datetime) -> bool:
    if not address:
        return False
    key = known_key(username, address)
    row = counters.read(session, [key]).get(key)
    return row is not None and row.window_started_at + KNOWN_FOR > now


def active_lock(session: Session, *, counters: Counters, username: str, address: str | None,
                now: datetime) -> Lock | None:
    """The lock that stops this attempt, if any (``address`` None: the account-wide lock only)."""
    keys = [key for key, *_ in _keys(username, address)] if address else [account_key(username)]
    known = known_key(username, address) if address else None
    rows = counters.read(session, keys + ([known] if known else []))
    for key in keys:
        if key == account_key(username) and known:
            mark = rows.get(known)
            if mark is not None and mark.window_started_at + KNOWN_FOR > now:
                continue  # the user's own address: the distributed guesser's lock does not apply
        row = rows.get(key)
        if row is not None and row.locked_until is not None and row.locked_until > now:
            return Lock(key=key, until=row.locked_until)
    return None


def record_failure(session: Session, *, counters: Counters, username: str, address: str | None,
                   now: datetime) -> list[Lock]:
    """Count one failure against the pair, the account name and the address; the locks it started."""
    started: list[Lock] = []
    for key, limit, window, lock_for in _keys(username, address):
        # The account-wide lock ends with its window (a fixed hourly budget); the others run LOCKOUT from now.
        bumped = counters.bump(session, key, limit=limit, window=window, now=now,
                               lock_for=None if key == account_key(username) else lock_for)
        if bumped.started and bumped.counter.locked_until is not None:
            started.append(Lock(key=key, until=bumped.counter.locked_until))
    return started


def record_success(session: Session, *, counters: Counters, username: str, address: str | None,
                   now: datetime) -> None:
    """Clear the pair's counter and remember the address as one this account signs in from."""
    counters.clear(session, [pair_key(username, address)])
    if address:
        counters.mark(session, known_key(username, address), now=now, keep_for=KNOWN_FOR)


def unlock(session: Session, *, counters: Counters, username: str) -> bool:
    """Clear an account's counters, from every address (an administrator's decision); True if there were any."""
    cleared = counters.clear(session, [account_key(username)])
    cleared += counters.clear_prefix(session, f"pair:{_name(username)}|")
    return cleared > 0
