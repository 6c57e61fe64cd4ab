"""Single sign-on pages: "Sign in with SSO" sends the browser to the OpenID Connect provider, and the
callback turns its answer into the same server-side web session a password sign-in makes
(``callvault.identity.oidc`` holds the rules; docs/sso.md).

The flow is bound to the browser by a short-lived cookie holding ``state`` (SameSite=Lax: it must
come back on the provider's top-level redirect); the database row behind it makes any node able to
finish the flow. The callback answers with a tiny page that moves on to ``/`` itself, because a
SameSite=Strict session cookie set during a cross-site redirect chain is not sent on the next hop.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from callvault.api.deps import (
    SESSION_COOKIE,
    cookie_name,
    get_runtime,
    policy_in_force,
    read_cookie,
    secure_request,
    source_ip,
)
from callvault.core.errors import AuthenticationFailed, ConfigurationError, NotFound
from callvault.identity import oidc
from callvault.identity import sessions as web_sessions
from callvault.identity.counters import CountersUnavailable
from callvault.identity.service import UNAVAILABLE
from callvault.runtime import Runtime
from callvault.web.common import (
    SIGN_IN_UNAVAILABLE,
    delete_cookie,
    login_page,
    render,
    same,
    set_session_cookie,
)

router = APIRouter(include_in_schema=False)
log = logging.getLogger("callvault.web.sso")
FLOW_COOKIE = "cv_sso_state"
"""The sign-in's OIDC ``state``, for the provider's redirect back (SameSite=Lax: a top-level navigation from
the provider's site). Path=/ so that over HTTPS it can be ``__Host-`` prefixed like the session cookie."""


def provider_client(request: Request, runtime: Runtime) -> oidc.ProviderClient:
    """The app's provider client (its discovery/JWKS cache is per process; its flows are in the database)."""
    if runtime.settings.oidc is None:
        raise NotFound("single sign-on is not configured on this server")
    client: oidc.ProviderClient | None = getattr(request.app.state, "oidc_client", None)
    if client is None or client.settings != runtime.settings.oidc:
        client = oidc.ProviderClient(runtime.settings.oidc)
        request.app.state.oidc_client = client
    return client


def _redirect_uri(request: Request, runtime: Runtime) -> str:
    base = runtime.settings.env.get("CALLVAULT_PUBLIC_URL") or str(request.base_url)
    return base.rstrip("/") + "/login/sso/callback"


@router.get("/login/sso")
def sso_start(request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    client = provider_client(request, runtime)
    try:
        with runtime.db.unit_of_work() as session:
            start = oidc.begin(session, client=client, redirect_uri=_redirect_uri(request, runtime),
                               clock=runtime.clock)
    except ConfigurationError as exc:
        log.error("single sign-on unavailable: %s", exc.message)
        return login_page(request, "Single sign-on is unavailable right now: " + exc.message + ".", status_code=503)
    response = RedirectResponse(start.authorization_url, status_code=303)
    response.set_cookie(cookie_name(request, FLOW_COOKIE), start.state, httponly=True, samesite="lax",
                        secure=secure_request(request), path="/", max_age=int(oidc.FLOW_LIFETIME.total_seconds()))
    return response


@router.get("/login/sso/callback")
def sso_callback(request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    client = provider_client(request, runtime)
    params = request.query_params
    state, code = params.get("state", ""), params.get("code", "")
    ip = source_ip(request)
    try:
        error = params.get("error")
        if error:
            detail = params.get("error_description", "")[:200]
            raise oidc.SsoRefused(f"the identity provider did not sign you in ({error[:100]}"
                                  f"{': ' + detail if detail else ''})")
        if not state or not code:
            raise oidc.SsoRefused("the identity provider's answer is incomplete (no code or state)")
        if not same(state, read_cookie(request, FLOW_COOKIE) or ""):
            raise oidc.SsoRefused("this sign-in was not started in this browser; start again from the sign-in page")
        old_cookie = read_cookie(request, SESSION_COOKIE)
        # Three short transactions, none held open while the provider answers: claim the flow (committed
        # even if what follows fails: no second try with the same state), exchange and check, sign in.
        with runtime.db.unit_of_work() as session:
            flow = oidc.claim_flow(session, state=state, clock=runtime.clock)
        claims = oidc.exchange_code(client=client, flow=flow, code=code, clock=runtime.clock)
        with runtime.db.unit_of_work() as session:
            policy = policy_in_force(session, runtime.clock)
            result = oidc.finish(session, settings=client.settings, claims=claims, policy=policy, source_ip=ip,
                                 counters=runtime.counters, clock=runtime.clock)
            if old_cookie:  # never adopt a session the browser brought along (fixation)
                web_sessions.revoke(session, cookie=old_cookie, clock=runtime.clock)
            new = web_sessions.create(session, user=result.user, stage=result.stage, source_ip=ip,
                                      absolute_seconds=runtime.settings.session_absolute_seconds, clock=runtime.clock,
                                      first_factor="oidc")
    except AuthenticationFailed as exc:
        with runtime.db.unit_of_work() as session:
            oidc.record_refusal(session, reason=exc.message, source_ip=ip, clock=runtime.clock)
        response = login_page(request, "Single sign-on failed: " + exc.message + ".", status_code=401)
        delete_cookie(response, request, FLOW_COOKIE)
        return response
    except CountersUnavailable:  # the store logged why; the public page names no internals
        with runtime.db.unit_of_work() as session:
            oidc.record_refusal(session, reason=UNAVAILABLE, source_ip=ip, clock=runtime.clock)
        return login_page(request, SIGN_IN_UNAVAILABLE, status_code=503)
    except ConfigurationError as exc:
        log.error("single sign-on unavailable: %s", exc.message)
        return login_page(request, "Single sign-on is unavailable right now: " + exc.message + ".", status_code=503)
    target = {"full": "/", "mfa": "/mfa", "enrol": "/mfa/enrol"}[result.stage]
    response = render(request, "sso_continue.html", {"target": target})
    set_session_cookie(response, request, new.cookie)
    delete_cookie(response, request, FLOW_COOKIE)
    return response
