"""Access request pages (B6, B9): ask for access from a recording, decide as an approver, my grants."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callvault.access import service as access
from callvault.api.deps import Caller, get_runtime
from callvault.core.errors import AccessDenied, InvalidInput, NotFound
from callvault.notify.service import SmtpSettings
from callvault.policy.decide import GRANTABLE_ACTIONS
from callvault.runtime import Runtime
from callvault.web.common import denied, form_expired, page_caller, render, same

router = APIRouter(include_in_schema=False)


def _listing(runtime: Runtime, caller: Caller, status: str | None) -> dict[str, Any]:
    with runtime.db.unit_of_work() as session:
        rows = access.visible_requests(session, actor=caller.actor, status=status, limit=200)
        items = [{"req": r, "requester": access.requester_name(session, r),
                  "deciders": access.deciders(session, policy=caller.policy, req=r) if r.status == "pending" else []}
                 for r in rows]
        grants = access.active_grants(session, user_id=caller.user.id, now=runtime.clock.now())
        for r in rows:
            session.expunge(r)
        for g in grants:
            session.expunge(g)
    return {"items": items, "grants": grants}


def _chosen_actions(values: list[str] | None) -> list[str]:
    """Actions named in a form or link (``actions=download`` or several boxes ticked), in the usual order."""
    named = {a.strip() for v in (values or []) for a in v.split(",") if a.strip()}
    return [a for a in GRANTABLE_ACTIONS if a in named]


def _form_context(caller: Caller, form: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    purposes = _approval_purposes(caller)
    return {"caller": caller, "purposes": purposes, "errors": errors, "form": form,
            "labels": {p: caller.policy.purposes[p].description for p in purposes},
            "actions": GRANTABLE_ACTIONS, "action_labels": ACTION_LABELS,
            "max_days": access.MAX_GRANT_DAYS, "default_days": access.DEFAULT_GRANT_DAYS}


ACTION_LABELS = {"play": "listen to the call", "transcript": "read its transcript",
                 "download": "download the audio", "export": "export it (release copies)"}


def _approval_purposes(caller: Caller) -> list[str]:
    return [p for p, rule in caller.policy.purposes.items()
            if rule.approval.required and caller.user.role in rule.roles]


@router.get("/access", response_class=HTMLResponse)
def access_page(request: Request, caller: Caller = Depends(page_caller),
                runtime: Runtime = Depends(get_runtime)) -> Response:
    status = request.query_params.get("status") or None
    if status not in (None, "pending", "approved", "rejected", "expired", "cancelled"):
        status = None
    ctx = _listing(runtime, caller, status)
    return render(request, "access.html", {"caller": caller, "status": status, **ctx,
                                           "flash": request.query_params.get("done")})


@router.get("/access/new", response_class=HTMLResponse)
def new_request_page(request: Request, caller: Caller = Depends(page_caller)) -> Response:
    purposes = _approval_purposes(caller)
    if not purposes:
        return denied(request, caller, f"No purpose your role ({caller.user.role}) may name needs an approval under "
                      "this policy, so there is nothing to request.",
                      "Open the recording and choose a purpose your role may use directly.",
                      title="Nothing to request")
    # A refusal links here naming what to ask for (``actions=download``); otherwise listen and read.
    asked = _chosen_actions(request.query_params.getlist("actions")) or list(access.DEFAULT_ACTIONS)
    return render(request, "access_new.html", _form_context(caller, {
        "recording_ids": request.query_params.get("recording", ""),
        "purpose": request.query_params.get("purpose", ""), "actions": asked}, []))


@router.post("/access/new", response_class=HTMLResponse)
def create_request(request: Request, recording_ids: Annotated[str, Form()] = "", purpose: Annotated[str, Form()] = "",
                   crm_ref: Annotated[str, Form()] = "", justification: Annotated[str, Form()] = "",
                   grant_days: Annotated[str, Form()] = "", actions: Annotated[list[str] | None, Form()] = None,
                   csrf_token: Annotated[str, Form()] = "",
                   caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    ids = tuple(x for x in recording_ids.replace(",", " ").split() if x)
    chosen = _chosen_actions(actions)
    form = {"recording_ids": recording_ids, "purpose": purpose, "crm_ref": crm_ref, "justification": justification,
            "grant_days": grant_days, "actions": chosen}
    errors: list[str] = []
    if not chosen:
        errors.append("actions: tick at least one thing you need to do with the recordings")
    days = access.DEFAULT_GRANT_DAYS
    if grant_days:
        if grant_days.isdigit():
            days = int(grant_days)
        else:
            errors.append("grant_days: a whole number of days")
    if not errors:
        try:
            with runtime.db.unit_of_work() as session:
                req = access.create_request(session, policy=caller.policy, actor=caller.actor, new=access.NewRequest(
                    recording_ids=ids, purpose=purpose, crm_ref=crm_ref.strip(), justification=justification.strip(),
                    actions=tuple(chosen), grant_days=days), source_ip=caller.source_ip, clock=runtime.clock)
                req_id = req.id
        except InvalidInput as exc:
            errors = [f"{p.location}: {p.message}" for p in exc.problems] or [exc.message]
        except (AccessDenied, NotFound) as exc:
            errors = [exc.message]
    if errors:
        return render(request, "access_new.html", _form_context(caller, form, errors), status_code=422)
    return RedirectResponse(f"/access?done=requested-{req_id}", status_code=303)


@router.post("/access/{request_id}/{verb}", response_class=HTMLResponse)
def decide_request(request_id: str, verb: str, request: Request, note: Annotated[str, Form()] = "",
                   actions: Annotated[list[str] | None, Form()] = None, narrow: Annotated[str, Form()] = "",
                   csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    if verb not in ("approve", "reject"):
        return render(request, "not_found.html", {"caller": caller, "what": "page"}, status_code=404)
    if verb == "reject" and not note.strip():
        return denied(request, caller, "A rejection needs a note saying why (the requester reads it).",
                      "Go back and write a note.", title="Note needed", status_code=422)
    refusal: AccessDenied | None = None
    with runtime.db.unit_of_work() as session:
        try:
            if verb == "approve":
                # The form ticks every action asked; the approver unticks what they do not approve.
                access.approve(session, policy=caller.policy, actor=caller.actor, request_id=request_id, note=note,
                               grant_days=None, actions=_chosen_actions(actions) if narrow else None,
                               source_ip=caller.source_ip,
                               mail_domain=SmtpSettings.from_env(runtime.settings.env).mail_domain,
                               clock=runtime.clock)
            else:
                access.reject(session, policy=caller.policy, actor=caller.actor, request_id=request_id, note=note,
                              source_ip=caller.source_ip, clock=runtime.clock)
        except AccessDenied as exc:
            refusal = exc  # on the audit log: commit, then show why
        except (NotFound, InvalidInput) as exc:
            return denied(request, caller, exc.message, "Reload the list of requests.", title="Cannot decide",
                          status_code=404 if isinstance(exc, NotFound) else 422)
    if refusal is not None:
        return denied(request, caller, refusal.message,
                      "Only a role the policy names as approver for this request may decide it, and never the "
                      "requester unless the policy lets an approver authorise their own request.",
                      clauses=refusal.clauses)
    return RedirectResponse(f"/access?done={verb}d", status_code=303)
