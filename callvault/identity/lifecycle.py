"""Account lifecycle: ending every credential of an account, MFA reset, deactivation, password changes.

Contracts (issue 24 point 7):
- ``end_credentials`` revokes, in the database, every bearer token and web session of an account (but the
  one named to keep). Every request checks its credential's row (``identity.service.token_caller``,
  ``api.deps``), so the end holds at once on every node: nothing is remembered in a process.
- An MFA reset, a deactivation and an administrator's password reset end them all; a person changing
  their own password keeps only the credential they changed it with.
- The last active account whose role administers (``can_administer`` in the policy) cannot be deactivated:
  nobody could then reactivate anyone except through the command line on the server.
- An administrator's password reset makes the old password useless at once and issues a one-time
  ``password`` code (``account_codes``): the owner chooses the new password with it (and their one-time
  code when MFA is set up), so the administrator never knows it.
- Every change is audited; wrong input is an ``InvalidInput`` naming the field.
- A password change checks a password and a one-time code, so it is a sign-in in all but name: a wrong current
  password or code counts towards the sign-in guessing limits (``identity.throttle``, through
  ``identity.count_failure``), and while a lock is in force nothing is checked (finding W2). Otherwise the form
  would be an unlimited oracle for both. The failed transaction rolls back, so the refusal is put on record and
  counted in one of its own; ``change_password`` and ``set_password_with_code`` therefore take the ``Database``.
- ``update_profile`` (role, extension, team) follows the same last-administrator rule: demoting the last
  active administrator is refused, for the same reason as deactivating them.
- A role change ends every token and session of the person (``end_credentials_for_role_change``, finding W3):
  the role's sign-in rules (MFA) are checked only at sign-in, so a credential made under the old role must not
  carry on under the new one.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import Conflict, FieldProblem, InvalidInput
from callvault.identity import account_codes, mfa, throttle
from callvault.identity import service as identity
from callvault.identity.counters import Counters
from callvault.identity.models import AccountCode, ApiToken, User, WebSession
from callvault.identity.passwords import hash_password, password_problems, verify_password
from callvault.policy.schema import PolicyDocument
from callvault.storage.keys import Keyring

RESET_CODE_FIELD = "reset_code"
NOT_CHANGED = "The password was not changed:"
WRONG_CODE = "the one-time code is wrong, expired or already used"


class ProofRefused(InvalidInput):
    """A password change refused for a wrong current password or one-time code, or for a guessing lock in force:
    still a 422 naming the field, but unlike other bad input it is a guess, so it is put on record and (unless a
    lock refused it, ``counted`` False) counted towards the sign-in limits, in a transaction of its own."""

    def __init__(self, problem: FieldProblem, *, counted: bool) -> None:
        super().__init__(NOT_CHANGED, [problem])
        self.reason = problem.message
        self.counted = counted


def end_credentials(session: Session, *, user: User, when: datetime, keep_token_id: str | None = None,
                    keep_session_id: str | None = None) -> int:
    """Revoke every live bearer token and web session of ``user`` except those named; how many ended."""
    tokens = update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    if keep_token_id:
        tokens = tokens.where(ApiToken.id != keep_token_id)
    webs = update(WebSession).where(WebSession.user_id == user.id, WebSession.revoked_at.is_(None))
    if keep_session_id:
        webs = webs.where(WebSession.id != keep_session_id)
    ended = 0
    for stmt in (tokens, webs):
        result = session.execute(stmt.values(revoked_at=when))
        ended += int(getattr(result, "rowcount", 0) or 0)
    return ended


def reset_mfa(session: Session, *, user: User, actor: str, actor_role: str = "", source_ip: str | None = None,
              clock: Clock = system_clock) -> int:
    """Remove ``user``'s second factor (lost device) and end every token and session; audited. They set MFA
    up again only with an enrolment code an administrator issues (``account_codes.issue``)."""
    mfa.reset(session, user=user, actor=actor, clock=clock)
    ended = end_credentials(session, user=user, when=clock.now())
    _audit(session, actor, actor_role, "auth.credentials_revoked", user, source_ip, clock,
           {"reason": "mfa reset", "ended": ended})
    return ended


def is_administrator(policy: PolicyDocument, role: str) -> bool:
    found = policy.roles.get(role)
    return found is not None and found.can_administer


def _refuse_last_administrator(session: Session, *, user: User, policy: PolicyDocument, what: str) -> None:
    """Conflict when ``user`` is the only active administrator: after ``what`` nobody could administer."""
    if not (user.active and is_administrator(policy, user.role)):
        return
    admin_roles = [name for name, role in policy.roles.items() if role.can_administer]
    others = session.scalar(select(User.id).where(User.id != user.id, User.active.is_(True),
                                                  User.role.in_(admin_roles)).limit(1))
    if others is None:
        raise Conflict(f"{user.username} is the last active administrator; make or reactivate another "
                       f"administrator before {what}")


def deactivate(session: Session, *, user: User, actor: str, policy: PolicyDocument, actor_role: str = "",
               source_ip: str | None = None, clock: Clock = system_clock) -> bool:
    """Switch ``user`` off: no sign-in of any kind, every token and session ended, codes withdrawn.
    Conflict for the last active administrator. False when it was already inactive."""
    if not user.active:
        return False
    _refuse_last_administrator(session, user=user, policy=policy, what="deactivating them")
    user.active = False
    session.execute(delete(AccountCode).where(AccountCode.user_id == user.id, AccountCode.used_at.is_(None)))
    ended = end_credentials(session, user=user, when=clock.now())
    _audit(session, actor, actor_role, "user.deactivated", user, source_ip, clock, {"ended": ended})
    return True


def update_profile(session: Session, *, user: User, policy: PolicyDocument, role: str, extension: str | None,
                   team: str | None, actor: str, actor_role: str = "", source_ip: str | None = None,
                   clock: Clock = system_clock) -> dict[str, list[str | None]]:
    """Change ``user``'s role, extension and team; returns what changed (``{field: [old, new]}``, audited
    as ``user.updated``). The role must be one of the policy's; the extension decides which recordings a
    specialist reaches, so it is validated like ``create_user``'s. Demoting the last active administrator
    is a Conflict. Nothing changed, nothing audited."""
    extension = (extension or "").strip() or None
    team = (team or "").strip()[:64] or None
    problems: list[FieldProblem] = []
    if role not in policy.roles:
        problems.append(FieldProblem("role", f"{role!r} is not a role in the policy; choose one of "
                                             f"{', '.join(sorted(policy.roles))}"))
    if extension is not None and not identity.EXTENSION_RE.match(extension):
        problems.append(FieldProblem("extension", "must be 1-16 digits"))
    if problems:
        raise InvalidInput(f"Cannot change {user.username}:", problems)
    if is_administrator(policy, user.role) and not is_administrator(policy, role):
        _refuse_last_administrator(session, user=user, policy=policy, what="changing their role")
    changes: dict[str, list[str | None]] = {}
    for field, new in (("role", role), ("extension", extension), ("team", team)):
        old = getattr(user, field)
        if old != new:
            changes[field] = [old, new]
            setattr(user, field, new)
    if changes:
        _audit(session, actor, actor_role, "user.updated", user, source_ip, clock, {"changes": changes})
    if "role" in changes:
        end_credentials_for_role_change(session, user=user, old_role=changes["role"][0], actor=actor,
                                        actor_role=actor_role, source_ip=source_ip, clock=clock)
    return changes


def end_credentials_for_role_change(session: Session, *, user: User, old_role: str | None, actor: str,
                                    actor_role: str = "", source_ip: str | None = None,
                                    clock: Clock = system_clock) -> int:
    """End every token and web session of ``user``, whose role has just changed; how many ended (audited as
    ``auth.credentials_revoked``, reason ``role changed``).

    Why: the policy's sign-in rules belong to the role (``mfa_required``) and are checked only at sign-in, so a
    token made on a password alone under a role without MFA would otherwise go on working under one that needs
    it (finding W3). The person signs in again, under the new role's rules."""
    ended = end_credentials(session, user=user, when=clock.now())
    _audit(session, actor, actor_role, "auth.credentials_revoked", user, source_ip, clock,
           {"reason": "role changed", "ended": ended, "from": old_role, "to": user.role})
    return ended


def reactivate(session: Session, *, user: User, actor: str, actor_role: str = "", source_ip: str | None = None,
               clock: Clock = system_clock) -> bool:
    """Let ``user`` sign in again (with their password and second factor as before). False if already active."""
    if user.active:
        return False
    user.active = True
    _audit(session, actor, actor_role, "user.reactivated", user, source_ip, clock, {})
    return True


def _new_password_problems(user: User, new_password: str) -> list[FieldProblem]:
    problems = [FieldProblem("new_password", p) for p in password_problems(new_password, username=user.username)]
    if not problems and verify_password(user.password_hash, new_password):
        problems.append(FieldProblem("new_password", "must differ from the current password"))
    return problems


def _second_factor(session: Session, user: User, otp: str | None, keyring: Keyring, clock: Clock
                   ) -> list[FieldProblem]:
    """The one-time code, when MFA is set up: none given is a problem to report with the others (nothing was
    guessed); a wrong one is a ``ProofRefused`` (counted). The caller has checked the guessing lock."""
    if not mfa.is_enrolled(session, user):
        return []
    if not otp:
        return [FieldProblem("otp", "enter the 6-digit code from your authenticator app (or a recovery code)")]
    if mfa.verify(session, user=user, code=otp, keyring=keyring, clock=clock) is None:
        raise ProofRefused(FieldProblem("otp", WRONG_CODE), counted=True)
    return []


def _refuse_while_locked(session: Session, *, username: str, counters: Counters, source_ip: str | None,
                         clock: Clock, location: str) -> None:
    """``ProofRefused`` (not counted again) while sign-in's guessing lock holds for this name and address: as at
    sign-in, even the right password or code is refused then, so guessing here gains nothing either."""
    lock = throttle.active_lock(session, counters=counters, username=username, address=source_ip, now=clock.now())
    if lock is not None:
        raise ProofRefused(FieldProblem(location, identity.locked_message(lock.until)), counted=False)


@contextmanager
def _proof_counted(db: Database, *, username: str, via: str, counters: Counters, source_ip: str | None,
                   clock: Clock) -> Iterator[Session]:
    """A unit of work for a password change; a ``ProofRefused`` out of it rolls it back, then is put on record and
    counted in a transaction of its own (``_record_refused_proof``) and raised again."""
    try:
        with db.unit_of_work() as session:
            yield session
    except ProofRefused as refused:
        _record_refused_proof(db, username=username, refused=refused, via=via, counters=counters,
                              source_ip=source_ip, clock=clock)
        raise


def _record_refused_proof(db: Database, *, username: str, refused: ProofRefused, via: str, counters: Counters,
                          source_ip: str | None, clock: Clock) -> None:
    """Put a refused password change on record (``auth.password_change`` deny) and count it as a failed sign-in
    is counted, in a transaction of its own: the refused one rolls back."""
    with db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(
            actor=username.strip().lower()[:64] or "(blank)", action="auth.password_change", decision="deny",
            reason=refused.reason, source_ip=source_ip, clauses=("A12",), details={"via": via}), clock=clock)
        if refused.counted:
            identity.count_failure(session, username=username, source_ip=source_ip, counters=counters, clock=clock)


def change_password(
    db: Database, *, username: str, current_password: str, new_password: str, otp: str | None, keyring: Keyring,
    counters: Counters, keep_token_id: str | None = None, keep_session_id: str | None = None,
    source_ip: str | None = None, clock: Clock = system_clock,
) -> int:
    """The owner changes their password: the current one and (MFA set up) a one-time code prove it is them.
    Every other token and session ends; how many ended. A wrong password or code is a ``ProofRefused`` that
    counts towards the sign-in guessing limits; see the module doc for why this takes the ``Database``."""
    with _proof_counted(db, username=username, via="owner", counters=counters, source_ip=source_ip,
                        clock=clock) as session:
        user = identity.get_user(session, username)
        return _change_password(session, user=user, current_password=current_password, new_password=new_password,
                                otp=otp, keyring=keyring, counters=counters, keep_token_id=keep_token_id,
                                keep_session_id=keep_session_id, source_ip=source_ip, clock=clock)


def _change_password(
    session: Session, *, user: User, current_password: str, new_password: str, otp: str | None, keyring: Keyring,
    counters: Counters, keep_token_id: str | None, keep_session_id: str | None, source_ip: str | None, clock: Clock,
) -> int:
    _refuse_while_locked(session, username=user.username, counters=counters, source_ip=source_ip, clock=clock,
                         location="current_password")
    if not verify_password(user.password_hash, current_password):
        raise ProofRefused(FieldProblem("current_password", "is not your current password"), counted=True)
    problems = _second_factor(session, user, otp, keyring, clock)
    if not problems:
        problems += _new_password_problems(user, new_password)
    if problems:
        raise InvalidInput(NOT_CHANGED, problems)
    user.password_hash = hash_password(new_password)
    ended = end_credentials(session, user=user, when=clock.now(), keep_token_id=keep_token_id,
                            keep_session_id=keep_session_id)
    _audit(session, user.username, user.role, "user.password_changed", user, source_ip, clock,
           {"via": "owner", "other_credentials_ended": ended})
    return ended


def reset_password(
    session: Session, *, user: User, actor: str, actor_role: str = "", source_ip: str | None = None,
    ttl: timedelta | None = None, clock: Clock = system_clock,
) -> account_codes.IssuedCode:
    """An administrator's reset: the old password stops working, every token and session ends, and a
    one-time reset code (returned, shown once) lets the owner choose a new password."""
    user.password_hash = hash_password(secrets.token_urlsafe(32))  # nobody knows it: unusable
    ended = end_credentials(session, user=user, when=clock.now())
    _audit(session, actor, actor_role, "user.password_reset", user, source_ip, clock, {"ended": ended})
    return account_codes.issue(session, user=user, purpose="password", actor=actor, actor_role=actor_role,
                               source_ip=source_ip, ttl=ttl, clock=clock)


def set_password_with_code(
    db: Database, *, username: str, reset_code: str, new_password: str, otp: str | None, keyring: Keyring,
    counters: Counters, source_ip: str | None = None, clock: Clock = system_clock,
) -> None:
    """The owner chooses a new password with an administrator's reset code (and their one-time code when
    MFA is set up). An unknown, deactivated account and a bad code get the same answer. A wrong one-time code
    counts towards the sign-in guessing limits, as at ``change_password``: a reset code that went astray must not
    open an unlimited oracle for the code either."""
    with _proof_counted(db, username=username, via="reset code", counters=counters, source_ip=source_ip,
                        clock=clock) as session:
        _set_password_with_code(session, username=username, reset_code=reset_code, new_password=new_password,
                                otp=otp, keyring=keyring, counters=counters, source_ip=source_ip, clock=clock)


def _set_password_with_code(
    session: Session, *, username: str, reset_code: str, new_password: str, otp: str | None, keyring: Keyring,
    counters: Counters, source_ip: str | None, clock: Clock,
) -> None:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    row = account_codes.find(session, user=user, purpose="password", code=reset_code, clock=clock) \
        if user is not None and user.active else None
    if user is None or row is None:
        raise InvalidInput(NOT_CHANGED, [FieldProblem(
            RESET_CODE_FIELD, "this username and reset code do not match a reset code that is still good: ask an "
                              "administrator for a new one (it works once and expires soon)")])
    if otp and mfa.is_enrolled(session, user):  # the only guess here: the reset code is long and random
        _refuse_while_locked(session, username=user.username, counters=counters, source_ip=source_ip, clock=clock,
                             location="otp")
    problems = _second_factor(session, user, otp, keyring, clock) + _new_password_problems(user, new_password)
    if problems:
        raise InvalidInput(NOT_CHANGED, problems)
    user.password_hash = hash_password(new_password)
    account_codes.consume(session, row=row, user=user, source_ip=source_ip, clock=clock)
    ended = end_credentials(session, user=user, when=clock.now())
    _audit(session, user.username, user.role, "user.password_changed", user, source_ip, clock,
           {"via": "reset code", "issued_by": row.issued_by, "other_credentials_ended": ended})


def _audit(session: Session, actor: str, actor_role: str, action: str, user: User, source_ip: str | None,
           clock: Clock, details: dict[str, object]) -> None:
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action=action, object_type="user", object_id=user.id,
        source_ip=source_ip, clauses=("A12",), details={"username": user.username, **details}), clock=clock)
