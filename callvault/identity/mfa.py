"""TOTP second factor (RFC 6238) with single-use recovery codes.

Contracts:
- ``begin_enrolment`` makes a fresh secret and returns it once (plus the ``otpauth://`` URI an
  authenticator app reads); it is not a second factor until ``confirm_enrolment`` sees a valid code.
- Both need a one-time enrolment code an administrator issued for the account
  (``identity.account_codes``): the password alone never sets up a second factor, or whoever signs in
  first after a reset would enrol their own authenticator (issue 24). ``begin`` checks the code,
  ``confirm`` spends it.
- The secret is stored wrapped by the deployment's key-encryption key, so the database alone yields
  no codes; only the SHA-256 of each recovery code is kept.
- ``verify`` accepts the current 30-second step and one either side (clock drift), and never the same
  step twice, nor an earlier one: a code seen once (over a shoulder, in a proxy log) is useless.
  Recovery codes (``xxxx-xxxx-xxxx``) work once each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import Conflict, FieldProblem, InvalidInput
from callvault.core.ids import new_id
from callvault.identity import account_codes
from callvault.identity.models import MfaCredential, MfaRecoveryCode, User
from callvault.storage.keys import Keyring, WrappedKey

ISSUER = "callvault"
log = logging.getLogger("callvault.identity")

STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODES = 10


@dataclass(frozen=True)
class Enrolment:
    """Shown to the user once: the base32 secret and the URI for an authenticator app."""

    secret: str
    provisioning_uri: str


def _binding(user: User) -> str:
    # The wrap is bound to the user: a wrapped secret copied onto another account fails to unwrap.
    return f"mfa:{user.id}"


def _secret_from_key(key: bytes) -> str:
    return base64.b32encode(key[:20]).decode()  # 160 bits, as RFC 4226 recommends


def _credential(session: Session, user: User) -> MfaCredential | None:
    return session.get(MfaCredential, user.id)


def _secret(cred: MfaCredential, user: User, keyring: Keyring) -> str:
    key = keyring.unwrap(WrappedKey(kek_id=cred.kek_id, wrapped=cred.wrapped_secret), recording_id=_binding(user))
    return _secret_from_key(key)


def is_enrolled(session: Session, user: User) -> bool:
    cred = _credential(session, user)
    return cred is not None and cred.confirmed_at is not None


ENROLMENT_CODE_FIELD = "enrolment_code"


def begin_enrolment(session: Session, *, user: User, keyring: Keyring, enrolment_code: str,
                    clock: Clock = system_clock) -> Enrolment:
    """A new, unconfirmed secret for ``user``, for the holder of a valid enrolment code (InvalidInput naming
    ``enrolment_code`` otherwise). Refused when MFA is already set up (reset it first)."""
    cred = _credential(session, user)
    if cred is not None and cred.confirmed_at is not None:
        raise Conflict("MFA is already set up for this account; an administrator can reset it")
    account_codes.require(session, user=user, purpose="enrol", code=enrolment_code, field=ENROLMENT_CODE_FIELD,
                          clock=clock)
    key = secrets.token_bytes(32)
    wrapped = keyring.wrap(key, recording_id=_binding(user))
    if cred is None:
        cred = MfaCredential(user_id=user.id, kek_id=wrapped.kek_id, wrapped_secret=wrapped.wrapped,
                             created_at=clock.now())
        session.add(cred)
    else:
        cred.kek_id, cred.wrapped_secret, cred.created_at = wrapped.kek_id, wrapped.wrapped, clock.now()
        cred.last_used_step = None
    session.flush()
    secret = _secret_from_key(key)
    uri = pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(name=user.username, issuer_name=ISSUER)
    return Enrolment(secret=secret, provisioning_uri=uri)


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def _normalise(code: str) -> str:
    return "".join(code.split()).lower()


def _new_recovery_codes(session: Session, user: User, clock: Clock) -> list[str]:
    session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(6)  # 48 random bits; each code works once, and guessing is throttled
        codes.append(f"{raw[0:4]}-{raw[4:8]}-{raw[8:12]}")
    for code in codes:
        session.add(MfaRecoveryCode(id=new_id(), user_id=user.id, code_sha256=_hash(code), created_at=clock.now()))
    return codes


def _hash(code: str) -> str:
    return hashlib.sha256(_normalise(code).replace("-", "").encode()).hexdigest()


def confirm_enrolment(
    session: Session, *, user: User, code: str, keyring: Keyring, enrolment_code: str, source_ip: str | None = None,
    clock: Clock = system_clock,
) -> list[str]:
    """Switch MFA on once ``code`` proves the user holds the secret and ``enrolment_code`` is still good
    (it is spent here); returns fresh recovery codes (once)."""
    cred = _credential(session, user)
    if cred is None:
        raise Conflict("start MFA enrolment first")
    if cred.confirmed_at is not None:
        raise Conflict("MFA is already set up for this account")
    issued = account_codes.require(session, user=user, purpose="enrol", code=enrolment_code,
                                   field=ENROLMENT_CODE_FIELD, clock=clock)
    step = _matching_step(_secret(cred, user, keyring), _normalise(code), clock.now())
    if step is None:
        raise InvalidInput("that code is not right:", [FieldProblem(
            "code", "enter the 6-digit code your authenticator app shows now (check the device's clock)")])
    cred.confirmed_at = clock.now()
    cred.last_used_step = step
    account_codes.consume(session, row=issued, user=user, source_ip=source_ip, clock=clock)
    codes = _new_recovery_codes(session, user, clock)
    audit.append(session, audit.AuditEvent(
        actor=user.username, actor_role=user.role, action="auth.mfa_enrolled", object_type="user",
        object_id=user.id, source_ip=source_ip, clauses=("A12",)), clock=clock)
    return codes


def verify(session: Session, *, user: User, code: str, keyring: Keyring, clock: Clock = system_clock) -> str | None:
    """``"totp"`` or ``"recovery_code"`` when ``code`` is a valid, unused second factor; else None.

    Marks what it accepts as used (the caller commits). A replayed TOTP step is refused.
    """
    cred = _credential(session, user)
    if cred is None or cred.confirmed_at is None or not code:
        return None
    normalised = _normalise(code)
    if normalised.isdigit() and len(normalised) == 6:  # a TOTP code; recovery codes are hex with dashes
        now = clock.now()
        step = _matching_step(_secret(cred, user, keyring), normalised, now)
        if step is None or (cred.last_used_step is not None and step <= cred.last_used_step):
            if step is not None and cred.last_used_step is not None and cred.last_used_step > step + DRIFT_STEPS:
                # The clock stepped back: every code until it catches up may have been used (and seen)
                # already; only the newest step is stored, so refusing them all is the safe answer.
                log.warning("one-time code for %s refused: the server clock is %d s behind the last code "
                            "accepted; TOTP works again once it catches up (recovery codes work meanwhile)",
                            user.username, (cred.last_used_step - step) * STEP_SECONDS)
            return None
        cred.last_used_step = step
        return "totp"
    row = session.scalar(select(MfaRecoveryCode).where(
        MfaRecoveryCode.user_id == user.id, MfaRecoveryCode.code_sha256 == _hash(normalised),
        MfaRecoveryCode.used_at.is_(None)))
    if row is None:
        return None
    row.used_at = clock.now()
    return "recovery_code"


def reset(session: Session, *, user: User, actor: str, clock: Clock = system_clock) -> None:
    """Remove ``user``'s MFA (lost device): they must enrol again, with an administrator's enrolment code.
    Ending their tokens and sessions is ``identity.lifecycle.reset_mfa``'s part; call that from the edges."""
    cred = _credential(session, user)
    if cred is not None:
        session.delete(cred)
    session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id))
    audit.append(session, audit.AuditEvent(
        actor=actor, action="auth.mfa_reset", object_type="user", object_id=user.id,
        details={"username": user.username}, clauses=("A12",)), clock=clock)


def remaining_recovery_codes(session: Session, user: User) -> int:
    return len(list(session.scalars(select(MfaRecoveryCode.id).where(
        MfaRecoveryCode.user_id == user.id, MfaRecoveryCode.used_at.is_(None)))))


def pending_enrolment(session: Session, *, user: User, keyring: Keyring) -> Enrolment | None:
    """The unconfirmed secret being set up, if any, so a mistyped code does not force a re-scan."""
    cred = _credential(session, user)
    if cred is None or cred.confirmed_at is not None:
        return None
    secret = _secret(cred, user, keyring)
    uri = pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(name=user.username, issuer_name=ISSUER)
    return Enrolment(secret=secret, provisioning_uri=uri)
