"""What every page module shares: templates, the signed-in page caller, CSRF checks, denial pages.

Pages are thin: they call the same domain services as ``callvault.api`` and never decide anything
themselves. A refusal is rendered as a page that says why and what would allow it.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, available_timezones

from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context

from callvault.access import accounting
from callvault.api.deps import (
    SESSION_COOKIE,
    Caller,
    cookie_name,
    get_runtime,
    read_cookie,
    resolve_caller,
    runtime_of,
    secure_request,
)
from callvault.core.errors import AccessDenied, AuthenticationFailed
from callvault.identity import preferences
from callvault.oversight import service as oversight
from callvault.policy.decide import has_acknowledged
from callvault.retention import service as retention
from callvault.runtime import Runtime
from callvault.subject_requests import service as subject_requests

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
STATIC_DIR = Path(__file__).parent / "static"
PRELOGIN_COOKIE = "cv_prelogin"


def abilities(caller: Caller) -> dict[str, bool]:
    """What the navigation offers this caller (the services still decide every action)."""
    role = caller.policy.roles.get(caller.user.role)
    emergency = caller.policy.emergency_access
    approver = any(p.approval and p.approval.required and caller.user.role in p.approval.approver_roles
                   for p in caller.policy.purposes.values())
    return {
        "admin": bool(role and role.can_administer),
        "manage_retention": retention.may_manage(caller.policy, caller.user.role),
        "misuse_recipient": oversight.is_recipient(caller.policy, caller.user.role),
        "approver": approver,
        "content": bool(role and role.content_scope != "none"),
        "requests_staff": subject_requests.staff_denial(caller.policy, caller.actor) is None,
        "emergency": emergency is not None and (caller.user.role in emergency.roles
                                                or caller.user.role in emergency.reviewer_roles),
        "disclosures": accounting.may_read(caller.policy, caller.user.role),
    }


templates.env.globals["abilities"] = abilities


def review_warning(request: Request, caller: Caller) -> str | None:
    """B13: the policy's review date has passed. Shown on every page to the roles that answer for the
    policy (administering roles, leadership, misuse recipients) until a reviewed version is loaded."""
    can = abilities(caller)
    if not (can["admin"] or can["manage_retention"] or can["misuse_recipient"]):
        return None
    due = caller.policy.review_due_on()
    today = runtime_of(request).clock.now().date()
    if today <= due:
        return None
    return (f"The policy {caller.policy.policy_id} {caller.policy.version} was due for review on {due.isoformat()} "
            f"({(today - due).days} days ago, B13). Review it and load the reviewed version.")


templates.env.globals["review_warning"] = review_warning

def policy_zones(policy: Any) -> list[str]:
    """The IANA zones the policy itself names, most specific to the business first: the detection day
    (where the office is), then each request region's working day, then QA sampling; UTC last."""
    zones = [policy.misuse.detection.timezone,
             *(r.timezone for r in policy.subject_requests.regions.values() if r.timezone)]
    sampling = getattr(getattr(getattr(policy, "quality_review", None), "sampling", None), "timezone", None)
    if sampling:
        zones.append(sampling)
    return list(dict.fromkeys([z for z in zones if z and z != "UTC"] + ["UTC"]))


@lru_cache(maxsize=1)
def all_zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def valid_zone(name: str | None) -> ZoneInfo | None:
    return preferences.parse_zone(name)


def account_zone(caller: Caller) -> ZoneInfo:
    """The zone this person's pages use: the one stored on their account (Account page), else the first
    zone the policy names. Kept in the database, not a cookie, so every node and browser agree."""
    return valid_zone(caller.user.timezone) or ZoneInfo(policy_zones(caller.policy)[0])


def display_zone(request: Request, caller: Caller) -> ZoneInfo:
    """The zone dates are typed and shown in: a zone picked for this one search (``?tz=``), else the
    account's (so a Toronto lead sees Toronto times and a Sydney agent Sydney times on the same call)."""
    return valid_zone(request.query_params.get("tz")) or account_zone(caller)


@pass_context
def local_time(context: Any, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Jinja filter ``|local``: a stored instant (UTC) as the viewer's wall-clock time in their zone.
    Pages without a signed-in person (the public caller pages) show UTC, and say so."""
    if value is None:
        return ""
    if not isinstance(value, datetime):  # a calendar date (a due day) has no zone to convert
        return str(value.strftime(fmt))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    caller, request = context.get("caller"), context.get("request")
    if isinstance(caller, Caller) and request is not None:
        return value.astimezone(display_zone(request, caller)).strftime(fmt)
    return value.astimezone(UTC).strftime(fmt)


templates.env.filters["local"] = local_time


@pass_context
def viewer_zone(context: Any) -> str:
    """The name of the zone ``|local`` shows times in, for column headings ("When (America/Toronto)")."""
    caller, request = context.get("caller"), context.get("request")
    if isinstance(caller, Caller) and request is not None:
        return display_zone(request, caller).key
    return "UTC"


templates.env.globals["viewer_zone"] = viewer_zone


def local_next(value: str | None) -> str:
    """Where to go after signing in: only a path on this site (``/recordings?x=1``), never another host
    (``//evil``, ``https://evil``, ``/\\evil``), so ``next=`` cannot be used to send people elsewhere."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in value):
        return "/"
    return value


def sign_in_redirect(request: Request) -> str:
    """``/`` with the page asked for as ``next`` (GET only: a form post cannot be replayed after sign-in)."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or target == "/":
        return "/"
    return "/?next=" + quote(target, safe="")


def same(sent: str, expected: str) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(sent, expected)


def page_caller(request: Request, runtime: Runtime = Depends(get_runtime)) -> Caller:
    """A fully signed-in person who has acknowledged the policy in force; otherwise back to ``/``
    (which shows the sign-in form, the code form or the acknowledgement gate)."""
    try:
        caller = resolve_caller(request, runtime)
    except (AuthenticationFailed, AccessDenied) as exc:
        if not read_cookie(request, SESSION_COOKIE) or isinstance(exc, AuthenticationFailed):
            raise HTTPException(status_code=303, headers={"Location": sign_in_redirect(request)}) from exc
        raise
    if not has_acknowledged(caller.policy, caller.actor):
        raise HTTPException(status_code=303, headers={"Location": sign_in_redirect(request)})
    return caller


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def denied(request: Request, caller: Caller | None, reason: str, allow: str = "", *, title: str = "Not allowed",
           clauses: tuple[str, ...] = (), status_code: int = 403) -> Response:
    """The refusal page: why (the service's reason, with the policy clauses) and what would allow it."""
    return render(request, "denied.html", {"caller": caller, "title": title, "reason": reason, "allow": allow,
                                           "clauses": clauses}, status_code=status_code)


def form_expired(request: Request, caller: Caller | None) -> Response:
    return denied(request, caller, "The form expired or did not come from this page.",
                  "Reload the page and submit it again.", title="Form expired")


def set_session_cookie(response: Response, request: Request, cookie: str) -> None:
    # No max_age: a browser-session cookie. The server ends the session (idle/absolute) regardless.
    response.set_cookie(cookie_name(request, SESSION_COOKIE), cookie, httponly=True, samesite="strict",
                        secure=secure_request(request), path="/")


def delete_cookie(response: Response, request: Request, name: str) -> None:
    """Expire ``name`` as this request's browser stores it (``__Host-`` prefixed over HTTPS, so ``Secure``)."""
    response.delete_cookie(cookie_name(request, name), path="/", secure=secure_request(request), httponly=True,
                           samesite="strict")


SIGN_IN_UNAVAILABLE = "Sign-in is temporarily unavailable; please try again in a few minutes."
"""What a person sees when the guessing counters (Redis) cannot be read: sign-in fails closed."""


def login_page(request: Request, error: str | None, status_code: int = 200) -> Response:
    """The sign-in form with a fresh double-submit token (cookie + hidden field must match)."""
    token = secrets.token_urlsafe(32)
    oidc = runtime_of(request).settings.oidc
    response = templates.TemplateResponse(request, "login.html", {
        "error": error, "csrf_token": token, "sso_label": oidc.button_label if oidc else None,
        "next": local_next(request.query_params.get("next"))},
        status_code=status_code)
    response.set_cookie(cookie_name(request, PRELOGIN_COOKIE), token, httponly=True, samesite="strict",
                        secure=secure_request(request), path="/", max_age=3600)
    return response


def wants_html(request: Request) -> bool:
    """A browser asking for a page (not the JSON API): it gets an HTML error page, never raw JSON."""
    return (not request.url.path.startswith("/api/") and request.method in ("GET", "HEAD", "POST")
            and "text/html" in request.headers.get("accept", ""))


_TITLES = {400: "Bad request", 401: "Please sign in", 403: "Not allowed", 404: "Not found",
           405: "Not possible here", 409: "Not possible now", 413: "Too large", 416: "Out of range",
           422: "Check what you typed", 429: "Too many attempts", 500: "Something went wrong",
           503: "Temporarily unavailable"}


def error_page(request: Request, status_code: int, reason: str, allow: str = "") -> Response:
    """The HTML form of an API error for a browser: same status, the reason in words, no JSON."""
    if status_code == 404:
        return render(request, "not_found.html", {"caller": None, "what": None}, status_code=404)
    text = reason[:1].upper() + reason[1:]
    return denied(request, None, text if text.endswith(".") else text + ".", allow,
                  title=_TITLES.get(status_code, "Something went wrong"), status_code=status_code)
