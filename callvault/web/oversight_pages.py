"""Oversight pages: misuse reports (B12), cases and legal holds, the compliance report, the audit
log's verification status, and the administrator's users / API tokens / policy versions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.api.deps import Caller, get_runtime, runtime_of
from callvault.audit import checkpoints
from callvault.audit import service as audit
from callvault.core.errors import AccessDenied, CallvaultError, InvalidInput, NotFound
from callvault.identity import service as identity
from callvault.identity import throttle
from callvault.identity.models import User
from callvault.notify.service import SmtpSettings
from callvault.oversight import policy_lifecycle, report_pdf, reports
from callvault.oversight import service as oversight
from callvault.policy.models import PolicyVersion
from callvault.retention import service as retention
from callvault.runtime import Runtime
from callvault.web.common import abilities, denied, display_zone, form_expired, page_caller, render, same

router = APIRouter(include_in_schema=False)


def _who(caller: Caller) -> oversight.Reporter:
    return oversight.Reporter(username=caller.user.username, role=caller.user.role, source_ip=caller.source_ip)


# ----------------------------------------------------------------------------------------- misuse
@router.get("/misuse", response_class=HTMLResponse)
def misuse_page(request: Request, caller: Caller = Depends(page_caller),
                runtime: Runtime = Depends(get_runtime)) -> Response:
    with runtime.db.unit_of_work() as session:
        rows = oversight.list_reports(session, policy=caller.policy, viewer=_who(caller), limit=200)
        handlers = [u.username for u in oversight.recipients(session, caller.policy)]
        for r in rows:
            session.expunge(r)
    return render(request, "misuse.html", {
        "caller": caller, "rows": rows, "errors": [], "form": {}, "flash": request.query_params.get("done"),
        "moved_to": request.query_params.get("to", "")[:64], "flash_error": None, "moves": _moves(),
        "handlers": handlers, "zone": display_zone(request, caller),
        "recipient": oversight.is_recipient(caller.policy, caller.user.role),
        "recipient_roles": caller.policy.misuse.report_to_roles,
        "overdue": {r.id for r in rows if oversight.is_overdue(r, runtime.clock.now())}})


def _moves() -> dict[str, list[str]]:
    """The status moves the service allows (``oversight.TRANSITIONS``), to offer only those."""
    return {src: sorted(dst) for src, dst in oversight.TRANSITIONS.items()}


def _committing_refusal(runtime: Runtime, act: Callable[[Session], object]) -> None:
    """Run a report action; a refusal (``AccessDenied``) is raised only after the unit of work commits,
    so the service's audit entry of the refused attempt is kept (as the API does)."""
    refused: AccessDenied | None = None
    with runtime.db.unit_of_work() as session:
        try:
            act(session)
        except AccessDenied as exc:
            refused = exc
    if refused is not None:
        raise refused


@router.post("/misuse/{report_id}/status", response_class=HTMLResponse)
def move_misuse(report_id: str, request: Request, status: Annotated[str, Form()] = "",
                note: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """A recipient moves a report (open → investigating → closed, or reopens it): the service decides
    who may and which moves exist, and audits the move with its note."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    try:
        _committing_refusal(runtime, lambda session: oversight.change_status(
            session, policy=caller.policy, actor=_who(caller), report_id=report_id, status=status, note=note[:500],
            clock=runtime.clock))
    except CallvaultError as exc:
        reason = getattr(exc, "reason", "") or exc.message
        return denied(request, caller, reason[:1].upper() + reason[1:] + ".",
                      "Only the report's recipients move it, along open → investigating → closed.",
                      title="Not moved",
                      status_code=(403 if isinstance(exc, AccessDenied) else 404 if isinstance(exc, NotFound)
                                   else 422 if isinstance(exc, InvalidInput) else 409))
    return RedirectResponse(f"/misuse?done=moved&to={status}", status_code=303)


@router.post("/misuse/{report_id}/assignee", response_class=HTMLResponse)
def assign_misuse(report_id: str, request: Request, assignee: Annotated[str, Form()] = "",
                  csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                  runtime: Runtime = Depends(get_runtime)) -> Response:
    """A recipient gives a report to one of the policy's recipients (or takes it back); the service decides
    who may and who can be named, and audits it (``misuse.assigned``)."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    try:
        _committing_refusal(runtime, lambda session: oversight.assign(
            session, policy=caller.policy, actor=_who(caller), report_id=report_id, assignee=assignee or None,
            clock=runtime.clock))
    except CallvaultError as exc:
        problems = getattr(exc, "problems", None) or []
        reason = problems[0].message if problems else (getattr(exc, "reason", "") or exc.message)
        return denied(request, caller, reason[:1].upper() + reason[1:] + ".",
                      "Only the report's recipients assign it, to one of the roles the policy routes reports to.",
                      title="Not assigned",
                      status_code=(403 if isinstance(exc, AccessDenied) else 404 if isinstance(exc, NotFound)
                                   else 422))
    return RedirectResponse(f"/misuse?done=assigned&to={quote(assignee[:64])}", status_code=303)


@router.post("/misuse", response_class=HTMLResponse)
def file_misuse(request: Request, summary: Annotated[str, Form()] = "", description: Annotated[str, Form()] = "",
                subject_user: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    errors = []
    if len(summary) > 300:
        errors.append("summary: at most 300 characters")
    if not errors:
        try:
            with runtime.db.unit_of_work() as session:
                oversight.file_report(session, policy=caller.policy, reporter=_who(caller), summary=summary,
                                      description=description[:20_000], subject_user=subject_user.strip() or None,
                                      mail_domain=SmtpSettings.from_env(runtime.settings.env).mail_domain,
                                      clock=runtime.clock)
        except InvalidInput as exc:
            errors = [f"{p.location}: {p.message}" for p in exc.problems] or [exc.message]
    if errors:
        return render(request, "misuse.html", {
            "caller": caller, "rows": [], "errors": errors, "flash": None,
            "form": {"summary": summary, "description": description, "subject_user": subject_user},
            "moves": {}, "flash_error": None, "handlers": [],
            "recipient": oversight.is_recipient(caller.policy, caller.user.role),
            "recipient_roles": caller.policy.misuse.report_to_roles}, status_code=422)
    return RedirectResponse("/misuse?done=filed", status_code=303)


# Cases and legal holds: casework_pages.py.


def _refuse(request: Request, caller: Caller, runtime: Runtime, action: str, reason: str, allow: str,
            clauses: tuple[str, ...] = ()) -> Response:
    """A page-level refusal, audited and committed like the API's."""
    with runtime.db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(actor=caller.user.username, actor_role=caller.user.role,
                                               action=action, decision="deny", reason=reason, clauses=clauses,
                                               source_ip=caller.source_ip), clock=runtime.clock)
    return denied(request, caller, reason[:1].upper() + reason[1:] + ".", allow, clauses=clauses)


# ----------------------------------------------------------------------------------------- audit search, register
def _overseer(request: Request, caller: Caller, runtime: Runtime, action: str) -> Response | None:
    """Audit search and the destruction register are for the roles that answer for the policy:
    administering roles, leadership (retention managers) and misuse-report recipients (B12)."""
    can = abilities(caller)
    if can["admin"] or can["manage_retention"] or can["misuse_recipient"]:
        return None
    return _refuse(request, caller, runtime, action, f"role {caller.user.role} may not search the audit log",
                   "The audit log and the destruction register are for administering roles, leadership and "
                   "misuse-report recipients.", ("A10",))


def _day(value: str | None, zone: ZoneInfo, *, next_day: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"“{value[:20]}” is not a date like 2026-11-01") from exc
    return datetime.combine(day + timedelta(days=1 if next_day else 0), time(0), tzinfo=zone)


@router.get("/oversight/audit", response_class=HTMLResponse)
def audit_search_page(request: Request, caller: Caller = Depends(page_caller),
                      runtime: Runtime = Depends(get_runtime)) -> Response:
    """Who did what, to which recording, why and with what answer. Searching is itself audited."""
    refused = _overseer(request, caller, runtime, "audit.search")
    if refused is not None:
        return refused
    q = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
    zone = display_zone(request, caller)
    rows: list[Any] = []
    error = None
    if q:
        try:
            start, end = _day(q.get("from"), zone), _day(q.get("to"), zone, next_day=True)
            if start and end and start >= end:
                raise InvalidInput(f"From ({q['from']}) is after To ({q['to']}); swap them")
            decision = q.get("decision")
            if decision not in (None, "allow", "deny"):
                raise InvalidInput("Decision: choose allowed or refused")
            with runtime.db.unit_of_work() as session:
                rows = audit.search_entries(session, actor=q.get("person"), object_id=q.get("recording"),
                                            purpose=q.get("purpose"), decision=decision, start=start, end=end)
                for r in rows:
                    session.expunge(r)
                audit.append(session, audit.AuditEvent(
                    actor=caller.user.username, actor_role=caller.user.role, action="audit.searched",
                    decision="allow", source_ip=caller.source_ip, clauses=("A10",),
                    details={"filters": sorted(q), "hits": len(rows)}), clock=runtime.clock)
        except InvalidInput as exc:
            error = exc.message
    return render(request, "oversight_audit.html", {
        "caller": caller, "q": q, "rows": rows, "error": error, "zone": zone,
        "purposes": list(caller.policy.purposes), "searched": bool(q)}, status_code=422 if error else 200)


@router.get("/oversight/destroyed", response_class=HTMLResponse)
def destruction_register_page(request: Request, caller: Caller = Depends(page_caller),
                              runtime: Runtime = Depends(get_runtime)) -> Response:
    """The destruction register: proof of what was destroyed, when, by which rule (B11, A9). No content."""
    refused = _overseer(request, caller, runtime, "retention.register")
    if refused is not None:
        return refused
    zone = display_zone(request, caller)
    with runtime.db.unit_of_work() as session:
        rows = retention.list_destructions(session)
        for r in rows:
            session.expunge(r)
    return render(request, "destroyed.html", {"caller": caller, "rows": rows, "zone": zone})


# ----------------------------------------------------------------------------------------- compliance report
@router.get("/reports/compliance", response_class=HTMLResponse)
def compliance_page(request: Request, caller: Caller = Depends(page_caller),
                    runtime: Runtime = Depends(get_runtime)) -> Response:
    period = _report_period(request, caller, runtime)
    if isinstance(period, Response):
        return period
    start, end = period
    report = _report(runtime, caller, start, end, "html")
    html = reports.to_html(report, labels=_purpose_labels(caller))
    body = html[html.index("<h2>"):html.rindex("</body>")]  # the report's own sections and SVG chart
    return render(request, "compliance.html", {"caller": caller, "body": Markup(body),  # noqa: S704 (escaped there)
                                               "start": start, "end": end})


def _report_period(request: Request, caller: Caller, runtime: Runtime) -> tuple[datetime, datetime] | Response:
    """The compliance report's gate, shared by the page and its CSV: the roles that may read it (a refusal
    page otherwise, audited), then the period asked for (a 422 page when it is not a date)."""
    can = abilities(caller)
    if not (can["admin"] or can["manage_retention"] or can["misuse_recipient"]):
        return _refuse(request, caller, runtime, "report.compliance", f"role {caller.user.role} may not read the "
                       "compliance report", "It is for administering roles, leadership and misuse-report recipients.")
    period = _period(request)
    if period is None:
        return denied(request, caller, "The period is not a date like 2026-11-01.", "Fix the dates and try again.",
                      title="Invalid period", status_code=422)
    return period


def _period(request: Request) -> tuple[datetime, datetime] | None:
    """The report's period from ``from``/``to`` (default: the 30 days to now, by the product clock)."""
    now = runtime_of(request).clock.now()
    try:
        end = datetime.fromisoformat(request.query_params["to"]) if request.query_params.get("to") else now
        start = (datetime.fromisoformat(request.query_params["from"]) if request.query_params.get("from")
                 else end - timedelta(days=30))
    except ValueError:
        return None
    start, end = (d if d.tzinfo else d.replace(tzinfo=UTC) for d in (start, end))
    return start, end


def _report(runtime: Runtime, caller: Caller, start: datetime, end: datetime, fmt: str) -> reports.ComplianceReport:
    """Build the report and audit who read or downloaded it, for which period, in which format."""
    with runtime.db.unit_of_work() as session:
        report = reports.build_report(session, start=start, end=end, today=runtime.clock.now().date())
        audit.append(session, audit.AuditEvent(actor=caller.user.username, actor_role=caller.user.role,
                                               action="report.compliance", decision="allow",
                                               source_ip=caller.source_ip,
                                               details={"from": start.isoformat(), "to": end.isoformat(),
                                                        "format": fmt}),
                     clock=runtime.clock)
    return report


@router.get("/reports/compliance.csv")
def compliance_csv(request: Request, caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    """The same report as one long CSV table (``callvault report compliance --format csv``), audited."""
    period = _report_period(request, caller, runtime)
    if isinstance(period, Response):
        return period
    report = _report(runtime, caller, *period, "csv")
    name = f"compliance-{period[0].date().isoformat()}-{period[1].date().isoformat()}.csv"
    return Response(reports.to_csv(report), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@router.get("/reports/compliance.pdf")
def compliance_pdf(request: Request, caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    """The same report as a PDF (its tables and the weekly chart, legend in the policy's names), audited."""
    period = _report_period(request, caller, runtime)
    if isinstance(period, Response):
        return period
    report = _report(runtime, caller, *period, "pdf")
    name = f"compliance-{period[0].date().isoformat()}-{period[1].date().isoformat()}.pdf"
    title = f"Compliance report · {caller.policy.organisation}"
    return Response(report_pdf.to_pdf(report, title=title, labels=_purpose_labels(caller)),
                    media_type="application/pdf", headers={
                        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def _purpose_labels(caller: Caller) -> dict[str, str]:
    """The policy's own names for its purposes: the chart's legend reads as the policy does."""
    return {p: rule.description for p, rule in caller.policy.purposes.items() if rule.description}


# ----------------------------------------------------------------------------------------- admin
def admin_only(request: Request, caller: Caller, runtime: Runtime, what: str) -> Response | None:
    """None for an administering role; otherwise the audited refusal page (``admin.<what>``)."""
    if abilities(caller)["admin"]:
        return None
    return _refuse(request, caller, runtime, f"admin.{what}", f"role {caller.user.role} does not administer the "
                   "system", "These pages are for the roles the policy lets administer callvault.")


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_page(request: Request, caller: Caller = Depends(page_caller),
               runtime: Runtime = Depends(get_runtime)) -> Response:
    refused = admin_only(request, caller, runtime, "audit")
    if refused is not None:
        return refused
    with runtime.db.unit_of_work() as session:
        latest = checkpoints.latest_checkpoint(session)
        cp = checkpoints.checkpoint_dict(latest) if latest is not None else None
        result: Any = audit.verify_chain(session) if request.query_params.get("verify") else None
    return render(request, "audit.html", {"caller": caller, "checkpoint": cp, "result": result})


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, caller: Caller = Depends(page_caller),
               runtime: Runtime = Depends(get_runtime)) -> Response:
    refused = admin_only(request, caller, runtime, "users")
    if refused is not None:
        return refused
    return users_page_with(request, caller, runtime)


def users_page_with(request: Request, caller: Caller, runtime: Runtime, *, status_code: int = 200,
                    **forms: Any) -> Response:
    """The users page, with what a refused form needs to show again (``add_problems`` and ``add_form``,
    ``edit_problems`` and ``edit_user``, ``token_problems`` and ``token_form``)."""
    with runtime.db.unit_of_work() as session:
        users = identity.list_users(session, policy=caller.policy, counters=runtime.counters, clock=runtime.clock)
        accounts = list(session.scalars(select(User)))
        names = {u.id: u.username for u in accounts}
        token_owners = identity.may_own_tokens_from(caller.policy, caller.user, accounts)
        tokens = [{"t": t, "user": names.get(t.user_id, "?")} for t in identity.list_tokens(session)]
        for t in tokens:
            session.expunge(t["t"])
    context = {"caller": caller, "users": users, "tokens": tokens, "now": runtime.clock.now(),
               "flash": request.query_params.get("done"), "flash_user": request.query_params.get("user", ""),
               "roles": sorted(caller.policy.roles), "scopes": identity.SCOPES, "add_problems": [], "add_form": {},
               "edit_problems": [], "edit_user": "", "token_problems": [], "token_form": {},
               "token_owners": sorted(token_owners)}
    return render(request, "users.html", {**context, **forms}, status_code=status_code)


@router.post("/admin/users/{username}/unlock", response_class=HTMLResponse)
def unlock_user(username: str, request: Request, csrf_token: Annotated[str, Form()] = "",
                caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = admin_only(request, caller, runtime, "unlock")
    if refused is not None:
        return refused
    with runtime.db.unit_of_work() as session:
        throttle.unlock(session, counters=runtime.counters, username=username)
        audit.append(session, audit.AuditEvent(actor=caller.user.username, actor_role=caller.user.role,
                                               action="auth.unlocked", object_type="user", object_id=username[:200],
                                               clauses=("A12",), source_ip=caller.source_ip), clock=runtime.clock)
    return RedirectResponse("/admin/users?done=unlocked", status_code=303)


@router.get("/admin/policy", response_class=HTMLResponse)
def policy_page(request: Request, caller: Caller = Depends(page_caller),
                runtime: Runtime = Depends(get_runtime)) -> Response:
    refused = admin_only(request, caller, runtime, "policy")
    if refused is not None:
        return refused
    return policy_page_with(request, caller, runtime)


def policy_page_with(request: Request, caller: Caller, runtime: Runtime, *, check: dict[str, Any] | None = None,
                     status_code: int = 200) -> Response:
    """Versions, the review status (B13), a diff when asked and, after an upload, ``policy check``'s answer."""
    q = request.query_params
    diff = None
    error = None
    with runtime.db.unit_of_work() as session:
        versions = list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.loaded_at.desc())))
        for v in versions:
            session.expunge(v)
        review = policy_lifecycle.review_status(session, clock=runtime.clock)
        if q.get("old") and q.get("new"):
            try:
                diff = policy_lifecycle.diff_versions(session, q["old"], q["new"])
            except CallvaultError as exc:
                error = exc.message
    return render(request, "policy.html", {"caller": caller, "versions": versions, "diff": diff, "error": error,
                                           "q": q, "review": review, "check": check, "flash": q.get("done"),
                                           "today": runtime.clock.now().date()}, status_code=status_code)
