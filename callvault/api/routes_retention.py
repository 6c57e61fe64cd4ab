"""Retention over HTTP: cases, legal holds, a recording's destruction date, the retention report.

Managing cases and holds is for administering roles and leadership (``retention.service.may_manage``);
every refusal is audited and committed before the request is refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.audit import service as audit
from callvault.core.errors import AccessDenied, FieldProblem, InvalidInput, NotFound
from callvault.recordings import service as recordings
from callvault.retention import service as retention
from callvault.retention.schemas import (
    CaseCreate,
    CaseLink,
    CaseRead,
    HeldRead,
    HoldCreate,
    HoldRead,
    HoldRelease,
    HoldRenewal,
    PeriodRead,
    ReportRead,
    RetentionRead,
)
from callvault.runtime import Runtime

router = APIRouter(prefix="/retention", tags=["retention"])


def require_manager(runtime: Runtime, caller: Caller, action: str, what: str, object_type: str = "",
                    object_id: str = "") -> None:
    """Refuse (audited, committed) unless the caller may manage retention."""
    if retention.may_manage(caller.policy, caller.user.role):
        return
    _deny(runtime, caller, action, f"role {caller.user.role} may not {what}", object_type, object_id)


def require_holder(runtime: Runtime, caller: Caller, action: str, what: str, object_id: str = "") -> None:
    """Refuse (audited, committed) unless the caller's role is one ``retention.legal_hold.roles`` names."""
    if retention.may_hold(caller.policy, caller.user.role):
        return
    named = ", ".join(caller.policy.retention.legal_hold.roles) or "none"
    _deny(runtime, caller, action, f"role {caller.user.role} may not {what}: only the roles the policy names for "
                                   f"legal holds may (retention.legal_hold.roles: {named})", "legal_hold", object_id)


def _deny(runtime: Runtime, caller: Caller, action: str, reason: str, object_type: str, object_id: str) -> None:
    with runtime.db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(
            actor=caller.user.username, actor_role=caller.user.role, action=action, decision="deny",
            object_type=object_type, object_id=object_id[:200], reason=reason, clauses=("A9",),
            source_ip=caller.source_ip), clock=runtime.clock)
    raise AccessDenied(reason, reason=reason, clauses=("A9",))


@router.get("/cases", response_model=list[CaseRead])
def list_cases(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> list[CaseRead]:
    """Every case, newest first."""
    require_manager(runtime, caller, "retention.cases_list", "list cases")
    with runtime.db.unit_of_work() as session:
        return [CaseRead.model_validate(c) for c in retention.list_cases(session)]


@router.post("/cases", response_model=CaseRead, status_code=201)
def open_case(body: CaseCreate, caller: Caller = Depends(get_caller),
              runtime: Runtime = Depends(get_runtime)) -> CaseRead:
    """Open a complaint, investigation or legal claim. Recordings with this ``case_ref`` belong to it."""
    require_manager(runtime, caller, "retention.case_open", "open cases", "case", body.ref)
    with runtime.db.unit_of_work() as session:
        case = retention.open_case(session, policy=caller.policy, actor=caller.user.username,
                                   actor_role=caller.user.role, ref=body.ref, kind=body.kind,
                                   description=body.description, clock=runtime.clock)
        return CaseRead.model_validate(case)


@router.post("/cases/{ref}/resolve", response_model=CaseRead)
def resolve_case(ref: str, caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> CaseRead:
    """Resolve a case: under a policy that destroys on resolution, its recordings go after the grace period."""
    require_manager(runtime, caller, "retention.case_resolve", "resolve cases", "case", ref)
    with runtime.db.unit_of_work() as session:
        case = retention.resolve_case(session, policy=caller.policy, actor=caller.user.username,
                                      actor_role=caller.user.role, ref=ref, clock=runtime.clock)
        return CaseRead.model_validate(case)


@router.post("/cases/{ref}/reopen", response_model=CaseRead)
def reopen_case(ref: str, caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> CaseRead:
    """Reopen a resolved case; its remaining recordings fall back to the maximum age."""
    require_manager(runtime, caller, "retention.case_reopen", "reopen cases", "case", ref)
    with runtime.db.unit_of_work() as session:
        case = retention.reopen_case(session, policy=caller.policy, actor=caller.user.username,
                                     actor_role=caller.user.role, ref=ref, clock=runtime.clock)
        return CaseRead.model_validate(case)


@router.post("/cases/{ref}/recordings", response_model=RetentionRead)
def link_recording(ref: str, body: CaseLink, caller: Caller = Depends(get_caller),
                   runtime: Runtime = Depends(get_runtime)) -> RetentionRead:
    """Link a recording to a case; returns its new destruction date."""
    require_manager(runtime, caller, "retention.case_link", "link recordings to cases", "recording",
                    body.recording_id)
    with runtime.db.unit_of_work() as session:
        row = retention.link_recording(session, policy=caller.policy, actor=caller.user.username,
                                       actor_role=caller.user.role, ref=ref, recording_id=body.recording_id,
                                       clock=runtime.clock)
        return RetentionRead(recording_id=row.id, state=row.state, destroy_after=row.destroy_after,
                             retention_rule=row.retention_rule, on_hold=row.on_hold, case_ref=row.case_ref)


@router.get("/holds", response_model=list[HoldRead])
def list_holds(include_released: bool = False, caller: Caller = Depends(get_caller),
               runtime: Runtime = Depends(get_runtime)) -> list[HoldRead]:
    """Legal holds (active ones unless ``include_released``)."""
    require_manager(runtime, caller, "retention.holds_list", "list legal holds")
    with runtime.db.unit_of_work() as session:
        return [HoldRead.model_validate(h) for h in retention.list_holds(session, active_only=not include_released)]


@router.post("/holds", response_model=HoldRead, status_code=201)
def place_hold(body: HoldCreate, caller: Caller = Depends(get_caller),
               runtime: Runtime = Depends(get_runtime)) -> HoldRead:
    """Suspend destruction of a recording or a case, with a reason, an owner and a review date."""
    require_holder(runtime, caller, "retention.hold_place", "place legal holds",
                   body.recording_id or body.case_ref or "")
    with runtime.db.unit_of_work() as session:
        hold = retention.place_hold(session, policy=caller.policy, actor=caller.user.username,
                                    actor_role=caller.user.role, reason=body.reason, owner=body.owner,
                                    review_on=body.review_date, recording_id=body.recording_id,
                                    case_ref=body.case_ref, clock=runtime.clock)
        return HoldRead.model_validate(hold)


@router.post("/holds/{hold_id}/release", response_model=HoldRead)
def release_hold(hold_id: str, body: HoldRelease, caller: Caller = Depends(get_caller),
                 runtime: Runtime = Depends(get_runtime)) -> HoldRead:
    """End a legal hold; what it protected is destroyed at its date again."""
    require_holder(runtime, caller, "retention.hold_release", "release legal holds", hold_id)
    with runtime.db.unit_of_work() as session:
        hold = retention.release_hold(session, policy=caller.policy, actor=caller.user.username,
                                      actor_role=caller.user.role, hold_id=hold_id, reason=body.reason,
                                      clock=runtime.clock)
        return HoldRead.model_validate(hold)


@router.post("/holds/{hold_id}/renew", response_model=HoldRead)
def renew_hold(hold_id: str, body: HoldRenewal, caller: Caller = Depends(get_caller),
               runtime: Runtime = Depends(get_runtime)) -> HoldRead:
    """Keep a legal hold after reviewing it: a new review date (within the policy's bound) and why."""
    require_holder(runtime, caller, "retention.hold_renew", "renew legal holds", hold_id)
    with runtime.db.unit_of_work() as session:
        hold = retention.renew_hold(session, policy=caller.policy, actor=caller.user.username,
                                    actor_role=caller.user.role, hold_id=hold_id, review_on=body.review_date,
                                    reason=body.reason, clock=runtime.clock)
        return HoldRead.model_validate(hold)


@router.get("/recordings/{recording_id}", response_model=RetentionRead)
def recording_retention(recording_id: str, caller: Caller = Depends(get_caller),
                        runtime: Runtime = Depends(get_runtime)) -> RetentionRead:
    """When a recording you may see will be destroyed, and by which rule."""
    with runtime.db.unit_of_work() as session:
        row = recordings.get_visible(session, policy=caller.policy, actor=caller.actor, recording_id=recording_id,
                                     source_ip=caller.source_ip, clock=runtime.clock)
        found = None if row is None else RetentionRead(
            recording_id=row.id, state=row.state, destroy_after=row.destroy_after, retention_rule=row.retention_rule,
            on_hold=row.on_hold, case_ref=row.case_ref)
    if found is None:
        raise NotFound("no such recording")
    return found


@router.get("/report", response_model=ReportRead)
def report(
    start: Annotated[datetime, Query(alias="from", description="ISO 8601 with offset, inclusive")],
    end: Annotated[datetime, Query(alias="to", description="ISO 8601 with offset, exclusive")],
    caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime),
) -> ReportRead:
    """Per month: what was destroyed, by rule; and every active hold with its reason (A4, B11)."""
    for name, value in (("from", start), ("to", end)):
        if value.tzinfo is None:
            raise InvalidInput("invalid period:", [FieldProblem(name, "must include a UTC offset")])
    require_manager(runtime, caller, "retention.report", "read the retention report")
    with runtime.db.unit_of_work() as session:
        result = retention.report(session, start=start, end=end, clock=runtime.clock)
    return ReportRead(
        start=result.start, end=result.end, destroyed_total=result.destroyed_total,
        destroyed=[PeriodRead(period=p.period, total=p.total, by_rule=p.by_rule) for p in result.destroyed],
        held=[HeldRead(**h.__dict__) for h in result.held],
        overdue_for_destruction=result.overdue_for_destruction,
    )
