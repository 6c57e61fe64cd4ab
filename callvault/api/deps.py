"""Request-scoped dependencies: the runtime, the signed-in user, the caller's address."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request

from callvault.core.errors import AuthenticationFailed
from callvault.identity import service as identity
from callvault.identity.models import User
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.runtime import Runtime

SESSION_COOKIE = "cv_token"


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def source_ip(request: Request) -> str | None:
    # Trusted-proxy handling of X-Forwarded-For arrives with the access-control issue; until then the
    # socket peer is the only address we believe.
    return request.client.host if request.client else None


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie
    raise AuthenticationFailed("sign in first: send 'Authorization: Bearer TOKEN' (POST /api/v1/auth/token)")


@dataclass(frozen=True)
class Caller:
    """The signed-in user, the policy in force and the policy engine's view of the user."""

    user: User
    policy: PolicyDocument
    actor: Actor
    source_ip: str | None


def get_caller(request: Request, runtime: Runtime = Depends(get_runtime)) -> Caller:
    """Resolve the token in a short read-only transaction; handlers open their own unit of work,
    so that a denial can be committed to the audit log before the request is refused."""
    token = bearer_token(request)
    with runtime.db.unit_of_work() as session:
        user = identity.user_for_token(session, token, clock=runtime.clock)
        policy = policy_service.current_policy(session, clock=runtime.clock)
        actor = identity.actor_for(session, user, policy)
    return Caller(user=user, policy=policy, actor=actor, source_ip=source_ip(request))
