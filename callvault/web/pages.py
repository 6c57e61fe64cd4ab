"""Server-rendered pages over the same services as the JSON API (sign-in, search, detail, player).

The session is the same bearer token as the API, carried in an HttpOnly, SameSite=Strict cookie;
the full web application (MFA step, CSRF tokens, waveform player) grows from here.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from callvault.api.deps import SESSION_COOKIE, Caller, get_caller, get_runtime, source_ip
from callvault.core.errors import AuthenticationFailed, CallvaultError
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.policy.decide import allowed_purposes
from callvault.recordings import service as recordings
from callvault.recordings.schemas import RecordingFilters
from callvault.runtime import Runtime

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
STATIC_DIR = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)


def _optional_caller(request: Request, runtime: Runtime = Depends(get_runtime)) -> Caller | None:
    if not request.cookies.get(SESSION_COOKIE):
        return None
    try:
        return get_caller(request, runtime)
    except AuthenticationFailed:
        return None


@router.get("/", response_class=HTMLResponse)
def home(request: Request, caller: Caller | None = Depends(_optional_caller),
         runtime: Runtime = Depends(get_runtime)) -> Response:
    if caller is None:
        return templates.TemplateResponse(request, "login.html", {"error": None})
    if caller.actor.acknowledged_policy_version != caller.policy.version:
        return templates.TemplateResponse(request, "acknowledge.html", {"caller": caller, "policy": caller.policy})
    q = request.query_params
    error = None
    rows: list[object] = []
    next_cursor = None
    try:
        filters = RecordingFilters(
            extension=q.get("extension") or None, agent=q.get("agent") or None, team=q.get("team") or None,
            direction=q.get("direction") or None,
            remote_number=q.get("remote_number") or None, local_number=q.get("local_number") or None,
            started_from=datetime.fromisoformat(q["started_from"]) if q.get("started_from") else None,
            started_to=datetime.fromisoformat(q["started_to"]) if q.get("started_to") else None,
        )
        with runtime.db.unit_of_work() as session:
            found, next_cursor = recordings.search(session, policy=caller.policy, actor=caller.actor,
                                                   filters=filters, limit=50, cursor=q.get("cursor") or None,
                                                   default_region=runtime.settings.default_region)
            rows = list(found)
    except (CallvaultError, ValueError) as exc:
        error = getattr(exc, "message", None) or f"invalid filter: {exc}"
    return templates.TemplateResponse(request, "recordings.html", {
        "caller": caller, "rows": rows, "next_cursor": next_cursor, "q": q, "error": error})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()],
          runtime: Runtime = Depends(get_runtime)) -> Response:
    ip = source_ip(request)
    try:
        with runtime.db.unit_of_work() as session:
            user = identity.authenticate(session, username=username, password=password, source_ip=ip,
                                         clock=runtime.clock)
            issued = identity.issue_token(session, user=user, ttl_seconds=runtime.settings.token_ttl_seconds,
                                          name="web", clock=runtime.clock)
    except AuthenticationFailed:
        with runtime.db.unit_of_work() as session:
            identity.record_failed_sign_in(session, username=username, source_ip=ip, clock=runtime.clock)
        return templates.TemplateResponse(request, "login.html", {"error": "Wrong username or password."},
                                          status_code=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, issued.token, max_age=issued.expires_in, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout")
def logout(request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with runtime.db.unit_of_work() as session:
            identity.revoke_token(session, token=token, clock=runtime.clock)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/acknowledge")
def acknowledge(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, caller.user.username)
        identity.acknowledge_policy(session, user=user, policy=caller.policy, source_ip=caller.source_ip,
                                    clock=runtime.clock)
    return RedirectResponse("/", status_code=303)


@router.get("/recordings/{recording_id}", response_class=HTMLResponse)
def recording_page(recording_id: str, request: Request, caller: Caller = Depends(get_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    with runtime.db.unit_of_work() as session:
        row = recordings.get_visible(session, policy=caller.policy, actor=caller.actor, recording_id=recording_id,
                                     source_ip=caller.source_ip, clock=runtime.clock)
    if row is None:
        return templates.TemplateResponse(request, "not_found.html", {"caller": caller}, status_code=404)
    purpose = request.query_params.get("purpose") or None
    purposes = allowed_purposes(caller.policy, caller.user.role)
    return templates.TemplateResponse(request, "recording.html", {
        "caller": caller, "row": row, "purposes": purposes, "purpose": purpose,
        "purpose_labels": {p: caller.policy.purposes[p].description for p in purposes}})


@router.get("/notice", response_class=HTMLResponse)
def public_notice(request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    """The public recording notice (B2), linked from a website's 'Contact us' page. No sign-in."""
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
    return templates.TemplateResponse(request, "notice.html", {"policy": policy})
