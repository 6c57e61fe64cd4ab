"""Sign-in for API clients (password + one-time code → bearer token), MFA set-up (with an administrator's
enrolment code), changing one's password, who am I, the policy, acknowledging it, and the administrators'
list of accounts (their account actions are in ``routes_users``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from callvault.api.deps import (
    SESSION_COOKIE,
    Caller,
    bearer_token,
    get_caller,
    get_enrolling_caller,
    get_runtime,
    policy_in_force,
    read_cookie,
    source_ip,
)
from callvault.audit import service as audit
from callvault.core.errors import AccessDenied, AuthenticationFailed
from callvault.identity import lifecycle, mfa, preferences, step_up
from callvault.identity import service as identity
from callvault.identity import sessions as web_sessions
from callvault.identity.counters import CountersUnavailable
from callvault.policy import service as policy_service
from callvault.policy.decide import allowed_purposes, has_acknowledged
from callvault.policy.loader import policy_to_json
from callvault.runtime import Runtime

router = APIRouter(tags=["auth"])
ENROL_TOKEN_SECONDS = 600
ENROL_MESSAGE = ("the policy requires MFA for this account and none is set up: ask an administrator for a one-time "
                 "enrolment code, then POST it as enrolment_code to /api/v1/me/mfa/enrol and /api/v1/me/mfa/confirm")


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    otp: str | None = Field(default=None, max_length=32,
                            description="the 6-digit code from the authenticator app, or a recovery code")


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    scope: str = identity.FULL_SCOPE
    mfa_enrolment_required: bool = False
    """True: this token can only set up MFA (POST /me/mfa/enrol, /me/mfa/confirm); then sign in again."""
    message: str = ""
    """What to do next, when there is something (MFA set-up needs an administrator's enrolment code)."""


class MeResponse(BaseModel):
    username: str
    role: str
    extension: str | None
    team: str | None
    policy_id: str
    policy_version: str
    policy_acknowledged: bool
    purposes: list[str]
    mfa_enrolled: bool
    scopes: list[str]
    timezone: str | None = Field(description="the zone pages show times in (IANA name); null: the policy's zone")


class TimezoneChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timezone: str = Field(max_length=200, description="an IANA zone name (America/Toronto); empty: the policy's zone")


class TimezoneRead(BaseModel):
    timezone: str | None


class EnrolmentResponse(BaseModel):
    secret: str
    provisioning_uri: str


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enrolment_code: str = Field(default="", max_length=64,
                                description="the one-time enrolment code an administrator issued for this account")


class ConfirmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=6, max_length=32)
    enrolment_code: str = Field(default="", max_length=64, description="the same enrolment code as for /enrol")


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)
    otp: str | None = Field(default=None, max_length=32, description="a one-time code, when MFA is set up")


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    reset_code: str = Field(min_length=1, max_length=64, description="the code from the administrator's reset")
    new_password: str = Field(min_length=1, max_length=1024)
    otp: str | None = Field(default=None, max_length=32, description="a one-time code, when MFA is set up")


class RecoveryCodes(BaseModel):
    recovery_codes: list[str]
    """Shown once; each works once in place of a one-time code."""


class UserRead(BaseModel):
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


@router.post("/auth/token", response_model=TokenResponse)
def create_token(body: TokenRequest, request: Request, runtime: Runtime = Depends(get_runtime)) -> TokenResponse:
    """Exchange a username, password and (when MFA is set up) a one-time code for a bearer token.

    Wrong or unknown credentials, a wrong one-time code, or none where MFA is set up: 401 with one message
    (naming ``otp``), so the answer never confirms a password. Repeated failures lock the account name
    and the address for a while (401 saying until when).
    The role needs MFA and none is set up: a 10-minute token that can only set it up. The guessing
    counters cannot be read (Redis down): 503, and nobody is let in.
    """
    ip = source_ip(request)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_in_force(session, runtime.clock)
            result = identity.sign_in(session, username=body.username, password=body.password, otp=body.otp,
                                      policy=policy, keyring=runtime.keyring, source_ip=ip, counters=runtime.counters,
                                      clock=runtime.clock)
            if result.stage == "full":
                issued = identity.issue_token(session, user=result.user,
                                              ttl_seconds=runtime.settings.token_ttl_seconds, clock=runtime.clock)
            elif result.stage == "enrol":
                issued = identity.issue_token(session, user=result.user, ttl_seconds=ENROL_TOKEN_SECONDS,
                                              name="mfa-enrolment", scopes=(identity.ENROL_SCOPE,),
                                              clock=runtime.clock)
    except AuthenticationFailed as exc:
        # The failed attempt must stay on record (and count towards lockout) though the request is refused.
        with runtime.db.unit_of_work() as session:
            identity.record_failed_sign_in(session, username=body.username, source_ip=ip, reason=exc.reason,
                                           counters=runtime.counters, clock=runtime.clock)
        raise
    except CountersUnavailable:
        # Fail closed: no counter, no password check. On record (not counted), then 503 (api.errors logs it).
        with runtime.db.unit_of_work() as session:
            identity.record_failed_sign_in(session, username=body.username, source_ip=ip, reason=identity.UNAVAILABLE,
                                           counters=runtime.counters, count=False, clock=runtime.clock)
        raise
    if result.stage == "mfa":  # the same words as a wrong password: anything else confirms the password
        raise AuthenticationFailed(identity.WRONG_CREDENTIALS, reason=identity.CODE_OWED)
    if result.stage == "enrol":
        return TokenResponse(access_token=issued.token, expires_in=issued.expires_in, scope=identity.ENROL_SCOPE,
                             mfa_enrolment_required=True, message=ENROL_MESSAGE)
    return TokenResponse(access_token=issued.token, expires_in=issued.expires_in)


@router.post("/auth/revoke", status_code=204)
def revoke(request: Request, runtime: Runtime = Depends(get_runtime),
           caller: Caller = Depends(get_enrolling_caller)) -> None:
    """Revoke the credential used for this request (the token, or the web session); effective at once."""
    with runtime.db.unit_of_work() as session:
        token = bearer_token(request)
        if token is not None:
            identity.revoke_token(session, token=token, clock=runtime.clock)
        else:
            web_sessions.revoke(session, cookie=read_cookie(request, SESSION_COOKIE) or "", clock=runtime.clock)
        audit.append(session, audit.AuditEvent(
            actor=caller.user.username, actor_role=caller.user.role, action="auth.sign_out",
            object_type="api_token" if token else "web_session", object_id=caller.credential_id,
            source_ip=caller.source_ip), clock=runtime.clock)


class StepUpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=6, max_length=32,
                      description="the current 6-digit code from the authenticator app, or a recovery code")


@router.post("/auth/step-up", status_code=204)
def confirm_step_up(body: StepUpRequest, runtime: Runtime = Depends(get_runtime),
                    caller: Caller = Depends(get_caller)) -> None:
    """Re-confirm the authenticator code on this token or session: downloads need one from the last
    ``CALLVAULT_STEP_UP_SECONDS`` (default 5 minutes). A wrong code is 401 and counts towards the
    sign-in guessing limits."""
    with runtime.db.unit_of_work() as session:
        ok = step_up.confirm(session, user=caller.user, via=caller.via, credential_id=caller.credential_id,
                             code=body.code, keyring=runtime.keyring, counters=runtime.counters,
                             source_ip=caller.source_ip, clock=runtime.clock)
    if not ok:
        raise step_up.refuse()


@router.get("/me", response_model=MeResponse)
def me(caller: Caller = Depends(get_enrolling_caller), runtime: Runtime = Depends(get_runtime)) -> MeResponse:
    """The signed-in user, the policy in force, and the purposes their role may name."""
    with runtime.db.unit_of_work() as session:
        enrolled = mfa.is_enrolled(session, caller.user)
    return MeResponse(
        username=caller.user.username, role=caller.user.role, extension=caller.user.extension, team=caller.user.team,
        policy_id=caller.policy.policy_id, policy_version=caller.policy.version,
        policy_acknowledged=has_acknowledged(caller.policy, caller.actor),
        purposes=allowed_purposes(caller.policy, caller.user.role), mfa_enrolled=enrolled,
        scopes=sorted(caller.scopes), timezone=caller.user.timezone,
    )


@router.put("/me/timezone", response_model=TimezoneRead)
def set_my_timezone(body: TimezoneChange, caller: Caller = Depends(get_caller),
                    runtime: Runtime = Depends(get_runtime)) -> TimezoneRead:
    """Your own time zone, kept on your account (the account page's setting): every page's times and the
    search's dates use it. Empty goes back to the policy's zone; a name that is not an IANA zone is 422."""
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, caller.user.username)
        zone = preferences.set_timezone(session, user=user, zone=body.timezone, source_ip=caller.source_ip,
                                        clock=runtime.clock)
    return TimezoneRead(timezone=zone)


@router.post("/me/mfa/enrol", response_model=EnrolmentResponse)
def mfa_enrol(body: EnrolRequest | None = None, caller: Caller = Depends(get_enrolling_caller),
              runtime: Runtime = Depends(get_runtime)) -> EnrolmentResponse:
    """Start MFA set-up with an administrator's one-time enrolment code: a new secret, shown once, and the
    otpauth:// URI for an authenticator app. Without a good code: 422 naming ``enrolment_code``."""
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, caller.user.username)
        enrolment = mfa.begin_enrolment(session, user=user, keyring=runtime.keyring,
                                        enrolment_code=body.enrolment_code if body else "", clock=runtime.clock)
    return EnrolmentResponse(secret=enrolment.secret, provisioning_uri=enrolment.provisioning_uri)


@router.post("/me/mfa/confirm", response_model=RecoveryCodes)
def mfa_confirm(body: ConfirmRequest, request: Request, caller: Caller = Depends(get_enrolling_caller),
                runtime: Runtime = Depends(get_runtime)) -> RecoveryCodes:
    """Finish MFA set-up with a code from the app and the enrolment code (spent here); returns recovery
    codes once. Then sign in again."""
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, caller.user.username)
        codes = mfa.confirm_enrolment(session, user=user, code=body.code, keyring=runtime.keyring,
                                      enrolment_code=body.enrolment_code, source_ip=caller.source_ip,
                                      clock=runtime.clock)
        token = bearer_token(request)
        if token is not None and identity.ENROL_SCOPE in caller.scopes:
            identity.revoke_token(session, token=token, clock=runtime.clock)
    return RecoveryCodes(recovery_codes=codes)


@router.post("/me/password", status_code=204)
def change_password(body: PasswordChange, caller: Caller = Depends(get_caller),
                    runtime: Runtime = Depends(get_runtime)) -> None:
    """Change your own password: the current one and (MFA set up) a one-time code. Every other token and
    web session of the account ends; the one used here goes on. Problems: 422 naming the field. A wrong
    current password or code counts towards the sign-in guessing limits, so after five the change (and
    sign-in from this address) is refused for a while, with the message sign-in gives."""
    lifecycle.change_password(
        runtime.db, username=caller.user.username, current_password=body.current_password,
        new_password=body.new_password, otp=body.otp, keyring=runtime.keyring, counters=runtime.counters,
        source_ip=caller.source_ip, clock=runtime.clock,
        keep_token_id=caller.credential_id if caller.via == "token" else None,
        keep_session_id=caller.credential_id if caller.via == "session" else None)


@router.post("/auth/password-reset", status_code=204)
def reset_password(body: PasswordReset, request: Request, runtime: Runtime = Depends(get_runtime)) -> None:
    """Choose a new password with the one-time reset code an administrator's reset issued (and a one-time
    code when MFA is set up). No sign-in needed; then sign in with the new password. A wrong one-time code
    counts towards the sign-in guessing limits."""
    lifecycle.set_password_with_code(
        runtime.db, username=body.username, reset_code=body.reset_code, new_password=body.new_password,
        otp=body.otp, keyring=runtime.keyring, counters=runtime.counters, source_ip=source_ip(request),
        clock=runtime.clock)


@router.post("/me/acknowledge-policy", status_code=204)
def acknowledge(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> None:
    """Acknowledge the policy version in force (required before any recording can be reached)."""
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, caller.user.username)
        identity.acknowledge_policy(session, user=user, policy=caller.policy, source_ip=caller.source_ip,
                                    clock=runtime.clock)


@router.get("/policy")
def effective_policy(
    caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)
) -> dict[str, object]:
    """The policy in force, machine-readable (roles, purposes, approvers, retention...)."""
    with runtime.db.unit_of_work() as session:
        row = policy_service.current_version(session, clock=runtime.clock)
    return {"sha256": row.sha256, "effective_from": row.effective_from.isoformat(),
            "policy": policy_to_json(caller.policy)}


@router.get("/users", response_model=list[UserRead])
def list_users(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> list[UserRead]:
    """Every account with its acknowledgement of the policy in force and MFA state (administrators)."""
    role = caller.policy.roles.get(caller.user.role)
    if role is None or not role.can_administer:
        raise AccessDenied(f"role {caller.user.role} does not administer accounts")
    with runtime.db.unit_of_work() as session:
        rows = identity.list_users(session, policy=caller.policy, counters=runtime.counters, clock=runtime.clock)
    return [UserRead(**row.__dict__) for row in rows]
