"""The callers' requests queue for staff (B7, B10): soonest due first, overdue flagged; and one request
with its candidate recordings and how far the requester proved the phone number is theirs.

Read-only here; reviewing and releasing go through the same service as the API
(``/api/v1/subject-requests``) and ``callvault requests``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from callvault.api.deps import Caller, get_runtime
from callvault.api.routes_subject_requests import candidate_reads, identity_of
from callvault.core.errors import NotFound
from callvault.runtime import Runtime
from callvault.subject_requests import service as subject_requests
from callvault.web.common import denied, page_caller, render

router = APIRouter(include_in_schema=False)
STATUSES = ("awaiting_verification", "to_review", "ready", "sent", "overdue")


@router.get("/requests", response_class=HTMLResponse)
def requests_queue(request: Request, caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    status = request.query_params.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    with runtime.db.unit_of_work() as session:
        refusal = subject_requests.staff_denial(caller.policy, caller.actor)
        if refusal:
            subject_requests.audit_staff_denial(session, actor=caller.actor, action="list",
                                                reason=refusal, source_ip=caller.source_ip)
        else:
            now = runtime.clock.now()
            rows = subject_requests.queue(session, status=status, clock=runtime.clock)
            items = [{"row": r, "status": subject_requests.display_status(r, now)} for r in rows]
            summary = subject_requests.summary(session, clock=runtime.clock)
    if refusal:
        roles = ", ".join(subject_requests.staff_roles(caller.policy)) or "none"
        return denied(request, caller, refusal, f"Callers' requests are handled by: {roles}.")
    return render(request, "requests.html", {"caller": caller, "items": items, "summary": summary,
                                             "status": status, "statuses": STATUSES})


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_detail(request: Request, request_id: str, caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    """One request for the reviewer: the facts the caller gave, which of them each candidate matches, and
    a warning when the phone number was not proven (``subject_requests.proof``)."""
    with runtime.db.unit_of_work() as session:
        refusal = subject_requests.staff_denial(caller.policy, caller.actor)
        if refusal:
            subject_requests.audit_staff_denial(session, actor=caller.actor, action="show", reason=refusal,
                                                object_id=request_id, source_ip=caller.source_ip)
        else:
            try:
                row = subject_requests.get(session, request_id)
            except NotFound:
                row = None
            if row is not None:
                context = {"caller": caller, "row": row, "identity": identity_of(session, row),
                           "status": subject_requests.display_status(row, runtime.clock.now()),
                           "candidates": candidate_reads(session, caller, row)}
    if refusal:
        roles = ", ".join(subject_requests.staff_roles(caller.policy)) or "none"
        return denied(request, caller, refusal, f"Callers' requests are handled by: {roles}.")
    if row is None:
        return denied(request, caller, "There is no such request.", title="Not found", status_code=404)
    return render(request, "request_detail.html", context)
