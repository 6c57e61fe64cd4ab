"""Oversight over HTTP: misuse reports (B12) and who still owes a policy acknowledgement (B13)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.audit import service as audit
from callvault.core.errors import AccessDenied, NotFound
from callvault.notify.service import SmtpSettings
from callvault.oversight import policy_lifecycle
from callvault.oversight import service as oversight
from callvault.oversight.models import MisuseReport
from callvault.oversight.schemas import (
    AcknowledgementStatus,
    MisuseAssignment,
    MisuseReportCreate,
    MisuseReportRead,
    MisuseStatusChange,
    PendingAcknowledgement,
)
from callvault.runtime import Runtime

router = APIRouter(tags=["oversight"])


def _who(caller: Caller) -> oversight.Reporter:
    return oversight.Reporter(username=caller.user.username, role=caller.user.role, source_ip=caller.source_ip)


@router.post("/misuse-reports", response_model=MisuseReportRead, status_code=201)
def file_misuse_report(body: MisuseReportCreate, caller: Caller = Depends(get_caller),
                       runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """File a report of suspected misuse or a breach. Anyone signed in may; it is mailed to the roles the
    policy names (``misuse.report_to_roles``) except anyone it is about."""
    domain = SmtpSettings.from_env(runtime.settings.env).mail_domain
    with runtime.db.unit_of_work() as session:
        report = oversight.file_report(
            session, policy=caller.policy, reporter=_who(caller), summary=body.summary,
            description=body.description, subject_user=body.subject_user, evidence=body.evidence,
            mail_domain=domain, clock=runtime.clock)
        assert report is not None  # no dedup key: never a duplicate
        data = MisuseReportRead.model_validate(report).model_dump(mode="json")
    return JSONResponse(data, status_code=201, headers={"Location": f"/api/v1/misuse-reports/{data['id']}"})


@router.get("/misuse-reports", response_model=list[MisuseReportRead])
def list_misuse_reports(
    caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime),
    status: Annotated[str | None, Query(description="open | investigating | closed")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[MisuseReportRead]:
    """Recipients see every report except ones about themselves; everyone else sees the ones they filed."""
    with runtime.db.unit_of_work() as session:
        rows = oversight.list_reports(session, policy=caller.policy, viewer=_who(caller), status=status,
                                      limit=limit)
        return [MisuseReportRead.model_validate(r) for r in rows]


@router.get("/misuse-reports/{report_id}", response_model=MisuseReportRead)
def get_misuse_report(report_id: str, caller: Caller = Depends(get_caller),
                      runtime: Runtime = Depends(get_runtime)) -> MisuseReportRead:
    """One report, for its recipients and for whoever filed it (others: 404, and the look is audited)."""
    with runtime.db.unit_of_work() as session:
        row = oversight.get_report(session, policy=caller.policy, viewer=_who(caller), report_id=report_id,
                                   clock=runtime.clock)
        found = MisuseReportRead.model_validate(row) if row is not None else None
    if found is None:
        raise NotFound("no such misuse report")
    return found


@router.post("/misuse-reports/{report_id}/status", response_model=MisuseReportRead)
def change_misuse_status(report_id: str, body: MisuseStatusChange, caller: Caller = Depends(get_caller),
                         runtime: Runtime = Depends(get_runtime)) -> MisuseReportRead:
    """Move a report: open → investigating → closed (closed → investigating reopens). Recipients only."""
    return _committing_refusals(runtime, lambda session: oversight.change_status(
        session, policy=caller.policy, actor=_who(caller), report_id=report_id, status=body.status, note=body.note,
        clock=runtime.clock))


@router.post("/misuse-reports/{report_id}/assignee", response_model=MisuseReportRead)
def assign_misuse_report(report_id: str, body: MisuseAssignment, caller: Caller = Depends(get_caller),
                         runtime: Runtime = Depends(get_runtime)) -> MisuseReportRead:
    """Give a report to a recipient to handle (null takes it back). Recipients only; audited."""
    return _committing_refusals(runtime, lambda session: oversight.assign(
        session, policy=caller.policy, actor=_who(caller), report_id=report_id, assignee=body.assignee,
        clock=runtime.clock))


def _committing_refusals(runtime: Runtime, change: Callable[[Session], MisuseReport]) -> MisuseReportRead:
    """Run ``change`` in a unit of work; a refusal's audit entry (appended by the service) is committed
    before the refusal is answered, so it is on the record (raising inside would roll it back)."""
    denied: AccessDenied | None = None
    result: MisuseReportRead | None = None
    with runtime.db.unit_of_work() as session:
        try:
            result = MisuseReportRead.model_validate(change(session))
        except AccessDenied as exc:
            denied = exc
    if denied is not None:
        raise denied
    assert result is not None
    return result


@router.get("/policy/acknowledgements", response_model=AcknowledgementStatus)
def pending_acknowledgements(caller: Caller = Depends(get_caller),
                             runtime: Runtime = Depends(get_runtime)) -> AcknowledgementStatus:
    """Administrators: who has not acknowledged the policy version in force (and so reaches no content)."""
    role = caller.policy.roles.get(caller.user.role)
    if not (role and role.can_administer):
        with runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=caller.user.username, actor_role=caller.user.role, action="policy.acknowledgements_read",
                decision="deny", reason=f"role {caller.user.role} does not administer the system",
                source_ip=caller.source_ip, clauses=("B13",)), clock=runtime.clock)
        raise AccessDenied(f"role {caller.user.role} may not list acknowledgements")
    with runtime.db.unit_of_work() as session:
        pending = policy_lifecycle.unacknowledged_users(session, policy=caller.policy)
    return AcknowledgementStatus(
        policy_id=caller.policy.policy_id, version=caller.policy.version,
        acknowledgement_required=caller.policy.acknowledgement_required,
        pending=[PendingAcknowledgement(**p) for p in pending])
