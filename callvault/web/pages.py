"""Server-rendered pages over the same services as the JSON API: sign-in, the acknowledgement gate,
the home page and the public notice here; the other areas in ``*_pages.py`` (see docs/web.md).

Sign-in: password (the form carries a double-submit CSRF token, so nobody can sign a browser into
an account of theirs), then the one-time code (or, when the role needs MFA and the account has none,
MFA set-up, which starts with a one-time enrolment code an administrator issued). Each step starts a
brand-new server-side session (``identity.sessions``) carried in an HttpOnly, SameSite=Strict cookie,
``__Host-`` prefixed and Secure over HTTPS (``api.deps.HOST_PREFIX``).
Every state-changing form carries the session's CSRF token and is refused without it.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callvault.api.deps import (
    SESSION_COOKIE,
    Caller,
    get_runtime,
    policy_in_force,
    read_cookie,
    resolve_caller,
    source_ip,
)
from callvault.core.errors import AccessDenied, AuthenticationFailed, InvalidInput
from callvault.identity import account_codes, mfa
from callvault.identity import service as identity
from callvault.identity import sessions as web_sessions
from callvault.identity.counters import CountersUnavailable
from callvault.identity.models import User, WebSession
from callvault.policy import service as policy_service
from callvault.policy.decide import has_acknowledged
from callvault.runtime import Runtime
from callvault.web import (
    access_pages,
    account_pages,
    admin_pages,
    alarm_pages,
    casework_pages,
    demo_pages,
    emergency_pages,
    home_pages,
    incident_pages,
    integrations_pages,
    live_pages,
    mine_pages,
    oversight_pages,
    quality_pages,
    recording_pages,
    requests_pages,
    sso_pages,
)
from callvault.web.common import (
    PRELOGIN_COOKIE,
    SIGN_IN_UNAVAILABLE,
    STATIC_DIR,
    delete_cookie,
    local_next,
    login_page,
    render,
    same,
    set_session_cookie,
    templates,
)

__all__ = ["STATIC_DIR", "router"]

router = APIRouter(include_in_schema=False)


def record_unavailable(runtime: Runtime, *, username: str, ip: str | None) -> None:
    """Put a sign-in refused for want of counters on record (not counted); the store already logged why."""
    with runtime.db.unit_of_work() as session:
        identity.record_failed_sign_in(session, username=username, source_ip=ip, reason=identity.UNAVAILABLE,
                                       counters=runtime.counters, count=False, clock=runtime.clock)



def _optional_caller(request: Request, runtime: Runtime = Depends(get_runtime)) -> Caller | None:
    if not read_cookie(request, SESSION_COOKIE):
        return None
    try:
        return resolve_caller(request, runtime)
    except (AuthenticationFailed, AccessDenied):
        return None


def _half_session(request: Request, runtime: Runtime, stage: str) -> tuple[WebSession, User] | None:
    """The half-signed-in session (password done, second factor or MFA set-up owed) at ``stage``."""
    cookie = read_cookie(request, SESSION_COOKIE) or ""
    with runtime.db.unit_of_work() as session:
        row = web_sessions.resolve(session, cookie=cookie, idle_seconds=runtime.settings.session_idle_seconds,
                                   clock=runtime.clock)
        if row is None or row.stage != stage:
            return None
        user = session.get(User, row.user_id)
        if user is None or not user.active:
            return None
        session.expunge(row)
        session.expunge(user)
        return row, user


def _pending_redirect(request: Request, runtime: Runtime) -> Response | None:
    for stage, path in (("mfa", "/mfa"), ("enrol", "/mfa/enrol")):
        if _half_session(request, runtime, stage) is not None:
            return RedirectResponse(path, status_code=303)
    return None


@router.get("/", response_class=HTMLResponse)
def home(request: Request, caller: Caller | None = Depends(_optional_caller),
         runtime: Runtime = Depends(get_runtime)) -> Response:
    if caller is None:
        if read_cookie(request, SESSION_COOKIE):
            pending = _pending_redirect(request, runtime)
            if pending is not None:
                return pending
        return login_page(request, None)
    if not has_acknowledged(caller.policy, caller.actor):
        return render(request, "acknowledge.html", {"caller": caller, "policy": caller.policy,
                                                    "next": local_next(request.query_params.get("next"))})
    target = local_next(request.query_params.get("next"))
    if target != "/":  # signed in (or acknowledged) on the way to the page that was asked for
        return RedirectResponse(target, status_code=303)
    return home_pages.dashboard(request, caller, runtime)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()],
          csrf_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "",
          runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, read_cookie(request, PRELOGIN_COOKIE) or ""):
        return login_page(request, "The sign-in form expired; please try again.", status_code=403)
    ip = source_ip(request)
    old_cookie = read_cookie(request, SESSION_COOKIE)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_in_force(session, runtime.clock)
            result = identity.sign_in(session, username=username, password=password, otp=None, policy=policy,
                                      keyring=runtime.keyring, source_ip=ip, counters=runtime.counters,
                                      clock=runtime.clock)
            if old_cookie:  # never adopt a session the browser brought along (fixation)
                web_sessions.revoke(session, cookie=old_cookie, clock=runtime.clock)
            new = web_sessions.create(session, user=result.user, stage=result.stage, source_ip=ip,
                                      absolute_seconds=runtime.settings.session_absolute_seconds,
                                      clock=runtime.clock)
    except AuthenticationFailed as exc:
        try:
            with runtime.db.unit_of_work() as session:
                identity.record_failed_sign_in(session, username=username, source_ip=ip, reason=exc.reason,
                                               counters=runtime.counters, clock=runtime.clock)
        except CountersUnavailable:
            return login_page(request, SIGN_IN_UNAVAILABLE, status_code=503)
        message = exc.message[:1].upper() + exc.message[1:] + "."
        return login_page(request, message, status_code=401)
    except CountersUnavailable:
        record_unavailable(runtime, username=username, ip=ip)
        return login_page(request, SIGN_IN_UNAVAILABLE, status_code=503)
    target = {"full": "/", "mfa": "/mfa", "enrol": "/mfa/enrol"}[result.stage]
    if (after := local_next(next)) != "/":  # only a path on this site: never an open redirect
        target += "?" + urlencode({"next": after})
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, new.cookie)
    delete_cookie(response, request, PRELOGIN_COOKIE)
    return response


@router.get("/mfa", response_class=HTMLResponse)
def mfa_page(request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    half = _half_session(request, runtime, "mfa")
    if half is None:
        return RedirectResponse("/", status_code=303)
    return templates.TemplateResponse(request, "mfa.html", {"error": None, "csrf_token": half[0].csrf_token,
                                                            "next": local_next(request.query_params.get("next"))})


@router.post("/mfa", response_class=HTMLResponse)
def mfa_submit(request: Request, code: Annotated[str, Form()], csrf_token: Annotated[str, Form()] = "",
               next: Annotated[str, Form()] = "",
               runtime: Runtime = Depends(get_runtime)) -> Response:
    half = _half_session(request, runtime, "mfa")
    if half is None:
        return RedirectResponse("/", status_code=303)
    ws, user = half
    if not same(csrf_token, ws.csrf_token):
        return templates.TemplateResponse(request, "mfa.html", {"error": "The form expired; please try again.",
                                                                "csrf_token": ws.csrf_token}, status_code=403)
    ip = source_ip(request)
    try:
        with runtime.db.unit_of_work() as session:
            identity.complete_mfa(session, user=user, code=code, keyring=runtime.keyring, source_ip=ip,
                                  counters=runtime.counters,
                                  clock=runtime.clock, first_factor=ws.first_factor)
            row = session.get(WebSession, ws.id)
            assert row is not None
            new = web_sessions.rotate(session, old=row, user=user, stage="full", source_ip=ip,
                                      absolute_seconds=runtime.settings.session_absolute_seconds, clock=runtime.clock)
    except AuthenticationFailed as exc:
        try:
            with runtime.db.unit_of_work() as session:
                identity.record_failed_sign_in(session, username=user.username, source_ip=ip, reason=exc.reason,
                                               counters=runtime.counters, clock=runtime.clock)
                if isinstance(exc, identity.SignInLocked):
                    web_sessions.revoke(session, cookie=read_cookie(request, SESSION_COOKIE) or "",
                                        clock=runtime.clock)
        except CountersUnavailable:
            return templates.TemplateResponse(request, "mfa.html", {
                "error": SIGN_IN_UNAVAILABLE, "csrf_token": ws.csrf_token}, status_code=503)
        return templates.TemplateResponse(request, "mfa.html", {
            "error": exc.message[:1].upper() + exc.message[1:] + ".", "csrf_token": ws.csrf_token}, status_code=401)
    except CountersUnavailable:
        record_unavailable(runtime, username=user.username, ip=ip)
        return templates.TemplateResponse(request, "mfa.html", {
            "error": SIGN_IN_UNAVAILABLE, "csrf_token": ws.csrf_token}, status_code=503)
    after = local_next(next)
    response = RedirectResponse("/" if after == "/" else "/?" + urlencode({"next": after}), status_code=303)
    set_session_cookie(response, request, new.cookie)
    return response


def _enrol_page(request: Request, ws: WebSession, *, error: str | None = None, enrolment: mfa.Enrolment | None = None,
                enrolment_code: str = "", status_code: int = 200) -> Response:
    return templates.TemplateResponse(request, "mfa_enrol.html", {
        "error": error, "csrf_token": ws.csrf_token, "enrolment": enrolment, "enrolment_code": enrolment_code},
        status_code=status_code)


@router.get("/mfa/enrol", response_class=HTMLResponse)
def mfa_enrol_page(request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    """MFA set-up, first step: the administrator's one-time enrolment code (the password alone never
    reaches a secret: issue 24 point 7)."""
    half = _half_session(request, runtime, "enrol")
    if half is None:
        return RedirectResponse("/", status_code=303)
    return _enrol_page(request, half[0])


@router.post("/mfa/enrol/start", response_class=HTMLResponse)
def mfa_enrol_start(request: Request, enrolment_code: Annotated[str, Form()] = "",
                    csrf_token: Annotated[str, Form()] = "", runtime: Runtime = Depends(get_runtime)) -> Response:
    """A good enrolment code shows the secret (the one already being set up, so a typo needs no re-scan)."""
    half = _half_session(request, runtime, "enrol")
    if half is None:
        return RedirectResponse("/", status_code=303)
    ws, user = half
    if not same(csrf_token, ws.csrf_token):
        return _enrol_page(request, ws, error="The form expired; please try again.", status_code=403)
    try:
        with runtime.db.unit_of_work() as session:
            fresh = session.get(User, user.id)
            assert fresh is not None
            account_codes.require(session, user=fresh, purpose="enrol", code=enrolment_code,
                                  field=mfa.ENROLMENT_CODE_FIELD, clock=runtime.clock)
            enrolment = mfa.pending_enrolment(session, user=fresh, keyring=runtime.keyring) or mfa.begin_enrolment(
                session, user=fresh, keyring=runtime.keyring, enrolment_code=enrolment_code, clock=runtime.clock)
    except InvalidInput as exc:
        return _enrol_page(request, ws, error=_sentence(exc), status_code=422)
    response = _enrol_page(request, ws, enrolment=enrolment, enrolment_code=enrolment_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def _sentence(exc: InvalidInput) -> str:
    detail = exc.problems[0].message if exc.problems else exc.message
    return detail[:1].upper() + detail[1:] + "."


@router.post("/mfa/enrol", response_class=HTMLResponse)
def mfa_enrol_submit(request: Request, code: Annotated[str, Form()], enrolment_code: Annotated[str, Form()] = "",
                     csrf_token: Annotated[str, Form()] = "", runtime: Runtime = Depends(get_runtime)) -> Response:
    half = _half_session(request, runtime, "enrol")
    if half is None:
        return RedirectResponse("/", status_code=303)
    ws, user = half
    ip = source_ip(request)
    error = None if same(csrf_token, ws.csrf_token) else "The form expired; please try again."
    if error is None:
        try:
            with runtime.db.unit_of_work() as session:
                fresh = session.get(User, user.id)
                assert fresh is not None
                codes = mfa.confirm_enrolment(session, user=fresh, code=code, keyring=runtime.keyring, source_ip=ip,
                                              enrolment_code=enrolment_code, clock=runtime.clock)
                identity.record_sign_in(session, user=fresh, source_ip=ip, counters=runtime.counters,
                                        method=f"{ws.first_factor}+totp (enrolment)", clock=runtime.clock)
                row = session.get(WebSession, ws.id)
                assert row is not None
                new = web_sessions.rotate(session, old=row, user=fresh, stage="full", source_ip=ip,
                                          absolute_seconds=runtime.settings.session_absolute_seconds,
                                          clock=runtime.clock)
        except InvalidInput as exc:
            error = _sentence(exc)
        except CountersUnavailable:
            error = SIGN_IN_UNAVAILABLE  # nothing was committed: the same code works once the store is back
    if error is not None:
        with runtime.db.unit_of_work() as session:
            # The secret is shown again only while the enrolment code is still good.
            good = account_codes.find(session, user=user, purpose="enrol", code=enrolment_code, clock=runtime.clock)
            enrolment = mfa.pending_enrolment(session, user=user, keyring=runtime.keyring) if good else None
        return _enrol_page(request, ws, error=error, enrolment=enrolment,
                           enrolment_code=enrolment_code if enrolment else "",
                           status_code=503 if error == SIGN_IN_UNAVAILABLE else 422)
    response = templates.TemplateResponse(request, "mfa_recovery.html", {"codes": codes})
    response.headers["Cache-Control"] = "no-store"
    set_session_cookie(response, request, new.cookie)
    return response


def _web_caller(request: Request, runtime: Runtime = Depends(get_runtime)) -> Caller:
    """A fully signed-in web user whose form carries the session's CSRF token (checked by the handler)."""
    return resolve_caller(request, runtime)


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str, Form()] = "",
           runtime: Runtime = Depends(get_runtime)) -> Response:
    cookie = read_cookie(request, SESSION_COOKIE)
    if cookie:
        with runtime.db.unit_of_work() as session:
            row = web_sessions.resolve(session, cookie=cookie, idle_seconds=runtime.settings.session_idle_seconds,
                                       clock=runtime.clock)
            if row is None or not same(csrf_token, row.csrf_token):
                return Response("The form expired; reload the page and try again.", status_code=403)
            web_sessions.revoke(session, cookie=cookie, clock=runtime.clock)
    response = RedirectResponse("/", status_code=303)
    delete_cookie(response, request, SESSION_COOKIE)
    return response


@router.post("/acknowledge")
def acknowledge(csrf_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "",
                caller: Caller = Depends(_web_caller),
                runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return Response("The form expired; reload the page and try again.", status_code=403)
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, caller.user.username)
        identity.acknowledge_policy(session, user=user, policy=caller.policy, source_ip=caller.source_ip,
                                    clock=runtime.clock)
    return RedirectResponse(local_next(next), status_code=303)


@router.get("/notice", response_class=HTMLResponse)
def public_notice(request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    """The public recording notice (B2), linked from a website's 'Contact us' page. No sign-in."""
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
    return templates.TemplateResponse(request, "notice.html", {"policy": policy})


for _module in (alarm_pages, emergency_pages, recording_pages, access_pages, oversight_pages, casework_pages,
                requests_pages, quality_pages, integrations_pages, sso_pages, live_pages, admin_pages, demo_pages,
                mine_pages, account_pages):
    # admin_pages before account_pages: its /admin/users/{name}/profile must not reach the {action} route.
    router.include_router(_module.router)
router.include_router(incident_pages.router)  # /compliance/incidents: no path shared with the others
