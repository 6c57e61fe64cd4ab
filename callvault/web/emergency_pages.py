"""Emergency ("break the glass") pages, the reviewer's queue, a caller's accounting of disclosures, and the
recording page's retention-extension form: thin over the same services as ``api.routes_emergency`` and
``api.routes_extension`` (see docs/web.md). Refusals are put on record (``access.refusals``) and shown
with the policy's reason; bad input comes back to the form naming the field."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callvault.access import accounting, emergency, refusals
from callvault.access.emergency import Disclosure
from callvault.api.deps import Caller, get_runtime
from callvault.api.routes_emergency import csv_response
from callvault.core.errors import AccessDenied, CallvaultError, Conflict, InvalidInput, NotFound
from callvault.recordings import service as recordings
from callvault.retention import extension
from callvault.retention import service as retention
from callvault.runtime import Runtime
from callvault.web.common import denied, form_expired, page_caller, render, same, templates

router = APIRouter(include_in_schema=False)

EMERGENCY_PURPOSE = "emergency_access"
"""The purpose the recording page offers under a declaration (what ``decide`` records when none is named)."""


def _guard(runtime: Runtime, caller: Caller, action: str, object_type: str = "", object_id: str = ""
           ) -> refusals.Guard:
    return refusals.on_record(runtime.db, actor=caller.user.username, actor_role=caller.user.role, action=action,
                              object_type=object_type, object_id=object_id, source_ip=caller.source_ip,
                              clock=runtime.clock)


def problems_of(exc: CallvaultError) -> list[str]:
    """An error as lines for a form: each problem with the field it names."""
    if isinstance(exc, InvalidInput) and exc.problems:
        return [f"{p.location.replace('_', ' ')}: {p.message}" for p in exc.problems]
    return [exc.message]


def _refused(request: Request, caller: Caller, exc: AccessDenied, allow: str) -> Response:
    return denied(request, caller, exc.reason[:1].upper() + exc.reason[1:] + ".", allow, clauses=exc.clauses)


# ------------------------------------------------------------------------------ declare
def _emergency_context(runtime: Runtime, caller: Caller) -> dict[str, Any]:
    rules = caller.policy.emergency_access
    now = runtime.clock.now()
    with runtime.db.read_only() as session:
        active = emergency.active_for(session, user_id=caller.user.id, now=now)
    return {"caller": caller, "rules": rules, "active": active, "errors": [], "form": {},
            "may_declare": rules is not None and caller.user.role in rules.roles,
            "may_review": rules is not None and caller.user.role in rules.reviewer_roles}


@router.get("/emergency", response_class=HTMLResponse)
def emergency_page(request: Request, caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    ctx = _emergency_context(runtime, caller)
    if ctx["rules"] is None:
        return denied(request, caller, "This policy has no emergency access (no emergency_access section).",
                      title="No emergency access")
    return render(request, "emergency.html", {**ctx, "flash": request.query_params.get("done")})


@router.post("/emergency", response_class=HTMLResponse)
def declare(request: Request, reason: Annotated[str, Form(max_length=2000)] = "",
            minutes: Annotated[str, Form(max_length=8)] = "", csrf_token: Annotated[str, Form()] = "",
            caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    ctx = _emergency_context(runtime, caller)
    try:
        length = int(minutes) if minutes.strip() else None
    except ValueError:
        length = -1  # the service names the field and the allowed range
    try:
        with _guard(runtime, caller, "emergency.declare", "emergency_declaration"), \
                runtime.db.unit_of_work() as session:
            emergency.declare(session, policy=caller.policy, actor=caller.actor, reason=reason, minutes=length,
                              source_ip=caller.source_ip, clock=runtime.clock)
    except AccessDenied as exc:
        return _refused(request, caller, exc, "Only the roles emergency_access.roles names may declare an emergency.")
    except InvalidInput as exc:
        return render(request, "emergency.html", {**ctx, "errors": problems_of(exc),
                                                  "form": {"reason": reason, "minutes": minutes}}, status_code=422)
    return RedirectResponse("/emergency?done=declared", status_code=303)


@router.get("/emergency/open")
def open_recording(request: Request, caller: Caller = Depends(page_caller)) -> Response:
    """The emergency page's "open a recording by its id" box: the search lists only the role's scope, so a
    call beyond it is reached by the id someone gives (the recording page then decides, and audits, as ever)."""
    wanted = (request.query_params.get("recording") or "").strip()
    if not wanted or len(wanted) > 64 or not all(c.isalnum() or c == "-" for c in wanted):
        return denied(request, caller, "Recording: give the recording's id (letters, digits and dashes).",
                      "Go back and paste the id.", title="Check the recording id", status_code=422)
    return RedirectResponse(f"/recordings/{wanted}", status_code=303)


# ------------------------------------------------------------------------------ the reviewer's queue
@router.get("/emergency/reviews", response_class=HTMLResponse)
def reviews_page(request: Request, caller: Caller = Depends(page_caller),
                 runtime: Runtime = Depends(get_runtime)) -> Response:
    return _queue(request, caller, runtime, errors={}, status_code=200)


def _queue(request: Request, caller: Caller, runtime: Runtime, *, errors: dict[str, list[str]],
           status_code: int) -> Response:
    try:
        with _guard(runtime, caller, "emergency.reviews_list"), runtime.db.read_only() as session:
            tasks = emergency.review_queue(session, policy=caller.policy, actor=caller.actor, clock=runtime.clock)
            for t in tasks:
                session.expunge(t.declaration)
                for e in t.accesses:
                    session.expunge(e)
    except AccessDenied as exc:
        return _refused(request, caller, exc, "Only the roles emergency_access.reviewer_roles names review "
                                              "emergency access.")
    shown = {t.declaration.id for t in tasks}
    stray = [m for key, lines in errors.items() if key not in shown for m in lines]  # e.g. reviewed meanwhile
    return render(request, "emergency_reviews.html", {
        "caller": caller, "tasks": tasks, "errors": errors, "stray": stray, "flash": request.query_params.get("done"),
        "overdue": sum(1 for t in tasks if t.overdue)}, status_code=status_code)


@router.post("/emergency/reviews/{declaration_id}", response_class=HTMLResponse)
def review(declaration_id: str, request: Request, outcome: Annotated[str, Form(max_length=16)] = "",
           notes: Annotated[str, Form(max_length=4000)] = "", csrf_token: Annotated[str, Form()] = "",
           caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    try:
        with _guard(runtime, caller, "emergency.review", "emergency_declaration", declaration_id), \
                runtime.db.unit_of_work() as session:
            emergency.review(session, policy=caller.policy, actor=caller.actor, declaration_id=declaration_id,
                             outcome=outcome, notes=notes, source_ip=caller.source_ip, clock=runtime.clock)
    except AccessDenied as exc:
        return _refused(request, caller, exc, "A reviewer role reviews other people's declarations.")
    except (InvalidInput, Conflict, NotFound) as exc:
        return _queue(request, caller, runtime, errors={declaration_id: problems_of(exc)}, status_code=422)
    return RedirectResponse(f"/emergency/reviews?done={outcome}", status_code=303)


# ------------------------------------------------------------------------------ accounting of disclosures
@router.get("/disclosures", response_class=HTMLResponse)
def disclosures_page(request: Request, caller: Caller = Depends(page_caller),
                     runtime: Runtime = Depends(get_runtime)) -> Response:
    number = (request.query_params.get("number") or "").strip()[:40]
    since_text = (request.query_params.get("since") or "").strip()[:10]
    ctx: dict[str, Any] = {"caller": caller, "number": number, "since": since_text, "rows": None, "errors": [],
                           "e164": None}
    if not accounting.may_read(caller.policy, caller.user.role):
        try:
            with _guard(runtime, caller, accounting.ACTION, "caller_number", number):
                accounting.account_gate(caller.policy, caller.user.role)
        except AccessDenied as exc:
            return _refused(request, caller, exc, "Only the roles accounting_of_disclosures.roles names may read it.")
    if not number:
        return render(request, "disclosures.html", ctx)
    try:
        since = date.fromisoformat(since_text) if since_text else None
    except ValueError:
        ctx["errors"] = [f"since: {since_text!r} is not a date (YYYY-MM-DD)"]
        return render(request, "disclosures.html", ctx, status_code=422)
    try:
        with runtime.db.unit_of_work() as session:
            rows: list[Disclosure] = accounting.account(
                session, policy=caller.policy, actor=caller.actor, number=number, since=since,
                default_region=runtime.settings.default_region, form="page", source_ip=caller.source_ip,
                clock=runtime.clock)
        ctx["e164"] = accounting.parse_number(number, default_region=runtime.settings.default_region)
    except InvalidInput as exc:
        ctx["errors"] = problems_of(exc)
        return render(request, "disclosures.html", ctx, status_code=422)
    ctx["rows"] = rows
    return render(request, "disclosures.html", ctx)


@router.get("/disclosures.csv")
def disclosures_csv(request: Request, caller: Caller = Depends(page_caller),
                    runtime: Runtime = Depends(get_runtime)) -> Response:
    """The page's CSV link: the same service and audit entry as ``GET /api/v1/disclosures.csv``."""
    number = (request.query_params.get("number") or "").strip()[:40]
    since_text = (request.query_params.get("since") or "").strip()[:10]
    try:
        since = date.fromisoformat(since_text) if since_text else None
        return csv_response(runtime, caller, number, since)
    except ValueError:
        return denied(request, caller, f"Since: {since_text!r} is not a date (YYYY-MM-DD).", title="Check the date",
                      status_code=422)
    except AccessDenied as exc:
        return _refused(request, caller, exc, "Only the roles accounting_of_disclosures.roles names may read it.")
    except InvalidInput as exc:
        return denied(request, caller, "; ".join(problems_of(exc)) + ".", "Go back and correct the number.",
                      title="Check the number", status_code=422)


# ------------------------------------------------------------------------------ retention extension
@router.post("/recordings/{recording_id}/extension", response_class=HTMLResponse)
def extend(recording_id: str, request: Request, keep_until: Annotated[str, Form(max_length=10)] = "",
           months: Annotated[str, Form(max_length=4)] = "", reason: Annotated[str, Form(max_length=2000)] = "",
           csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
           runtime: Runtime = Depends(get_runtime)) -> Response:
    """The recording page's "keep longer" form (``retention.extension.roles``): a date or months, a reason."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    try:
        with _guard(runtime, caller, "retention.extend", "recording", recording_id):
            extension.require_extender(caller.policy, caller.user.role)
    except AccessDenied as exc:
        return _refused(request, caller, exc, "Ask a role the policy names in retention.extension.roles.")
    with runtime.db.unit_of_work() as session:
        row = recordings.get_visible(session, policy=caller.policy, actor=caller.actor, recording_id=recording_id,
                                     source_ip=caller.source_ip, clock=runtime.clock)
    if row is None:
        return render(request, "not_found.html", {"caller": caller, "what": "recording"}, status_code=404)
    try:
        until = date.fromisoformat(keep_until) if keep_until.strip() else None
        count = int(months) if months.strip() else None
    except ValueError:
        return _back(recording_id, "keep until: give a date like 2033-01-31, or a whole number of months")
    try:
        with runtime.db.unit_of_work() as session:
            day = extension.keep_until_from(keep_until=until, months=count, started_at=row.started_at)
            retention.extend_retention(session, policy=caller.policy, actor=caller.user.username,
                                       actor_role=caller.user.role, recording_id=recording_id, keep_until=day,
                                       reason=reason, clock=runtime.clock)
    except (InvalidInput, NotFound) as exc:
        return _back(recording_id, "; ".join(problems_of(exc)))
    return RedirectResponse(f"/recordings/{recording_id}?done=extended#retention", status_code=303)


def _back(recording_id: str, problem: str) -> Response:
    from urllib.parse import urlencode

    return RedirectResponse(f"/recordings/{recording_id}?{urlencode({'extension_error': problem[:500]})}#retention",
                            status_code=303)


# ------------------------------------------------------------------------------ every page's banner
def emergency_banner(request: Request, caller: Caller) -> dict[str, Any] | None:
    """The caller's declaration in force, with the minutes left, for the banner on every page (read from the
    database on each page: no state in the process)."""
    rules = caller.policy.emergency_access
    if rules is None or caller.user.role not in rules.roles:
        return None
    from callvault.api.deps import runtime_of

    runtime = runtime_of(request)
    now = runtime.clock.now()
    with runtime.db.read_only() as session:
        active = emergency.active_for(session, user_id=caller.user.id, now=now)
    if active is None:
        return None
    left = max(0, int((active.ends_at - now).total_seconds()))
    return {"id": active.declaration_id, "ends_at": active.ends_at, "minutes_left": (left + 59) // 60,
            "seconds_left": left}


templates.env.globals["emergency_banner"] = emergency_banner
