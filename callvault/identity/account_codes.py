"""One-time codes an administrator issues for one account (issue 24 point 7).

Why: MFA set-up used to need only the password, so after an MFA reset (or before the first enrolment)
whoever knew or guessed the password first enrolled *their* authenticator and owned the account. Now
the person must also hold a code an administrator handed to them (``enrol``). The same machinery
carries an administrator's password reset (``password``): the old password stops working and the owner
chooses a new one with the code.

Contracts:
- A code is 100 random bits shown once (``XXXXX-XXXXX-XXXXX-XXXXX``, base32, case and dashes ignored);
  only its SHA-256 is stored.
- It expires (``DEFAULT_TTL``, at most ``MAX_TTL``), works once, and only for the account and purpose it
  was issued for. Issuing another for the same account and purpose withdraws the earlier one.
- Issue and use are audited (``auth.account_code_issued`` / ``auth.account_code_used``); the code itself
  never is.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import FieldProblem, InvalidInput
from callvault.core.ids import new_id
from callvault.identity.models import AccountCode, User

Purpose = Literal["enrol", "password"]
DEFAULT_TTL = timedelta(hours=1)
MAX_TTL = timedelta(hours=72)
NAMES: dict[str, str] = {"enrol": "MFA enrolment code", "password": "password reset code"}


@dataclass(frozen=True)
class IssuedCode:
    """The code as shown once to the administrator, and when it stops working."""

    code: str
    expires_at: datetime
    purpose: str


def _normalise(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _hash(code: str) -> str:
    return hashlib.sha256(_normalise(code).encode()).hexdigest()


def check_ttl(ttl: timedelta | None) -> timedelta:
    """``ttl`` or the default; InvalidInput naming ``ttl`` outside a minute to ``MAX_TTL``."""
    if ttl is None:
        return DEFAULT_TTL
    if not timedelta(minutes=1) <= ttl <= MAX_TTL:
        raise InvalidInput("invalid lifetime:", [FieldProblem(
            "ttl", f"between a minute and {int(MAX_TTL.total_seconds() // 3600)} hours")])
    return ttl


def issue(
    session: Session, *, user: User, purpose: Purpose, actor: str, actor_role: str = "",
    source_ip: str | None = None, ttl: timedelta | None = None, clock: Clock = system_clock,
) -> IssuedCode:
    """A new code for ``user`` and ``purpose`` (any earlier unused one is withdrawn); audited."""
    lifetime = check_ttl(ttl)
    raw = base64.b32encode(secrets.token_bytes(13)).decode()[:20]  # 100 bits
    code = "-".join(raw[i:i + 5] for i in range(0, 20, 5))
    now = clock.now()
    session.execute(delete(AccountCode).where(AccountCode.user_id == user.id, AccountCode.purpose == purpose,
                                              AccountCode.used_at.is_(None)))
    row = AccountCode(id=new_id(), user_id=user.id, purpose=purpose, code_sha256=_hash(code),
                      issued_by=actor[:64], created_at=now, expires_at=now + lifetime)
    session.add(row)
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="auth.account_code_issued", object_type="user", object_id=user.id,
        source_ip=source_ip, clauses=("A12",),
        details={"username": user.username, "purpose": purpose, "expires_at": row.expires_at.isoformat()}),
        clock=clock)
    return IssuedCode(code=code, expires_at=row.expires_at, purpose=purpose)


def find(session: Session, *, user: User, purpose: Purpose, code: str, clock: Clock = system_clock
         ) -> AccountCode | None:
    """The unused, unexpired code row ``code`` names for this account and purpose, else None."""
    if not code or not _normalise(code):
        return None
    row = session.scalar(select(AccountCode).where(AccountCode.code_sha256 == _hash(code)))
    if (row is None or row.user_id != user.id or row.purpose != purpose or row.used_at is not None
            or row.expires_at <= clock.now()):
        return None
    return row


def require(session: Session, *, user: User, purpose: Purpose, code: str, field: str,
            clock: Clock = system_clock) -> AccountCode:
    """``find`` or InvalidInput naming ``field`` and saying whom to ask."""
    row = find(session, user=user, purpose=purpose, code=code, clock=clock)
    if row is None:
        what = NAMES[purpose]
        problem = "is wrong, expired or already used" if code else "is missing"
        raise InvalidInput(f"a valid {what} is needed:", [FieldProblem(
            field, f"the {what} {problem}: ask an administrator for one (it is issued per account, "
                   "works once and expires soon)")])
    return row


def consume(session: Session, *, row: AccountCode, user: User, source_ip: str | None = None,
            clock: Clock = system_clock) -> None:
    """Spend ``row`` (the caller commits with the change it allowed); audited."""
    row.used_at = clock.now()
    audit.append(session, audit.AuditEvent(
        actor=user.username, actor_role=user.role, action="auth.account_code_used", object_type="user",
        object_id=user.id, source_ip=source_ip, clauses=("A12",),
        details={"purpose": row.purpose, "issued_by": row.issued_by}), clock=clock)


def outstanding(session: Session, *, user: User, purpose: Purpose, clock: Clock = system_clock) -> bool:
    """Whether an unused, unexpired code of ``purpose`` exists for ``user`` (for the users list)."""
    return session.scalar(select(AccountCode.id).where(
        AccountCode.user_id == user.id, AccountCode.purpose == purpose, AccountCode.used_at.is_(None),
        AccountCode.expires_at > clock.now())) is not None
