"""The audit tamper alarm on the pages: a banner on every page while it is raised, and the page where an
administrator acknowledges it (before, only ``callvault audit acknowledge-alarm`` could).

Why a banner on every page: an alarm means the audit log, the record every other promise rests on, may
have been altered, and no checkpoint is signed until someone looks. The mail goes to the policy's
misuse-report recipients (B12), so they see the banner too; acknowledging stays with administering roles.

Thin over ``callvault.audit.alarm``: the same role check as the CLI (``acknowledgement_refusal``), the
same ``acknowledge`` with its required reason and its ``audit.alarm_acknowledged`` entry, and the same
``deny`` entry for a role that may not. The CLI asks for no step-up code, so neither does the page; the
signed-in session already passed the password and the one-time code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callvault.api.deps import Caller, get_runtime, runtime_of
from callvault.audit import alarm
from callvault.core.errors import Conflict, FieldProblem, InvalidInput
from callvault.runtime import Runtime
from callvault.web import oversight_pages
from callvault.web.common import abilities, denied, form_expired, page_caller, render, same, templates

router = APIRouter(include_in_schema=False)
PAGE = "/admin/audit/alarm"


def _view(row: Any) -> dict[str, Any]:
    """What the banner and the page show of an alarm (no content: entry numbers and what is wrong)."""
    raised: datetime = row.raised_at
    return {"id": row.id, "problem": row.problem, "first_bad_seq": row.first_bad_seq,
            "raised_at": raised.isoformat(timespec="seconds"), "raised_by": row.raised_by,
            "acknowledged_at": row.acknowledged_at.isoformat(timespec="seconds") if row.acknowledged_at else None,
            "acknowledged_by": row.acknowledged_by, "ack_reason": row.ack_reason, "rebase_seq": row.rebase_seq}


def alarm_banner(request: Request, caller: Caller) -> dict[str, Any] | None:
    """The open alarm, for the roles that answer for the log (administering roles, misuse-report
    recipients); None for everyone else or when none is raised. One indexed query per page."""
    can = abilities(caller)
    if not (can["admin"] or can["misuse_recipient"]):
        return None
    with runtime_of(request).db.unit_of_work() as session:
        row = alarm.open_alarm(session)
        return {**_view(row), "may_acknowledge": can["admin"]} if row is not None else None


templates.env.globals["alarm_banner"] = alarm_banner


def _page(request: Request, caller: Caller, runtime: Runtime, *, problems: list[FieldProblem] | None = None,
          reason: str = "", status_code: int = 200) -> Response:
    with runtime.db.unit_of_work() as session:
        open_row = alarm.open_alarm(session)
        latest = alarm.latest_alarm(session)
        current = _view(open_row) if open_row is not None else None
        previous = _view(latest) if latest is not None and open_row is None else None
    return render(request, "audit_alarm.html", {
        "caller": caller, "alarm": current, "previous": previous, "problems": problems or [], "reason": reason,
        "done": request.query_params.get("done") == "acknowledged"}, status_code=status_code)


@router.get(PAGE, response_class=HTMLResponse)
def alarm_page(request: Request, caller: Caller = Depends(page_caller),
               runtime: Runtime = Depends(get_runtime)) -> Response:
    """The open alarm in full and the acknowledgement form (administering roles; others: audited 403)."""
    refused = oversight_pages.admin_only(request, caller, runtime, "audit_alarm")
    if refused is not None:
        return refused
    return _page(request, caller, runtime)


@router.post(PAGE, response_class=HTMLResponse)
def acknowledge(request: Request, reason: Annotated[str, Form()] = "", rebase: Annotated[str, Form()] = "",
                csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                runtime: Runtime = Depends(get_runtime)) -> Response:
    """``callvault audit acknowledge-alarm --reason … [--rebase]`` from the page."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    user = caller.user
    refusal = alarm.acknowledgement_refusal(caller.policy, username=user.username, role=user.role,
                                            active=bool(user.active))
    if refusal is not None:
        with runtime.db.unit_of_work() as session:
            alarm.record_refusal(session, actor=user.username, actor_role=user.role, reason=refusal,
                                 source_ip=caller.source_ip, clock=runtime.clock)
        return denied(request, caller, refusal[:1].upper() + refusal[1:] + ".",
                      "An administering role acknowledges the alarm, on this page or with "
                      "`callvault audit acknowledge-alarm`.")
    try:
        with runtime.db.unit_of_work() as session:
            alarm.acknowledge(session, actor=user.username, actor_role=user.role, reason=reason,
                              rebase=rebase == "yes", source_ip=caller.source_ip, clock=runtime.clock)
    except InvalidInput as exc:
        return _page(request, caller, runtime, problems=exc.problems, reason=reason, status_code=422)
    except Conflict as exc:  # acknowledged meanwhile (another tab, another administrator, the CLI)
        return _page(request, caller, runtime, problems=[FieldProblem("", exc.message)], status_code=409)
    return RedirectResponse("/admin/audit/alarm?done=acknowledged", status_code=303)
