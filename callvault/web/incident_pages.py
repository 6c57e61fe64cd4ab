"""The recording incidents page (``/compliance/incidents``): calls the policy says must be recorded that are not
(wholly) on record, for the compliance roles (``misuse.report_to_roles``), with resolve-with-note.

Thin over ``capture.incidents``; the same gate, listing and audited resolution as the API and the CLI.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callvault.api.deps import Caller, get_runtime
from callvault.capture import incidents
from callvault.capture.models import INCIDENT_STATUSES, IncidentKind
from callvault.core.errors import AccessDenied, CallvaultError, InvalidInput, NotFound
from callvault.runtime import Runtime
from callvault.web.common import denied, form_expired, page_caller, render, same

router = APIRouter(include_in_schema=False)
ALLOW = "Recording incidents are for the roles the policy sends compliance reports to (misuse.report_to_roles)."


def _officer(caller: Caller) -> incidents.Officer:
    return incidents.Officer(username=caller.user.username, role=caller.user.role, source_ip=caller.source_ip)


def _gate(request: Request, caller: Caller, runtime: Runtime, action: str, object_id: str | None = None
          ) -> Response | None:
    with runtime.db.unit_of_work() as session:
        refused = incidents.check_officer(session, policy=caller.policy, who=_officer(caller), action=action,
                                          object_id=object_id, clock=runtime.clock)
    if refused is None:
        return None
    return denied(request, caller, refused.message[:1].upper() + refused.message[1:] + ".", ALLOW)


def _day(value: str, *, end: bool = False) -> tuple[datetime | None, str | None]:
    if not value:
        return None, None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None, f"{value!r} is not a date (YYYY-MM-DD)"
    return datetime.combine(day + timedelta(days=1 if end else 0), time(0), tzinfo=UTC), None


@router.get("/compliance/incidents", response_class=HTMLResponse)
def incidents_page(request: Request, caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    refused = _gate(request, caller, runtime, "capture.incidents_read")
    if refused is not None:
        return refused
    query = request.query_params
    status = query.get("status", "open")
    kind = query.get("kind", "")
    since_text, until_text = query.get("since", "")[:10], query.get("until", "")[:10]
    since, since_error = _day(since_text)
    until, until_error = _day(until_text, end=True)
    errors = [e for e in (since_error and f"from: {since_error}", until_error and f"to: {until_error}") if e]
    rows = []
    if not errors:
        try:
            with runtime.db.unit_of_work() as session:
                rows = incidents.list_incidents(session, status=status if status in INCIDENT_STATUSES else None,
                                                kind=kind or None, since=since, until=until)
                for r in rows:
                    session.expunge(r)
        except InvalidInput as exc:
            errors = [str(p) for p in exc.problems] or [exc.message]
    return render(request, "incidents.html", {
        "caller": caller, "rows": rows, "errors": errors, "status": status, "kind": kind, "since": since_text,
        "until": until_text, "kinds": [k.value for k in IncidentKind], "flash": query.get("done"),
        "mandatory": caller.policy.recording_scope.mandatory,
        "clause": incidents.clause_of(caller.policy)}, status_code=422 if errors else 200)


@router.post("/compliance/incidents/{incident_id}/resolve", response_class=HTMLResponse)
def resolve_incident(incident_id: str, request: Request, note: Annotated[str, Form()] = "",
                     csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                     runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = _gate(request, caller, runtime, "capture.incident_resolved", incident_id)
    if refused is not None:
        return refused
    try:
        with runtime.db.unit_of_work() as session:
            incidents.resolve(session, incident_id=incident_id, note=note, who=_officer(caller), clock=runtime.clock)
    except CallvaultError as exc:
        message = "; ".join(str(p) for p in exc.problems) if isinstance(exc, InvalidInput) and exc.problems \
            else exc.message
        return denied(request, caller, message[:1].upper() + message[1:] + ".",
                      "Resolve an open incident with a note saying what was found and done.", title="Not resolved",
                      status_code=(403 if isinstance(exc, AccessDenied) else 404 if isinstance(exc, NotFound)
                                   else 422 if isinstance(exc, InvalidInput) else 409))
    return RedirectResponse("/compliance/incidents?done=resolved", status_code=303)
