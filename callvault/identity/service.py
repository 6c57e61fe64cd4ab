"""Accounts, bearer tokens and policy acknowledgements.

Full sign-in hardening (MFA, lockout, sessions, network allow-list) arrives with the access-control
issue; the contracts here (``authenticate``, ``issue_token``, ``actor_for_token``) stay.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AuthenticationFailed, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id, new_secret_token
from callvault.identity.models import ApiToken, PolicyAcknowledgement, User
from callvault.identity.passwords import (
    DUMMY_HASH,
    MIN_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
EXTENSION_RE = re.compile(r"^[0-9*#]{1,16}$")


@dataclass(frozen=True)
class IssuedToken:
    """A token as handed out once; only its hash is stored."""

    token: str
    expires_in: int


def _validate_new_user(
    *, username: str, role: str, password: str, extension: str | None, policy: PolicyDocument
) -> None:
    problems: list[FieldProblem] = []
    if not USERNAME_RE.match(username):
        problems.append(FieldProblem("username", "use 2-64 characters: lowercase letters, digits, '.', '_', '-'"))
    if role not in policy.roles:
        problems.append(FieldProblem("role", f"{role!r} is not a role in the policy; choose one of "
                                             f"{', '.join(sorted(policy.roles))}"))
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(FieldProblem("password", f"must be at least {MIN_PASSWORD_LENGTH} characters"))
    if extension is not None and not EXTENSION_RE.match(extension):
        problems.append(FieldProblem("extension", "must be 1-16 digits"))
    if problems:
        raise InvalidInput("Cannot create the user:", problems)


def create_user(
    session: Session,
    *,
    actor: str,
    policy: PolicyDocument,
    username: str,
    role: str,
    password: str,
    extension: str | None = None,
    team: str | None = None,
    display_name: str = "",
    clock: Clock = system_clock,
) -> User:
    """Add a local account; the role must exist in the policy in force."""
    username = username.strip().lower()
    _validate_new_user(username=username, role=role, password=password, extension=extension, policy=policy)
    if session.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"a user named {username!r} already exists")
    user = User(
        id=new_id(),
        username=username,
        display_name=display_name or username,
        role=role,
        extension=extension,
        team=team,
        password_hash=hash_password(password),
        active=True,
        created_at=clock.now(),
    )
    session.add(user)
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor=actor, action="user.created", object_type="user", object_id=user.id,
        details={"username": username, "role": role, "extension": extension, "team": team},
    ), clock=clock)
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def authenticate(
    session: Session, *, username: str, password: str, source_ip: str | None, clock: Clock = system_clock
) -> User:
    """Check a username and password; the failure message is the same whoever is asking."""
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    ok = verify_password(user.password_hash if user else DUMMY_HASH, password)
    if user is None or not ok or not user.active:
        # The caller rolls this transaction back; it records the failure with record_failed_sign_in.
        raise AuthenticationFailed("wrong username or password")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    audit.append(session, audit.AuditEvent(
        actor=user.username, actor_role=user.role, action="auth.sign_in", decision="allow", source_ip=source_ip,
    ), clock=clock)
    return user


def record_failed_sign_in(
    session: Session, *, username: str, source_ip: str | None, clock: Clock = system_clock
) -> None:
    """Put a failed sign-in on record (in its own transaction, since the failed one rolls back)."""
    audit.append(session, audit.AuditEvent(
        actor=username.strip().lower()[:64] or "(blank)", action="auth.sign_in", decision="deny",
        reason="wrong username or password", source_ip=source_ip,
    ), clock=clock)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, *, user: User, ttl_seconds: int, name: str = "api", clock: Clock = system_clock
) -> IssuedToken:
    """A new bearer token for ``user``, valid for ``ttl_seconds``."""
    token = new_secret_token("cvt")
    now = clock.now()
    session.add(ApiToken(
        id=new_id(), user_id=user.id, token_sha256=_token_hash(token), name=name,
        created_at=now, expires_at=now + timedelta(seconds=ttl_seconds),
    ))
    session.flush()
    return IssuedToken(token=token, expires_in=ttl_seconds)


def revoke_token(session: Session, *, token: str, clock: Clock = system_clock) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _token_hash(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = clock.now()


def user_for_token(session: Session, token: str, *, clock: Clock = system_clock) -> User:
    """The active user a bearer token belongs to, or AuthenticationFailed."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _token_hash(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= clock.now():
        raise AuthenticationFailed("the token is missing, expired or revoked; sign in again")
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        raise AuthenticationFailed("the token is missing, expired or revoked; sign in again")
    return user


def acknowledged_version(session: Session, user: User, version: str) -> str | None:
    """``version`` if the user acknowledged it, else None."""
    found = session.scalar(select(PolicyAcknowledgement.policy_version).where(
        PolicyAcknowledgement.user_id == user.id, PolicyAcknowledgement.policy_version == version))
    return found


def acknowledge_policy(
    session: Session, *, user: User, policy: PolicyDocument, source_ip: str | None = None,
    clock: Clock = system_clock,
) -> None:
    """Record that ``user`` acknowledged the policy version now in force (idempotent)."""
    if acknowledged_version(session, user, policy.version):
        return
    session.add(PolicyAcknowledgement(
        id=new_id(), user_id=user.id, policy_version=policy.version, acknowledged_at=clock.now()))
    audit.append(session, audit.AuditEvent(
        actor=user.username, actor_role=user.role, action="policy.acknowledged", object_type="policy",
        object_id=f"{policy.policy_id}@{policy.version}", source_ip=source_ip, clauses=("A10", "B13"),
    ), clock=clock)


def actor_for(session: Session, user: User, policy: PolicyDocument) -> Actor:
    """The policy engine's view of a user."""
    return Actor(
        user_id=user.id, username=user.username, role=user.role, extension=user.extension, team=user.team,
        acknowledged_policy_version=acknowledged_version(session, user, policy.version),
    )
