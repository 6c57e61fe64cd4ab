"""The live page: calls being recorded now (A7, A14).

For the agent on a call: pause / resume / stop / "personal" buttons (plain forms, so they work without
JavaScript) and, when the policy says so, who is monitoring them and why. For roles the policy lets
monitor: the calls they may listen to (agent, team, direction, duration, consent state), a purpose
(spot check by default) named before listening, and a Listen button that ``static/live.js`` turns into
a WebSocket + Web Audio player. The page refreshes its list every few seconds from ``/api/v1/live/calls``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callvault.api.deps import Caller, get_runtime
from callvault.api.routes_control import _audit_denial
from callvault.capture import control
from callvault.capture.personal import PersonalRefused
from callvault.core.errors import AccessDenied, CallvaultError
from callvault.live import service as live
from callvault.notify.service import SmtpSettings
from callvault.runtime import Runtime
from callvault.web.common import denied, form_expired, page_caller, render, same

router = APIRouter(include_in_schema=False)

CONTROL_LABELS = {"pause": "Pause recording", "resume": "Resume recording", "stop": "Stop recording",
                  "personal": "Personal call: keep nothing"}


@router.get("/live", response_class=HTMLResponse)
def live_page(request: Request, caller: Caller = Depends(page_caller),
              runtime: Runtime = Depends(get_runtime)) -> Response:
    rules = caller.policy.monitoring
    with runtime.db.unit_of_work() as session:
        calls = live.visible_calls(session, policy=caller.policy, actor=caller.actor, clock=runtime.clock)
    purposes = [p for p in rules.purposes if caller.user.role in caller.policy.purposes[p].roles] \
        if rules.enabled and caller.user.role in rules.roles else []
    return render(request, "live.html", {
        "caller": caller, "own": [c for c in calls if c.own], "monitorable": [c for c in calls if c.may_monitor],
        "purposes": purposes, "default_purpose": rules.default_purpose if rules.default_purpose in purposes
        else next(iter(purposes), None), "notify_agent": rules.notify_agent, "parties": rules.parties,
        "labels": CONTROL_LABELS, "done": request.query_params.get("done")})


@router.post("/live/control", response_class=HTMLResponse)
def control_live_call(request: Request, call_id: Annotated[str, Form()] = "", action: Annotated[str, Form()] = "",
                      csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                      runtime: Runtime = Depends(get_runtime)) -> Response:
    """The agent's buttons: the same control as ``POST /api/v1/calls/{call_id}/control``, at this instant."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    try:
        with runtime.db.unit_of_work() as session:
            filed = control.file_control(session, policy=caller.policy, actor=caller.actor, kind=action,
                                         at=None if action == "personal" else runtime.clock.now(), call_id=call_id,
                                         source_ip=caller.source_ip, clock=runtime.clock,
                                         mail_domain=SmtpSettings.from_env(runtime.settings.env).mail_domain)
        if filed.live:
            request.app.state.live_relays.controlled(filed.call_id, action, now=True)
        control.apply_to_stored(db=runtime.db, store=runtime.store, keyring=runtime.keyring, filed=filed,
                                actor=caller.actor, source_ip=caller.source_ip, clock=runtime.clock)
    except AccessDenied as exc:
        _audit_denial(runtime, caller, f"recording.control_{action}", "call", call_id, exc)
        return denied(request, caller, exc.message, "Only the agent on the call (or the phone system relaying the "
                      "agent's own button) may stop, pause or discard it.", clauses=exc.clauses)
    except PersonalRefused as exc:
        _audit_denial(runtime, caller, f"recording.control_{action}", "call", call_id, exc)
        return denied(request, caller, exc.message, "The recording is kept.", title="Not done", status_code=409,
                      clauses=exc.clauses)
    except CallvaultError as exc:
        return denied(request, caller, exc.message, "Reload the page and try again.", title="Not done",
                      status_code=409)
    return RedirectResponse(f"/live?done={action}", status_code=303)
