"""Accounts, sign-in (password, lockout, second factor), bearer tokens and policy acknowledgements.

Sign-in contract (``sign_in``): a locked account name or address is refused before the password is
looked at; a wrong password and an unknown user get the same message and take the same time; a right
password yields a *stage*: ``full`` (signed in), ``mfa`` (a one-time code is owed) or ``enrol`` (the
role needs MFA and the account has none yet: only MFA set-up is reachable). Every outcome is audited;
failures are recorded by the edge in a separate transaction (``record_failed_sign_in``) because the
failed one rolls back.

Token scopes: an interactive sign-in gets ``*`` (whatever the role may do); integration tokens made
with ``callvault tokens create`` carry only the scopes named (``SCOPES``); a token issued to finish MFA
set-up carries only ``mfa:enrol``. The role and the policy still decide everything a scope allows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import AuthenticationFailed, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id, new_secret_token
from callvault.identity import mfa, throttle
from callvault.identity.counters import Counters
from callvault.identity.models import ApiToken, PolicyAcknowledgement, User
from callvault.identity.passwords import (
    DUMMY_HASH,
    hash_password,
    needs_rehash,
    password_problems,
    verify_password,
)
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.storage.keys import Keyring

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
SCOPES: dict[str, str] = {
    "recordings:read": "search recordings and read their metadata",
    "recordings:play": "stream audio (each use still needs a purpose the role may name); downloads also need "
                       "recordings:download",
    "recordings:download": "download audio without a step-up code: only for unattended clients that archive "
                           "or export (each download still needs a purpose the role may name)",
    "recordings:ingest": "upload recordings (PBX, SIPREC gateway)",
    "access:request": "file and read access requests and grants (CRM integration)",
    "calls:control": "relay the agent's recording controls (stop, pause, resume, personal) and the call's consent "
                     "evidence (announced, notified): for the telephony/CTI integration",
    "admin": "everything the user's role may do",
}
"""Scopes an integration token may carry."""
FULL_SCOPE = "*"
ENROL_SCOPE = "mfa:enrol"
WRONG_CREDENTIALS = ('wrong username, password or one-time code (a code works once, for about a minute; an account '
                     'with MFA sends it as "otp" with the password)')
"""Every failed sign-in, whichever factor was wrong: "the one-time code is wrong" told a guesser that the
password was right (issue 24). The audit entry says which (``WRONG_CODE``, ``CODE_OWED``)."""
WRONG_CODE = "the one-time code is wrong, expired or already used"
DEACTIVATED = "this account is deactivated; ask an administrator"
CODE_OWED = "right password, no one-time code"
UNAVAILABLE = "sign-in is temporarily unavailable (the guessing counters could not be read); nobody was let in"
Stage = Literal["full", "mfa", "enrol"]
EXTENSION_RE = re.compile(r"^[0-9*#]{1,16}$")


@dataclass(frozen=True)
class IssuedToken:
    """A token as handed out once; only its hash is stored."""

    token: str
    expires_in: int
    token_id: str = ""


def _validate_new_user(
    *, username: str, role: str, password: str, extension: str | None, policy: PolicyDocument
) -> None:
    problems: list[FieldProblem] = []
    if not USERNAME_RE.match(username):
        problems.append(FieldProblem("username", "use 2-64 characters: lowercase letters, digits, '.', '_', '-'"))
    if role not in policy.roles:
        problems.append(FieldProblem("role", f"{role!r} is not a role in the policy; choose one of "
                                             f"{', '.join(sorted(policy.roles))}"))
    problems.extend(FieldProblem("password", p) for p in password_problems(password, username=username))
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


def locked_message(until: datetime) -> str:
    """The words for a guessing lock, the same wherever a password or code is refused because of one (sign-in,
    a password change), so a person meets one rule with one explanation."""
    return f"too many failed sign-ins; try again after {until:%H:%M} UTC"


class SignInLocked(AuthenticationFailed):
    """Too many failures for this account name or address; nothing is checked until ``until``."""

    def __init__(self, until: datetime) -> None:
        super().__init__(locked_message(until))
        self.until = until


@dataclass(frozen=True)
class SignIn:
    """A password accepted: the user and how far sign-in has got."""

    user: User
    stage: Stage


def mfa_required(policy: PolicyDocument, user: User) -> bool:
    """Whether the policy makes ``user``'s role use a second factor (an unknown role: yes)."""
    role = policy.roles.get(user.role)
    return role is None or role.mfa_required


def _check_lock(session: Session, counters: Counters, username: str, source_ip: str | None, clock: Clock) -> None:
    lock = throttle.active_lock(session, counters=counters, username=username, address=source_ip, now=clock.now())
    if lock is not None:
        raise SignInLocked(lock.until)


def authenticate(
    session: Session, *, username: str, password: str, source_ip: str | None, counters: Counters,
    clock: Clock = system_clock,
) -> User:
    """Check a username and password (and the lockout); the failure message is the same whoever is asking.
    ``CountersUnavailable`` (503) when the guessing counters cannot be read: nobody is let in then."""
    _check_lock(session, counters, username, source_ip, clock)
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    ok = verify_password(user.password_hash if user else DUMMY_HASH, password)
    if user is None or not ok:
        # The caller rolls this transaction back; it records the failure with record_failed_sign_in.
        raise AuthenticationFailed(WRONG_CREDENTIALS)
    if not user.active:  # said only to someone who knows the password: no hint for guessers
        raise AuthenticationFailed(DEACTIVATED)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _signed_in(session: Session, counters: Counters, user: User, source_ip: str | None, method: str,
               clock: Clock) -> None:
    throttle.record_success(session, counters=counters, username=user.username, address=source_ip, now=clock.now())
    audit.append(session, audit.AuditEvent(
        actor=user.username, actor_role=user.role, action="auth.sign_in", decision="allow", source_ip=source_ip,
        details={"method": method}, clauses=("A12",),
    ), clock=clock)


def record_sign_in(session: Session, *, user: User, source_ip: str | None, method: str, counters: Counters,
                   clock: Clock = system_clock) -> None:
    """Put a completed sign-in on record and clear the account's failure count."""
    _signed_in(session, counters, user, source_ip, method, clock)


def sign_in(
    session: Session, *, username: str, password: str, otp: str | None, policy: PolicyDocument, keyring: Keyring,
    source_ip: str | None, counters: Counters, clock: Clock = system_clock,
) -> SignIn:
    """Password (and, when given, the one-time code) → how far the user is signed in. See the module doc."""
    user = authenticate(session, username=username, password=password, source_ip=source_ip, counters=counters,
                        clock=clock)
    if mfa.is_enrolled(session, user):
        if not otp:
            audit.append(session, audit.AuditEvent(
                actor=user.username, actor_role=user.role, action="auth.password_verified", source_ip=source_ip,
                reason="one-time code owed"), clock=clock)
            return SignIn(user=user, stage="mfa")
        method = mfa.verify(session, user=user, code=otp, keyring=keyring, clock=clock)
        if method is None:
            raise AuthenticationFailed(WRONG_CREDENTIALS, reason=WRONG_CODE)
        _signed_in(session, counters, user, source_ip, f"password+{method}", clock)
        return SignIn(user=user, stage="full")
    if mfa_required(policy, user):
        audit.append(session, audit.AuditEvent(
            actor=user.username, actor_role=user.role, action="auth.password_verified", source_ip=source_ip,
            reason="MFA set-up required by the policy before anything else"), clock=clock)
        return SignIn(user=user, stage="enrol")
    _signed_in(session, counters, user, source_ip, "password", clock)
    return SignIn(user=user, stage="full")


def complete_mfa(
    session: Session, *, user: User, code: str, keyring: Keyring, source_ip: str | None, counters: Counters,
    clock: Clock = system_clock, first_factor: str = "password",
) -> None:
    """The second step of a web sign-in (after a password or single sign-on, ``first_factor``);
    AuthenticationFailed (record it) when the code is not good."""
    _check_lock(session, counters, user.username, source_ip, clock)
    method = mfa.verify(session, user=user, code=code, keyring=keyring, clock=clock)
    if method is None:
        raise AuthenticationFailed(WRONG_CREDENTIALS, reason=WRONG_CODE)
    _signed_in(session, counters, user, source_ip, f"{first_factor}+{method}", clock)


def record_failed_sign_in(
    session: Session, *, username: str, source_ip: str | None, counters: Counters, reason: str = WRONG_CREDENTIALS,
    count: bool = True, clock: Clock = system_clock,
) -> None:
    """Put a failed sign-in on record and count it towards lockout (in its own transaction, since the
    failed one rolls back). Attempts refused by a lock are recorded but not counted again; so are those
    refused because the counters could not be read (``count=False``, reason ``UNAVAILABLE``)."""
    name = username.strip().lower()[:64] or "(blank)"
    audit.append(session, audit.AuditEvent(
        actor=name, action="auth.sign_in", decision="deny", reason=reason, source_ip=source_ip, clauses=("A12",),
    ), clock=clock)
    if count and not reason.startswith("too many"):
        count_failure(session, username=username, source_ip=source_ip, counters=counters, clock=clock)


def count_failure(session: Session, *, username: str, source_ip: str | None, counters: Counters,
                  clock: Clock = system_clock) -> None:
    """Count one wrong password or one-time code towards the guessing limits (``throttle``) and audit each lock
    it starts (``auth.lockout``). Shared by sign-in and every other check of a password or code (a password
    change, ``lifecycle``): with separate counts, each would be a second, unlimited guessing oracle."""
    name = username.strip().lower()[:64] or "(blank)"
    for lock in throttle.record_failure(session, counters=counters, username=username, address=source_ip,
                                        now=clock.now()):
        audit.append(session, audit.AuditEvent(
            actor=name, action="auth.lockout", decision="deny", object_type="throttle", object_id=lock.key[:200],
            reason=f"too many failed sign-ins; locked until {lock.until.isoformat()}", source_ip=source_ip,
            clauses=("A12",)), clock=clock)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate integration scopes; InvalidInput naming the bad one."""
    cleaned = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    bad = [s for s in cleaned if s not in SCOPES]
    if not cleaned or bad:
        raise InvalidInput("invalid token scopes:", [FieldProblem(
            "scope", f"{', '.join(bad) or 'none given'}: choose from {', '.join(SCOPES)}")])
    return cleaned


def issue_token(
    session: Session, *, user: User, ttl_seconds: int, name: str = "api", scopes: tuple[str, ...] = (FULL_SCOPE,),
    clock: Clock = system_clock,
) -> IssuedToken:
    """A new bearer token for ``user``, valid for ``ttl_seconds``, limited to ``scopes``."""
    token = new_secret_token("cvt")
    now = clock.now()
    row = ApiToken(
        id=new_id(), user_id=user.id, token_sha256=_token_hash(token), name=name[:100],
        created_at=now, expires_at=now + timedelta(seconds=ttl_seconds), scopes=" ".join(scopes),
    )
    session.add(row)
    session.flush()
    return IssuedToken(token=token, expires_in=ttl_seconds, token_id=row.id)


def token_owner_refusal(policy: PolicyDocument, *, issuer: User, owner: User) -> str | None:
    """Why ``issuer`` may not create a token for ``owner`` (an administrator, on the users page); None if they may.

    A token is its owner's credential without their password or second factor, and every request it makes is
    audited as its owner. So an administrator makes one only for themselves or for a machine account: a role that
    reaches no content, administers nothing and signs in without a second factor (the phone system's account).
    Otherwise IT, who never hears a call, would mint a download token for an executive and play recordings as
    them, skipping their MFA, the step-up and the separation of duties (approvals). The server operator's
    ``callvault tokens create`` (the key files' holder) is the way for anything else."""
    if owner.id == issuer.id:
        return None
    rule = policy.roles.get(owner.role)
    if rule is not None and rule.content_scope == "none" and not rule.can_administer and not rule.mfa_required:
        return None
    return (f"{owner.username} ({owner.role}) reaches recordings, administers or signs in with a second factor: a "
            "token would let whoever holds it act as them without their password or second factor, on their "
            "audit trail. From this page, tokens are made only for yourself or for an account that reaches no "
            "content and administers nothing (e.g. the phone system's); the server operator makes others with "
            "`callvault tokens create` (docs/accounts.md)")


def may_own_tokens_from(policy: PolicyDocument, issuer: User, users: Sequence[User]) -> list[str]:
    """The usernames ``issuer`` may create a token for from the users page (``token_owner_refusal``)."""
    return [u.username for u in users if u.active and token_owner_refusal(policy, issuer=issuer, owner=u) is None]


def revoke_token(session: Session, *, token: str, clock: Clock = system_clock) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _token_hash(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = clock.now()


def token_and_user(session: Session, token: str, *, clock: Clock = system_clock) -> tuple[ApiToken, User]:
    """The live token row and its active user, or AuthenticationFailed."""
    # One round trip (runs on every API request): the token and its user together.
    found = session.execute(select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                            .where(ApiToken.token_sha256 == _token_hash(token))).first()
    if found is None:
        raise AuthenticationFailed(_SIGN_IN_AGAIN)
    row, user = found
    _check_live(row, user, clock)
    return row, user


_SIGN_IN_AGAIN = "the token is missing, expired or revoked; sign in again"


def _check_live(row: ApiToken, user: User, clock: Clock) -> None:
    if row.revoked_at is not None or row.expires_at <= clock.now() or not user.active:
        raise AuthenticationFailed(_SIGN_IN_AGAIN)


_TOKEN_CALLER = (
    select(ApiToken, User, PolicyAcknowledgement.policy_sha256)
    .join(User, User.id == ApiToken.user_id)
    .outerjoin(PolicyAcknowledgement, and_(PolicyAcknowledgement.user_id == User.id,
                                           PolicyAcknowledgement.policy_sha256 == bindparam("policy_sha256")))
    .where(ApiToken.token_sha256 == bindparam("token_sha256")))
"""Built once (with its cache key): it runs on every API request."""


def token_caller(
    session: Session, token: str, *, policy: PolicyDocument, clock: Clock = system_clock,
) -> tuple[ApiToken, User, Actor]:
    """``token_and_user`` and ``actor_for`` in one round trip: the read every API request makes."""
    found = session.execute(_TOKEN_CALLER, {"token_sha256": _token_hash(token),
                                            "policy_sha256": policy.content_sha256}).first()
    if found is None:
        raise AuthenticationFailed(_SIGN_IN_AGAIN)
    row, user, acknowledged = found
    _check_live(row, user, clock)
    return row, user, _actor(user, acknowledged)


def user_for_token(session: Session, token: str, *, clock: Clock = system_clock) -> User:
    """The active user a bearer token belongs to, or AuthenticationFailed."""
    return token_and_user(session, token, clock=clock)[1]


def revoke_token_id(session: Session, *, token_id: str, actor: str, clock: Clock = system_clock) -> ApiToken:
    """Revoke a token by its id (``callvault tokens revoke``); audited."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"no token with id {token_id!r}")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        audit.append(session, audit.AuditEvent(
            actor=actor, action="auth.token_revoked", object_type="api_token", object_id=row.id,
            details={"name": row.name}), clock=clock)
    return row


def list_tokens(session: Session, *, user: User | None = None) -> list[ApiToken]:
    stmt = select(ApiToken).order_by(ApiToken.created_at.desc())
    if user is not None:
        stmt = stmt.where(ApiToken.user_id == user.id)
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class UserStatus:
    """An account as an administrator sees it: who has not acknowledged the policy, who has no MFA."""

    username: str
    role: str
    extension: str | None
    team: str | None
    active: bool
    policy_acknowledged: bool
    acknowledged_at: datetime | None
    mfa_enrolled: bool
    mfa_required: bool
    locked_until: datetime | None


def list_users(session: Session, *, policy: PolicyDocument, counters: Counters,
               clock: Clock = system_clock) -> list[UserStatus]:
    """Every account with its acknowledgement of the policy in force (A10, B13) and MFA state."""
    acks: dict[str, datetime] = {
        user_id: at for user_id, at in session.execute(
            select(PolicyAcknowledgement.user_id, PolicyAcknowledgement.acknowledged_at)
            .where(PolicyAcknowledgement.policy_sha256 == policy.content_sha256))}
    now = clock.now()
    out: list[UserStatus] = []
    for user in session.scalars(select(User).order_by(User.username)):
        lock = throttle.active_lock(session, counters=counters, username=user.username, address=None, now=now)
        out.append(UserStatus(
            username=user.username, role=user.role, extension=user.extension, team=user.team, active=user.active,
            policy_acknowledged=user.id in acks, acknowledged_at=acks.get(user.id),
            mfa_enrolled=mfa.is_enrolled(session, user), mfa_required=mfa_required(policy, user),
            locked_until=lock.until if lock else None))
    return out


def acknowledged_policy(session: Session, user: User, policy: PolicyDocument) -> str | None:
    """``policy``'s content hash if the user acknowledged exactly that content, else None."""
    found: str | None = session.scalar(select(PolicyAcknowledgement.policy_sha256).where(
        PolicyAcknowledgement.user_id == user.id, PolicyAcknowledgement.policy_sha256 == policy.content_sha256))
    return found


def acknowledge_policy(
    session: Session, *, user: User, policy: PolicyDocument, source_ip: str | None = None,
    clock: Clock = system_clock,
) -> None:
    """Record that ``user`` acknowledged the policy now in force, by its content hash (idempotent)."""
    if acknowledged_policy(session, user, policy):
        return
    session.add(PolicyAcknowledgement(
        id=new_id(), user_id=user.id, policy_version=policy.version, policy_sha256=policy.content_sha256,
        acknowledged_at=clock.now()))
    audit.append(session, audit.AuditEvent(
        actor=user.username, actor_role=user.role, action="policy.acknowledged", object_type="policy",
        object_id=f"{policy.policy_id}@{policy.version}", source_ip=source_ip, clauses=("A10", "B13"),
        details={"sha256": policy.content_sha256},
    ), clock=clock)


def actor_for(session: Session, user: User, policy: PolicyDocument) -> Actor:
    """The policy engine's view of a user."""
    return _actor(user, acknowledged_policy(session, user, policy))


def _actor(user: User, acknowledged_policy_sha256: str | None) -> Actor:
    return Actor(user_id=user.id, username=user.username, role=user.role, extension=user.extension, team=user.team,
                 acknowledged_policy_sha256=acknowledged_policy_sha256)


def user_with_extension(db: Database, extension: str | None) -> User | None:
    """The active user whose extension this is (their username is the call's agent, their team its
    team): how capture paths (SIPREC, PBX imports, Twilio) name the agent when the telephony does not."""
    if not extension:
        return None
    with db.unit_of_work() as session:
        user = session.scalar(select(User).where(User.extension == extension, User.active.is_(True)))
        if user is not None:
            session.expunge(user)
        return user
