"""The callers' requests queue for staff (B7, B10): soonest due first, overdue flagged; and one request
with its candidate recordings, how far the requester proved the phone number is theirs, and the forms
that work it: choose the recordings (review), release them (with the facts the release requires when a
number is unproven), or refuse with a written reason.

The forms are thin over the same service as the API (``/api/v1/subject-requests``) and ``callvault
requests``: the same staff check (refusals audited and committed), the same proof check and per-recording
``decide()`` at release, the same audit entries. Every form carries the session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from callvault.api.deps import Caller, get_runtime
from callvault.api.routes_subject_requests import candidate_reads, identity_of, public_url
from callvault.core.errors import AccessDenied, CallvaultError, Conflict, InvalidInput, NotFound
from callvault.identity import step_up
from callvault.retention import shred
from callvault.runtime import Runtime
from callvault.subject_requests import service as subject_requests
from callvault.subject_requests import workflow
from callvault.web import step_up_gate
from callvault.web.common import denied, form_expired, page_caller, render, same

router = APIRouter(include_in_schema=False)
STATUSES = ("awaiting_verification", "to_review", "ready", "sent", "refused", "overdue")
FACT_LABELS = {"call_time": "the date and time of the call", "agent_name": "the agent's first name",
               "reason": "what the call was about (by listening)"}
DONE = {"reviewed": "Recordings chosen: the request is ready to release.",
        "released": "Released: the link was mailed to the requester.",
        "released_none": "Released: the requester was told we hold no recordings of theirs.",
        "erased": "Erasure carried out: what was destroyed and what is kept (and why) was mailed to the requester.",
        "refused": "Refused: the reason was mailed to the requester.",
        "links_revoked": "Every delivery link of this request was revoked: none works any more.",
        "extended": "Deadline extended: the new due date and the reason were mailed to the requester.",
        "representative": "Representative recorded, with the proof of authority you checked."}


def _staff_refusal(request: Request, caller: Caller, runtime: Runtime, action: str,
                   request_id: str = "") -> Response | None:
    """The queue's staff check, audited and committed like the API's, as a page saying who handles it."""
    refusal = subject_requests.staff_denial(caller.policy, caller.actor)
    if refusal is None:
        return None
    with runtime.db.unit_of_work() as session:
        subject_requests.audit_staff_denial(session, actor=caller.actor, action=action, reason=refusal,
                                            object_id=request_id, source_ip=caller.source_ip, clock=runtime.clock)
    roles = ", ".join(subject_requests.staff_roles(caller.policy)) or "none"
    return denied(request, caller, refusal, f"Callers' requests are handled by: {roles}.")


@router.get("/requests", response_class=HTMLResponse)
def requests_queue(request: Request, caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    status = request.query_params.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    refused = _staff_refusal(request, caller, runtime, "list")
    if refused is not None:
        return refused
    with runtime.db.unit_of_work() as session:
        now = runtime.clock.now()
        rows = subject_requests.queue(session, status=status, clock=runtime.clock)
        items = [{"row": r, "status": subject_requests.display_status(r, now),
                  "left": subject_requests.days_left(caller.policy, r, now)} for r in rows]
        summary = subject_requests.summary(session, clock=runtime.clock)
    return render(request, "requests.html", {"caller": caller, "items": items, "summary": summary,
                                             "status": status, "statuses": STATUSES,
                                             "unit": subject_requests.day_unit(caller.policy)})


def _detail(request: Request, caller: Caller, runtime: Runtime, request_id: str, *, errors: list[str] | None = None,
            form: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """The request page, with ``errors`` from a form that was refused and what was typed in it kept."""
    with runtime.db.unit_of_work() as session:
        try:
            row = subject_requests.get(session, request_id)
        except NotFound:
            row = None
        if row is not None:
            now = runtime.clock.now()
            identity = identity_of(session, row)
            links = subject_requests.links_of(session, row.id)
            for link in links:
                session.expunge(link)
            context = {"caller": caller, "row": row, "identity": identity,
                       "status": subject_requests.display_status(row, now),
                       "left": subject_requests.days_left(caller.policy, row, now),
                       "unit": subject_requests.day_unit(caller.policy),
                       "candidates": candidate_reads(session, caller, row),
                       "chosen": [s.recording_id for s in subject_requests.selection(session, row.id)],
                       "links": links,
                       "facts_given": identity.facts_given if identity else [],
                       "fact_labels": FACT_LABELS,
                       "min_facts": caller.policy.subject_requests.identity_check.min_facts_confirmed,
                       "own": bool(row.requester_user_id) and row.requester_user_id == caller.user.id,
                       "extension": _extension(caller),
                       "proof_kinds": _proof_kinds(caller),
                       "errors": errors or [], "form": form or {},
                       "flash": DONE.get(request.query_params.get("done", ""))}
    if row is None:
        return denied(request, caller, "There is no such request.", title="Not found", status_code=404)
    return render(request, "request_detail.html", context, status_code=status_code)


def _extension(caller: Caller) -> str:
    """The policy's one written extension, in words, or "" where it allows none (the form is then not shown)."""
    deadline = caller.policy.subject_requests.effective_deadline
    if not deadline.extendable:
        return ""
    return f"{deadline.extension_days} days" if deadline.extension_days else f"{deadline.extension_months} months"


def _proof_kinds(caller: Caller) -> list[str]:
    """The proofs of a representative's authority the policy accepts; none where it takes no representatives."""
    rules = caller.policy.subject_requests.representatives
    return list(rules.proof_kinds) if rules.allowed else []


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_detail(request: Request, request_id: str, caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    """One request for the reviewer: the facts the caller gave, which of them each candidate matches, a
    warning when the phone number was not proven (``subject_requests.proof``), and the forms to work it."""
    refused = _staff_refusal(request, caller, runtime, "show", request_id)
    if refused is not None:
        return refused
    return _detail(request, caller, runtime, request_id)


def _problems(exc: CallvaultError) -> list[str]:
    if isinstance(exc, InvalidInput) and exc.problems:
        return [f"{p.location}: {p.message}" for p in exc.problems]
    return [exc.message]


def _status_of(exc: CallvaultError) -> int:
    return 422 if isinstance(exc, InvalidInput) else 409 if isinstance(exc, Conflict) else \
        403 if isinstance(exc, AccessDenied) else 404


@router.post("/requests/{request_id}/review", response_class=HTMLResponse)
def review_request(request: Request, request_id: str, recording_ids: Annotated[list[str] | None, Form()] = None,
                   redaction_note: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                   caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """Confirm which candidates are the requester's (replacing any earlier choice): ``service.review``."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = _staff_refusal(request, caller, runtime, "review", request_id)
    if refused is not None:
        return refused
    try:
        with runtime.db.unit_of_work() as session:
            subject_requests.review(session, policy=caller.policy, actor=caller.actor, request_id=request_id,
                                    recording_ids=recording_ids or [], redaction_note=redaction_note,
                                    source_ip=caller.source_ip, clock=runtime.clock)
    except (InvalidInput, Conflict, NotFound) as exc:
        return _detail(request, caller, runtime, request_id, errors=_problems(exc),
                       form={"redaction_note": redaction_note}, status_code=_status_of(exc))
    return RedirectResponse(f"/requests/{request_id}?done=reviewed#release", status_code=303)


@router.post("/requests/{request_id}/approve", response_class=HTMLResponse)
def approve_request(request: Request, request_id: str, facts_checked: Annotated[list[str] | None, Form()] = None,
                    link_days: Annotated[int, Form()] = subject_requests.LINK_DAYS_DEFAULT,
                    max_downloads: Annotated[int, Form()] = subject_requests.DOWNLOADS_DEFAULT,
                    step_up_code: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                    caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """Release the chosen recordings: ``service.approve`` checks the proof (``facts_checked``) and decides
    each recording for ``subject_access`` as this person, all audited; any refusal releases nothing.

    It mails a link outside, or destroys recordings, so it needs a fresh step-up code like a download
    (``step_up_gate``): without one the page says so, keeps what was typed, and nothing happens."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = _staff_refusal(request, caller, runtime, "approve", request_id)
    if refused is not None:
        return refused
    facts = [f for f in (facts_checked or []) if f in FACT_LABELS]
    form = {"facts_checked": facts, "link_days": link_days, "max_downloads": max_downloads}
    unconfirmed = step_up_gate.refusal(runtime, caller, step_up_code, step_up.APPROVE_REQUEST)
    if unconfirmed is not None:
        return _detail(request, caller, runtime, request_id, errors=[unconfirmed], form=form, status_code=403)
    try:
        with runtime.db.unit_of_work() as session:
            outcome = subject_requests.approve(
                session, policy=caller.policy, actor=caller.actor, request_id=request_id,
                public_url=public_url(runtime, request), keyring=runtime.keyring, link_days=link_days,
                max_downloads=max_downloads, facts_checked=facts, source_ip=caller.source_ip, clock=runtime.clock)
            # The refusals and denials are audit entries: this block commits them before the page says so.
            why = outcome.refusal or "; ".join(f"recording {rid[:8]}: {d.reason}" for rid, d in outcome.denials)
            released_any, erasing = bool(outcome.link_url), outcome.request.asks_for == "erasure"
    except (InvalidInput, Conflict, NotFound, AccessDenied) as exc:
        return _detail(request, caller, runtime, request_id, errors=_problems(exc), form=form,
                       status_code=_status_of(exc))
    shred.finish(runtime.db, runtime.store, runtime.keyring, outcome.pending, clock=runtime.clock)
    if why:
        return _detail(request, caller, runtime, request_id, form=form, status_code=403,
                       errors=[f"Nothing was {'deleted' if erasing else 'released'}: {why}"])
    if erasing:
        return RedirectResponse(f"/requests/{request_id}?done=erased", status_code=303)
    done = "released" if released_any else "released_none"
    return RedirectResponse(f"/requests/{request_id}?done={done}", status_code=303)


def _staff_change(request: Request, caller: Caller, runtime: Runtime, request_id: str, csrf_token: str,
                  action: str, typed: dict[str, Any], change: Callable[[Session], object]) -> Response | None:
    """A staff form's change to one request in a unit of work: None when it worked (the handler redirects with
    its banner); else the form-expired page, the audited staff refusal, or the request page with what was wrong
    and what was typed kept."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = _staff_refusal(request, caller, runtime, action, request_id)
    if refused is not None:
        return refused
    try:
        with runtime.db.unit_of_work() as session:
            change(session)
    except (InvalidInput, Conflict, NotFound, AccessDenied) as exc:
        return _detail(request, caller, runtime, request_id, errors=_problems(exc), form=typed,
                       status_code=_status_of(exc))
    return None


@router.post("/requests/{request_id}/refuse", response_class=HTMLResponse)
def refuse_request(request: Request, request_id: str, reason: Annotated[str, Form()] = "",
                   csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    """Refuse with a written reason, mailed to the requester as written: ``service.refuse``."""
    failed = _staff_change(request, caller, runtime, request_id, csrf_token, "refuse", {"reason": reason},
                           lambda session: subject_requests.refuse(
                               session, policy=caller.policy, actor=caller.actor, request_id=request_id,
                               reason=reason, source_ip=caller.source_ip, clock=runtime.clock))
    if failed is not None:
        return failed
    return RedirectResponse(f"/requests/{request_id}?done=refused", status_code=303)


@router.post("/requests/{request_id}/revoke-links", response_class=HTMLResponse)
def revoke_request_links(request: Request, request_id: str, csrf_token: Annotated[str, Form()] = "",
                         caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """Stop every delivery link of the request at once (the mail went to the wrong person): ``service.revoke_links``,
    audited, the same staff check as the API."""
    failed = _staff_change(request, caller, runtime, request_id, csrf_token, "revoke_links", {},
                           lambda session: subject_requests.revoke_links(
                               session, actor=caller.actor, request_id=request_id, source_ip=caller.source_ip,
                               clock=runtime.clock))
    if failed is not None:
        return failed
    return RedirectResponse(f"/requests/{request_id}?done=links_revoked", status_code=303)


@router.post("/requests/{request_id}/extend", response_class=HTMLResponse)
def extend_request(request: Request, request_id: str, reason: Annotated[str, Form()] = "",
                   csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    """Extend the deadline once, in writing: ``workflow.extend`` (the new date and reason mailed, audited)."""
    failed = _staff_change(request, caller, runtime, request_id, csrf_token, "extend", {"extend_reason": reason},
                           lambda session: workflow.extend(
                               session, policy=caller.policy, actor=caller.actor, request_id=request_id,
                               reason=reason, source_ip=caller.source_ip, clock=runtime.clock))
    if failed is not None:
        return failed
    return RedirectResponse(f"/requests/{request_id}?done=extended", status_code=303)


@router.post("/requests/{request_id}/representative", response_class=HTMLResponse)
def representative_request(request: Request, request_id: str, name: Annotated[str, Form()] = "",
                           relationship: Annotated[str, Form()] = "", proof_kind: Annotated[str, Form()] = "",
                           csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                           runtime: Runtime = Depends(get_runtime)) -> Response:
    """Record who acts for the caller and the proof checked: ``workflow.record_representative`` (audited)."""
    typed = {"name": name, "relationship": relationship, "proof_kind": proof_kind}
    failed = _staff_change(request, caller, runtime, request_id, csrf_token, "representative", typed,
                           lambda session: workflow.record_representative(
                               session, policy=caller.policy, actor=caller.actor, request_id=request_id, name=name,
                               relationship=relationship, proof_kind=proof_kind, source_ip=caller.source_ip,
                               clock=runtime.clock))
    if failed is not None:
        return failed
    return RedirectResponse(f"/requests/{request_id}?done=representative", status_code=303)
