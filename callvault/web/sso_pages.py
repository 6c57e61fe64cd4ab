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
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from callvault.api.deps import (
    SESSION_COOKIE,
    Caller,
    cookie_name,
    get_runtime,
    policy_in_force,
    read_cookie,
    secure_request,
    source_ip,
)
from callvault.core.errors import AuthenticationFailed, ConfigurationError, FieldProblem, NotFound
from callvault.identity import mfa, oidc
from callvault.identity import sessions as web_sessions
from callvault.identity.counters import CountersUnavailable
from callvault.identity.models import OidcIdentity, WebSession
from callvault.identity.service import UNAVAILABLE
from callvault.runtime import Runtime
from callvault.web.common import (
    SIGN_IN_UNAVAILABLE,
    account_zone,
    all_zones,
    delete_cookie,
    denied,
    form_expired,
    login_page,
    page_caller,
    policy_zones,
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
        if flow.link_user_id is not None:  # the owner, signed in locally, links their account: no sign-in
            with runtime.db.unit_of_work() as session:
                oidc.link_owner(session, settings=client.settings, claims=claims, flow=flow, source_ip=ip,
                                clock=runtime.clock)
            response = render(request, "sso_continue.html", {"target": "/account?linked=1", "linked": True})
            delete_cookie(response, request, FLOW_COOKIE)
            return response
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


def _local_full_session(request: Request, runtime: Runtime) -> WebSession | None:
    """The browser's web session when it is fully signed in through callvault's own password (and TOTP):
    the proof of ownership a link needs. An SSO session cannot link another provider account."""
    cookie = read_cookie(request, SESSION_COOKIE)
    if not cookie:
        return None
    with runtime.db.unit_of_work() as session:
        row = web_sessions.resolve(session, cookie=cookie, idle_seconds=runtime.settings.session_idle_seconds,
                                   clock=runtime.clock)
        if row is None or row.stage != "full" or row.first_factor != "password":
            return None
        session.expunge(row)
        return row


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, caller: Caller = Depends(page_caller),
            runtime: Runtime = Depends(get_runtime)) -> Response:
    """Your account: your password, which identity-provider accounts reach it, and (signed in with your
    password) linking one."""
    return account_page(request, caller, runtime)


def account_page(request: Request, caller: Caller, runtime: Runtime, *,
                 password_problems: list[FieldProblem] | None = None,
                 timezone_problems: list[FieldProblem] | None = None, timezone_typed: str | None = None,
                 status_code: int = 200) -> Response:
    """The account page, with a refused form's problems (password, time zone: ``account_pages``)."""
    with runtime.db.unit_of_work() as session:
        linked = [(i.issuer, i.subject, i.linked_via, i.created_at) for i in session.scalars(
            select(OidcIdentity).where(OidcIdentity.user_id == caller.user.id).order_by(OidcIdentity.issuer))]
        enrolled = mfa.is_enrolled(session, caller.user)
    return render(request, "account.html", {
        "caller": caller, "linked": linked, "sso": runtime.settings.oidc is not None,
        "can_link": _local_full_session(request, runtime) is not None,
        "just_linked": request.query_params.get("linked") == "1", "mfa_enrolled": enrolled,
        "password_problems": password_problems or [], "timezone_problems": timezone_problems or [],
        "timezone_typed": timezone_typed if timezone_typed is not None else (caller.user.timezone or ""),
        "policy_zone": policy_zones(caller.policy)[0], "zones": all_zones(),
        "shown_zone": account_zone(caller).key, "done": request.query_params.get("done"),
        "password_changed": request.query_params.get("done") == "password-changed"}, status_code=status_code)


@router.post("/account/sso/link")
def account_sso_link(request: Request, csrf_token: Annotated[str, Form()] = "",
                     caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """Start a flow that links the provider account signed in at the provider to this (local) account."""
    client = provider_client(request, runtime)
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    own = _local_full_session(request, runtime)
    if own is None or own.user_id != caller.user.id:
        return denied(request, caller, "Linking single sign-on needs a sign-in with your callvault password and "
                      "one-time code in this browser; sign out, sign in with your password, and try again.")
    try:
        with runtime.db.unit_of_work() as session:
            start = oidc.begin(session, client=client, redirect_uri=_redirect_uri(request, runtime),
                               clock=runtime.clock, link_user_id=caller.user.id)
    except ConfigurationError as exc:
        log.error("single sign-on unavailable: %s", exc.message)
        return denied(request, caller, "Single sign-on is unavailable right now: " + exc.message + ".")
    response = RedirectResponse(start.authorization_url, status_code=303)
    response.set_cookie(cookie_name(request, FLOW_COOKIE), start.state, httponly=True, samesite="lax",
                        secure=secure_request(request), path="/", max_age=int(oidc.FLOW_LIFETIME.total_seconds()))
    return response
