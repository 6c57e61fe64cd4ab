"""Step-up: re-enter the authenticator code before content leaves callvault (RELIABILITY 17).

A signed-in session or bearer token is enough to play a recording in callvault, but a download
hands the audio out for good. So a download also needs a TOTP (or recovery) code the caller gave
within the last ``CALLVAULT_STEP_UP_SECONDS`` (default 300) on *this* session or token: a stolen
token, or a browser left signed in, cannot carry recordings off. The sign-in's own code does not
count: a step-up is a separate, deliberate confirmation, recorded in ``stepped_up_at``.

Bearer tokens: an interactive token (scope ``*``, from ``POST /auth/token``) steps up like a web
session (``POST /auth/step-up``). A scoped token made by an administrator for an unattended client
(``callvault tokens create``) has no person to ask, so it downloads only if it carries the explicit
scope ``recordings:download``; ``recordings:play`` alone no longer downloads.

The same fresh code guards the other ways content leaves, is destroyed, or credentials are made
(``require(..., action=...)``): approving a caller's subject request (it mails a download link outside, or
crypto-shreds an erasure's recordings), creating an API token, resetting someone's MFA or password or
issuing their enrolment code, and loading a policy. A hijacked web session or stolen interactive token
could otherwise do them on the strength of a sign-in up to 12 hours old. A scoped token never does them:
it has nobody to type a code (the server operator's CLI, who holds the key files, asks for none).

Wrong codes count towards the sign-in guessing limits (``throttle``), so the endpoint is no oracle
for guessing six digits with a stolen token.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AuthenticationFailed, StepUpRequired
from callvault.identity import mfa, throttle
from callvault.identity.counters import Counters
from callvault.identity.models import ApiToken, User, WebSession
from callvault.storage.keys import Keyring

DOWNLOAD_SCOPE = "recordings:download"
APPROVE_REQUEST = "approving a caller's request"
CREATE_TOKEN = "creating an API token"  # noqa: S105 (words for a refusal, no secret)
RESET_MFA = "resetting someone's MFA"
RESET_PASSWORD = "resetting someone's password"  # noqa: S105 (words for a refusal, no secret)
ENROLMENT_CODE = "issuing an MFA enrolment code"
LOAD_POLICY = "loading a policy"
"""The guarded actions besides downloads, in the words their refusals use."""
PROMPT = ("confirm with your authenticator code: downloads need a one-time code entered in the last "
          "{minutes} (web: the recording page asks for it; API: POST /api/v1/auth/step-up "
          '{{"code": "123456"}})')
ACTION_PROMPT = ("confirm with your authenticator code: {action} needs a one-time code entered in the last {minutes} "
                 "(web: the form's \"Your one-time code\" field; API: POST /api/v1/auth/step-up "
                 '{{"code": "123456"}}, then send the request again)')


def _row(session: Session, via: Literal["token", "session"], credential_id: str) -> ApiToken | WebSession | None:
    if via == "token":
        return session.get(ApiToken, credential_id)
    return session.get(WebSession, credential_id)


def minutes(seconds: int) -> str:
    """The freshness window in words, for a prompt ("5 minutes", "90 seconds")."""
    return f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} seconds"


def is_fresh(stepped_up_at: datetime | None, *, now: datetime, window_seconds: int) -> bool:
    """Whether a step-up at ``stepped_up_at`` still counts at ``now`` (never one from the future)."""
    return stepped_up_at is not None and now - timedelta(seconds=window_seconds) <= stepped_up_at <= now


def require(session: Session, *, via: Literal["token", "session"], credential_id: str, scopes: frozenset[str],
            full_scope: str, window_seconds: int, clock: Clock = system_clock, action: str | None = None) -> None:
    """Raise ``StepUpRequired`` unless this session or token may download now (see the module doc); with
    ``action`` (words such as "approving a caller's request"), unless it may do that guarded action now."""
    if via == "token" and full_scope not in scopes and action is not None:
        raise StepUpRequired(f"this token may not do this: {action} needs a person's fresh one-time code, and a "
                             f"scoped integration token has nobody to type one (sign in, confirm with "
                             f"POST /api/v1/auth/step-up, and send it again)", reason="no step-up", clauses=("A12",))
    if via == "token" and full_scope not in scopes:
        if DOWNLOAD_SCOPE in scopes:
            return
        raise StepUpRequired(f"this token may not download: its scopes lack {DOWNLOAD_SCOPE} (an unattended "
                             f"client's token needs it; a person signs in and confirms with their "
                             f"authenticator code)", reason="no step-up", clauses=("A12",))
    row = _row(session, via, credential_id)
    if row is None or not is_fresh(row.stepped_up_at, now=clock.now(), window_seconds=window_seconds):
        window = minutes(window_seconds)
        prompt = PROMPT.format(minutes=window) if action is None else ACTION_PROMPT.format(action=action,
                                                                                            minutes=window)
        raise StepUpRequired(prompt, reason="no recent step-up", clauses=("A12",))


def confirm(session: Session, *, user: User, via: Literal["token", "session"], credential_id: str, code: str,
            keyring: Keyring, counters: Counters, source_ip: str | None, clock: Clock = system_clock) -> bool:
    """Check ``code`` and, when right, stamp this session or token as stepped up now. Audited either way.

    Returns False for a wrong, replayed or locked-out code (the caller commits the failure's count and
    audit entry, then refuses)."""
    now = clock.now()
    locked = throttle.active_lock(session, counters=counters, username=user.username, address=source_ip, now=now)
    method = None if locked is not None else mfa.verify(session, user=user, code=code, keyring=keyring, clock=clock)
    row = _row(session, via, credential_id)
    if method is None or row is None:
        if locked is None:
            throttle.record_failure(session, counters=counters, username=user.username, address=source_ip, now=now)
        audit.append(session, audit.AuditEvent(
            actor=user.username, action="auth.step_up", decision="deny", source_ip=source_ip, clauses=("A12",),
            reason="too many failed attempts; try later" if locked else "wrong or reused one-time code"),
            clock=clock)
        return False
    row.stepped_up_at = now
    audit.append(session, audit.AuditEvent(
        actor=user.username, action="auth.step_up", decision="allow", source_ip=source_ip, clauses=("A12",),
        reason=f"one-time code confirmed ({method}) on this {'token' if via == 'token' else 'web session'}"),
        clock=clock)
    return True


def refuse() -> AuthenticationFailed:
    return AuthenticationFailed("that code is wrong, already used, or too many attempts were made: "
                                "enter the current code from your authenticator app")
