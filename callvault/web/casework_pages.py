"""Cases, legal holds and the quarantine as pages (issue 26 point 1): the jobs that were CLI/API-only.

* ``/cases``: open a case, link a recording to it, resolve or reopen it (``retention.may_manage``: administering
  roles and leadership); place, renew and release legal holds, each with a reason and a review date no later than
  ``retention.legal_hold.max_review_months`` ahead, only for the roles ``retention.legal_hold.roles`` names
  (``retention.may_hold``). Holds past their review date are highlighted: they lapse unless renewed.
* ``/quarantine``: administering roles read why a recording arrived without consent evidence and release it
  (with where the evidence was found: a written reason, the only evidence the API takes once a call is stored)
  or destroy it, which asks for an explicit confirmation because it cannot be undone.

Thin over the same services as ``/api/v1/retention`` and ``POST /api/v1/recordings/{id}/quarantine``: the same
permission checks, refusals audited and committed with the API's action names, the same audit entries on
success. Every form carries the session's CSRF token; links and forms appear only for roles that may use them.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from callvault.api.deps import Caller, get_runtime
from callvault.audit import service as audit
from callvault.capture import control
from callvault.core.errors import AccessDenied, CallvaultError, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.recordings.models import Recording, RecordingState
from callvault.retention import service as retention
from callvault.retention.models import CaseKind
from callvault.retention.shred import finish
from callvault.runtime import Runtime
from callvault.web.common import abilities, denied, form_expired, page_caller, render, same

router = APIRouter(include_in_schema=False)
DONE = {"opened": "Case opened.", "resolved": "Case resolved: its recordings' destruction dates were recomputed.",
        "reopened": "Case reopened.", "linked": "Recording linked to the case; its destruction date was recomputed.",
        "placed": "Legal hold placed: what it covers will not be destroyed while it is in force.",
        "renewed": "Legal hold renewed with its new review date.",
        "released": "Legal hold released: what it covered goes at its date again.",
        "q_released": "Released from quarantine: the recording is searchable and playable under the policy again.",
        "q_destroyed": "Destroyed: the recording's key and audio are gone; the destruction register keeps the record."}


def _deny(request: Request, caller: Caller, runtime: Runtime, action: str, reason: str, allow: str,
          object_type: str = "", object_id: str = "", clauses: tuple[str, ...] = ("A9",)) -> Response:
    """A refusal, audited and committed with the API's action name before the page says why."""
    with runtime.db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(
            actor=caller.user.username, actor_role=caller.user.role, action=action, decision="deny",
            object_type=object_type, object_id=object_id[:200], reason=reason, clauses=clauses,
            source_ip=caller.source_ip), clock=runtime.clock)
    return denied(request, caller, reason[:1].upper() + reason[1:] + ".", allow, clauses=clauses)


def _not_manager(request: Request, caller: Caller, runtime: Runtime, action: str, what: str,
                 object_type: str = "", object_id: str = "") -> Response | None:
    if retention.may_manage(caller.policy, caller.user.role):
        return None
    return _deny(request, caller, runtime, action, f"role {caller.user.role} may not {what}",
                 "Cases are for administering roles and leadership.", object_type, object_id)


def _not_holder(request: Request, caller: Caller, runtime: Runtime, action: str, what: str,
                object_id: str = "") -> Response | None:
    if retention.may_hold(caller.policy, caller.user.role):
        return None
    named = ", ".join(caller.policy.retention.legal_hold.roles) or "none"
    return _deny(request, caller, runtime, action, f"role {caller.user.role} may not {what}: only the roles the "
                 f"policy names for legal holds may (retention.legal_hold.roles: {named})",
                 f"Ask one of: {named}.", "legal_hold", object_id, clauses=("A9", "B9"))


def _problems(exc: CallvaultError) -> list[str]:
    if isinstance(exc, InvalidInput) and exc.problems:
        return [f"{p.location}: {p.message}" for p in exc.problems]
    return [exc.message]


def _status(exc: CallvaultError) -> int:
    return {InvalidInput: 422, Conflict: 409, NotFound: 404}.get(type(exc), 403)


# ------------------------------------------------------------------------------------------ cases and holds
def _cases(request: Request, caller: Caller, runtime: Runtime, *, errors: list[str] | None = None,
           form: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    today = runtime.clock.now().date()
    with runtime.db.unit_of_work() as session:
        cases = retention.list_cases(session)
        holds = retention.list_holds(session, active_only=True)
        for item in (*cases, *holds):
            session.expunge(item)
    first, last = retention.review_bounds(caller.policy, today)
    return render(request, "cases.html", {
        "caller": caller, "cases": cases, "holds": holds, "today": today, "first": first, "last": last,
        "kinds": [k.value for k in CaseKind], "may_hold": retention.may_hold(caller.policy, caller.user.role),
        "hold_roles": caller.policy.retention.legal_hold.roles,
        "max_months": caller.policy.retention.legal_hold.max_review_months,
        "overdue": sum(1 for h in holds if h.review_on < today), "errors": errors or [], "form": form or {},
        "flash": DONE.get(request.query_params.get("done", ""))}, status_code=status_code)


@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request, caller: Caller = Depends(page_caller),
               runtime: Runtime = Depends(get_runtime)) -> Response:
    refused = _not_manager(request, caller, runtime, "retention.cases_list", "list cases")
    return refused if refused is not None else _cases(request, caller, runtime)


def _act(request: Request, caller: Caller, runtime: Runtime, csrf_token: str, refusal: Response | None,
         work: Any, done: str, form: dict[str, Any], anchor: str = "") -> Response:
    """Run one service call in its own unit of work; a refused form comes back with why and what was typed."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    if refusal is not None:
        return refusal
    try:
        with runtime.db.unit_of_work() as session:
            work(session)
    except (InvalidInput, Conflict, NotFound, AccessDenied) as exc:
        return _cases(request, caller, runtime, errors=_problems(exc), form=form, status_code=_status(exc))
    return RedirectResponse(f"/cases?done={done}{anchor}", status_code=303)


@router.post("/cases/open", response_class=HTMLResponse)
def open_case(request: Request, ref: Annotated[str, Form()] = "", kind: Annotated[str, Form()] = "",
              description: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
              caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    return _act(request, caller, runtime, csrf_token,
                _not_manager(request, caller, runtime, "retention.case_open", "open cases", "case", ref),
                lambda s: retention.open_case(s, policy=caller.policy, actor=caller.user.username,
                                              actor_role=caller.user.role, ref=ref, kind=kind,
                                              description=description[:4000], clock=runtime.clock),
                "opened", {"ref": ref, "kind": kind, "description": description})


@router.post("/cases/resolve", response_class=HTMLResponse)
def resolve_case(request: Request, ref: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                 caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    return _act(request, caller, runtime, csrf_token,
                _not_manager(request, caller, runtime, "retention.case_resolve", "resolve cases", "case", ref),
                lambda s: retention.resolve_case(s, policy=caller.policy, actor=caller.user.username,
                                                 actor_role=caller.user.role, ref=ref, clock=runtime.clock),
                "resolved", {})


@router.post("/cases/reopen", response_class=HTMLResponse)
def reopen_case(request: Request, ref: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    return _act(request, caller, runtime, csrf_token,
                _not_manager(request, caller, runtime, "retention.case_reopen", "reopen cases", "case", ref),
                lambda s: retention.reopen_case(s, policy=caller.policy, actor=caller.user.username,
                                                actor_role=caller.user.role, ref=ref, clock=runtime.clock),
                "reopened", {})


@router.post("/cases/link", response_class=HTMLResponse)
def link_recording(request: Request, ref: Annotated[str, Form()] = "", recording_id: Annotated[str, Form()] = "",
                   csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    rid = recording_id.strip()
    return _act(request, caller, runtime, csrf_token,
                _not_manager(request, caller, runtime, "retention.case_link", "link recordings to cases",
                             "recording", rid),
                lambda s: retention.link_recording(s, policy=caller.policy, actor=caller.user.username,
                                                   actor_role=caller.user.role, ref=ref, recording_id=rid,
                                                   clock=runtime.clock),
                "linked", {"link_ref": ref, "recording_id": recording_id})


def _review_date(value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput("invalid legal hold:", [FieldProblem("review_date", "a date like 2027-03-31")]) from None


@router.post("/holds/place", response_class=HTMLResponse)
def place_hold(request: Request, target: Annotated[str, Form()] = "recording", target_id: Annotated[str, Form()] = "",
               reason: Annotated[str, Form()] = "", owner: Annotated[str, Form()] = "",
               review_date: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
               caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    which = target_id.strip()

    def work(session: Any) -> None:
        retention.place_hold(session, policy=caller.policy, actor=caller.user.username, actor_role=caller.user.role,
                             reason=reason, owner=owner, review_on=_review_date(review_date),
                             recording_id=which if target == "recording" else None,
                             case_ref=which if target == "case" else None, clock=runtime.clock)

    return _act(request, caller, runtime, csrf_token,
                _not_holder(request, caller, runtime, "retention.hold_place", "place legal holds", which),
                work, "placed", {"target": target, "target_id": target_id, "reason": reason, "owner": owner,
                                 "review_date": review_date}, "#holds")


@router.post("/holds/{hold_id}/renew", response_class=HTMLResponse)
def renew_hold(request: Request, hold_id: str, reason: Annotated[str, Form()] = "",
               review_date: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
               caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    def work(session: Any) -> None:
        retention.renew_hold(session, policy=caller.policy, actor=caller.user.username, actor_role=caller.user.role,
                             hold_id=hold_id, review_on=_review_date(review_date), reason=reason, clock=runtime.clock)

    return _act(request, caller, runtime, csrf_token,
                _not_holder(request, caller, runtime, "retention.hold_renew", "renew legal holds", hold_id),
                work, "renewed", {}, "#holds")


@router.post("/holds/{hold_id}/release", response_class=HTMLResponse)
def release_hold(request: Request, hold_id: str, reason: Annotated[str, Form()] = "",
                 csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                 runtime: Runtime = Depends(get_runtime)) -> Response:
    return _act(request, caller, runtime, csrf_token,
                _not_holder(request, caller, runtime, "retention.hold_release", "release legal holds", hold_id),
                lambda s: retention.release_hold(s, policy=caller.policy, actor=caller.user.username,
                                                 actor_role=caller.user.role, hold_id=hold_id, reason=reason,
                                                 clock=runtime.clock),
                "released", {}, "#holds")


# ------------------------------------------------------------------------------------------------ quarantine
def _quarantine(request: Request, caller: Caller, runtime: Runtime, *, errors: list[str] | None = None,
                form: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    with runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(Recording).where(
            Recording.quarantined.is_(True), Recording.state == RecordingState.AVAILABLE)
            .order_by(Recording.started_at, Recording.id).limit(500)))
        for r in rows:
            session.expunge(r)
    return render(request, "quarantine.html", {"caller": caller, "rows": rows, "errors": errors or [],
                                               "form": form or {},
                                               "flash": DONE.get(request.query_params.get("done", ""))},
                  status_code=status_code)


def _not_admin(request: Request, caller: Caller, runtime: Runtime, action: str, object_id: str = "") -> Response | None:
    if abilities(caller)["admin"]:
        return None
    return _deny(request, caller, runtime, action, "not an administering role: only an administering role may "
                 "resolve quarantined recordings", "Quarantine is reviewed by the roles the policy lets administer "
                 "callvault.", "recording", object_id, clauses=("A5", "B2"))


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine_page(request: Request, caller: Caller = Depends(page_caller),
                    runtime: Runtime = Depends(get_runtime)) -> Response:
    refused = _not_admin(request, caller, runtime, "recording.quarantine_list")
    return refused if refused is not None else _quarantine(request, caller, runtime)


@router.post("/quarantine/{recording_id}", response_class=HTMLResponse)
def resolve_quarantine(request: Request, recording_id: str, decision: Annotated[str, Form()] = "",
                       reason: Annotated[str, Form()] = "", confirm: Annotated[str, Form()] = "",
                       csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                       runtime: Runtime = Depends(get_runtime)) -> Response:
    """Release or destroy, as ``POST /api/v1/recordings/{id}/quarantine``; destroying also needs the box
    that says it cannot be undone ticked (a page button is easier to press by mistake than an API call)."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    kind = decision if decision in ("release", "destroy") else "resolve"
    refused = _not_admin(request, caller, runtime, f"recording.quarantine_{kind}", recording_id)
    if refused is not None:
        return refused
    form = {"id": recording_id, "decision": decision, "reason": reason}
    if decision == "destroy" and confirm != "yes":
        return _quarantine(request, caller, runtime, form=form, status_code=422, errors=[
            "confirm: tick the box to confirm that destroying the recording cannot be undone"])
    try:
        with runtime.db.unit_of_work() as session:
            pending = control.resolve_quarantine(
                session, policy=caller.policy, actor=caller.actor, recording_id=recording_id, decision=decision,
                reason=reason, keyring=runtime.keyring, source_ip=caller.source_ip, clock=runtime.clock)
    except (AccessDenied, control.UnderLegalHold) as exc:
        # Audited and committed as the API does (``routes_control._audit_denial``).
        with runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=caller.user.username, actor_role=caller.user.role, action=f"recording.quarantine_{decision}",
                decision="deny", object_type="recording", object_id=recording_id[:200], reason=exc.reason,
                clauses=exc.clauses, source_ip=caller.source_ip), clock=runtime.clock)
        return _quarantine(request, caller, runtime, form=form, errors=[exc.message], status_code=409
                           if isinstance(exc, control.UnderLegalHold) else 403)
    except (InvalidInput, Conflict, NotFound) as exc:
        return _quarantine(request, caller, runtime, form=form, errors=_problems(exc), status_code=_status(exc))
    finish(runtime.db, runtime.store, runtime.keyring, pending, clock=runtime.clock)
    return RedirectResponse(f"/quarantine?done=q_{'released' if decision == 'release' else 'destroyed'}",
                            status_code=303)
