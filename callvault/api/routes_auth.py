"""Sign-in for API clients: username + password → bearer token; who am I; acknowledge the policy."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from callvault.api.deps import Caller, bearer_token, get_caller, get_runtime, source_ip
from callvault.core.errors import AuthenticationFailed
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.policy.decide import allowed_purposes
from callvault.policy.loader import policy_to_json
from callvault.runtime import Runtime

router = APIRouter(tags=["auth"])


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class MeResponse(BaseModel):
    username: str
    role: str
    extension: str | None
    team: str | None
    policy_id: str
    policy_version: str
    policy_acknowledged: bool
    purposes: list[str]


@router.post("/auth/token", response_model=TokenResponse)
def create_token(body: TokenRequest, request: Request, runtime: Runtime = Depends(get_runtime)) -> TokenResponse:
    """Exchange a username and password for a bearer token (valid for the configured TTL)."""
    ip = source_ip(request)
    try:
        with runtime.db.unit_of_work() as session:
            user = identity.authenticate(session, username=body.username, password=body.password, source_ip=ip,
                                         clock=runtime.clock)
            issued = identity.issue_token(session, user=user, ttl_seconds=runtime.settings.token_ttl_seconds,
                                          clock=runtime.clock)
    except AuthenticationFailed:
        # The failed attempt must stay on record even though the request is refused.
        with runtime.db.unit_of_work() as session:
            identity.record_failed_sign_in(session, username=body.username, source_ip=ip, clock=runtime.clock)
        raise
    return TokenResponse(access_token=issued.token, expires_in=issued.expires_in)


@router.post("/auth/revoke", status_code=204)
def revoke(request: Request, runtime: Runtime = Depends(get_runtime), _caller: Caller = Depends(get_caller)) -> None:
    """Revoke the token used for this request."""
    with runtime.db.unit_of_work() as session:
        identity.revoke_token(session, token=bearer_token(request), clock=runtime.clock)


@router.get("/me", response_model=MeResponse)
def me(caller: Caller = Depends(get_caller)) -> MeResponse:
    """The signed-in user, the policy in force, and the purposes their role may name."""
    return MeResponse(
        username=caller.user.username, role=caller.user.role, extension=caller.user.extension, team=caller.user.team,
        policy_id=caller.policy.policy_id, policy_version=caller.policy.version,
        policy_acknowledged=caller.actor.acknowledged_policy_version == caller.policy.version,
        purposes=allowed_purposes(caller.policy, caller.user.role),
    )


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
