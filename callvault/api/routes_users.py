"""Administrators' account actions (issue 24 point 7): MFA reset, one-time enrolment codes, deactivation
and reactivation, password reset. Thin over ``identity.lifecycle`` and ``identity.account_codes``, like the
CLI (``callvault users ...``) and the web users page. Each needs a role that administers accounts; those that
make or remove a credential (MFA reset, enrolment code, password reset) also need a fresh step-up code
(``POST /api/v1/auth/step-up``, 403 ``step_up_required`` otherwise), so a stolen token cannot hand out access."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from callvault.api.deps import Caller, get_caller, get_runtime, require_step_up
from callvault.core.errors import AccessDenied
from callvault.identity import account_codes, lifecycle, step_up
from callvault.identity import service as identity
from callvault.runtime import Runtime

router = APIRouter(tags=["users"])


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_minutes: int | None = Field(default=None, ge=1, le=int(account_codes.MAX_TTL.total_seconds() // 60),
                                    description="how long the code works (default 60)")


class IssuedCodeRead(BaseModel):
    username: str
    purpose: str
    """``enrol`` (MFA set-up) or ``password`` (choose a new password)."""
    code: str
    """Shown once: hand it to the person by a channel you trust; it works once."""
    expires_at: datetime


class AccountState(BaseModel):
    username: str
    active: bool
    credentials_ended: int = 0


def _administrator(caller: Caller) -> None:
    if not lifecycle.is_administrator(caller.policy, caller.user.role):
        raise AccessDenied(f"role {caller.user.role} does not administer accounts")


def _ttl(body: CodeRequest | None) -> timedelta | None:
    return timedelta(minutes=body.ttl_minutes) if body and body.ttl_minutes else None


@router.post("/users/{username}/enrolment-code", response_model=IssuedCodeRead)
def enrolment_code(username: str, body: CodeRequest | None = None, caller: Caller = Depends(get_caller),
                   runtime: Runtime = Depends(get_runtime)) -> IssuedCodeRead:
    """A one-time code with which ``username`` sets up MFA (replaces any earlier one); audited."""
    _administrator(caller)
    require_step_up(runtime, caller, step_up.ENROLMENT_CODE)
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, username)
        issued = account_codes.issue(session, user=user, purpose="enrol", actor=caller.user.username,
                                     actor_role=caller.user.role, source_ip=caller.source_ip, ttl=_ttl(body),
                                     clock=runtime.clock)
    return IssuedCodeRead(username=user.username, purpose="enrol", code=issued.code, expires_at=issued.expires_at)


@router.post("/users/{username}/mfa-reset", response_model=AccountState)
def mfa_reset(username: str, caller: Caller = Depends(get_caller),
              runtime: Runtime = Depends(get_runtime)) -> AccountState:
    """Remove the account's second factor and end every token and web session it has, at once."""
    _administrator(caller)
    require_step_up(runtime, caller, step_up.RESET_MFA)
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, username)
        ended = lifecycle.reset_mfa(session, user=user, actor=caller.user.username, actor_role=caller.user.role,
                                    source_ip=caller.source_ip, clock=runtime.clock)
        return AccountState(username=user.username, active=user.active, credentials_ended=ended)


@router.post("/users/{username}/deactivate", response_model=AccountState)
def deactivate(username: str, caller: Caller = Depends(get_caller),
               runtime: Runtime = Depends(get_runtime)) -> AccountState:
    """Switch the account off: no sign-in (password, token or SSO), every token and session ended.
    409 for the last active administrator."""
    _administrator(caller)
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, username)
        lifecycle.deactivate(session, user=user, actor=caller.user.username, actor_role=caller.user.role,
                             policy=caller.policy, source_ip=caller.source_ip, clock=runtime.clock)
        return AccountState(username=user.username, active=user.active)


@router.post("/users/{username}/reactivate", response_model=AccountState)
def reactivate(username: str, caller: Caller = Depends(get_caller),
               runtime: Runtime = Depends(get_runtime)) -> AccountState:
    """Let a deactivated account sign in again."""
    _administrator(caller)
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, username)
        lifecycle.reactivate(session, user=user, actor=caller.user.username, actor_role=caller.user.role,
                             source_ip=caller.source_ip, clock=runtime.clock)
        return AccountState(username=user.username, active=user.active)


@router.post("/users/{username}/password-reset", response_model=IssuedCodeRead)
def password_reset(username: str, body: CodeRequest | None = None, caller: Caller = Depends(get_caller),
                   runtime: Runtime = Depends(get_runtime)) -> IssuedCodeRead:
    """The old password stops working and every token and session ends; the one-time reset code returned
    lets the owner choose a new one (POST /api/v1/auth/password-reset, or the sign-in page's link)."""
    _administrator(caller)
    require_step_up(runtime, caller, step_up.RESET_PASSWORD)
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, username)
        issued = lifecycle.reset_password(session, user=user, actor=caller.user.username,
                                          actor_role=caller.user.role, source_ip=caller.source_ip, ttl=_ttl(body),
                                          clock=runtime.clock)
    return IssuedCodeRead(username=user.username, purpose="password", code=issued.code,
                          expires_at=issued.expires_at)
