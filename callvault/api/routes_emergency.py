"""Emergency ("break the glass") access and the accounting of disclosures over HTTP.

Thin over ``access.emergency`` and ``access.accounting``: the services decide (roles, reason, length,
never one's own review, deny by default for the accounting); every refusal is put on record by
``access.refusals.on_record`` before it is answered.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from callvault.access import accounting, emergency, refusals
from callvault.access.schemas import (
    AccessRead,
    ActiveRead,
    DeclarationCreate,
    DeclarationRead,
    DisclosureList,
    DisclosureRead,
    ReviewCreate,
    ReviewTaskRead,
)
from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.audit.models import AuditEntry
from callvault.runtime import Runtime

router = APIRouter(tags=["emergency access"])


def _on_record(runtime: Runtime, caller: Caller, action: str, object_type: str = "", object_id: str = ""
               ) -> refusals.Guard:
    return refusals.on_record(runtime.db, actor=caller.user.username, actor_role=caller.user.role, action=action,
                              object_type=object_type, object_id=object_id, source_ip=caller.source_ip,
                              clock=runtime.clock)


def access_read(entry: AuditEntry) -> AccessRead:
    return AccessRead(at=entry.at, action=entry.action.removeprefix("recording."), recording_id=entry.object_id,
                      decision=entry.decision, purpose=entry.purpose, audit_seq=entry.seq)


@router.post("/emergency/declarations", response_model=DeclarationRead, status_code=201)
def declare(body: DeclarationCreate, caller: Caller = Depends(get_caller),
            runtime: Runtime = Depends(get_runtime)) -> DeclarationRead:
    """Declare an emergency (``emergency_access.roles``): for its minutes, recordings beyond your role's
    scope open as the policy allows, each access audited with the declaration; a reviewer looks at it later."""
    with _on_record(runtime, caller, "emergency.declare", "emergency_declaration"), \
            runtime.db.unit_of_work() as session:
        row = emergency.declare(session, policy=caller.policy, actor=caller.actor, reason=body.reason,
                                minutes=body.minutes, source_ip=caller.source_ip, clock=runtime.clock)
        return DeclarationRead.model_validate(row)


@router.get("/emergency/active", response_model=ActiveRead)
def active(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> ActiveRead:
    """Your declaration in force now, with the time left (what every page's banner shows)."""
    now = runtime.clock.now()
    with runtime.db.read_only() as session:
        facts = emergency.active_for(session, user_id=caller.user.id, now=now)
    if facts is None:
        return ActiveRead(active=False)
    return ActiveRead(active=True, declaration_id=facts.declaration_id, ends_at=facts.ends_at,
                      seconds_left=max(0, int((facts.ends_at - now).total_seconds())))


@router.get("/emergency/reviews", response_model=list[ReviewTaskRead])
def reviews(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> list[ReviewTaskRead]:
    """The review queue (``emergency_access.reviewer_roles``): declarations by others not yet reviewed,
    oldest due first, each with the accesses made under it and whether its review is overdue."""
    with _on_record(runtime, caller, "emergency.reviews_list"), runtime.db.read_only() as session:
        tasks = emergency.review_queue(session, policy=caller.policy, actor=caller.actor, clock=runtime.clock)
        return [ReviewTaskRead(declaration=DeclarationRead.model_validate(t.declaration),
                               accesses=[access_read(e) for e in t.accesses], overdue=t.overdue) for t in tasks]


@router.post("/emergency/declarations/{declaration_id}/review", response_model=DeclarationRead)
def review(declaration_id: str, body: ReviewCreate, caller: Caller = Depends(get_caller),
           runtime: Runtime = Depends(get_runtime)) -> DeclarationRead:
    """Judge a declaration justified or misuse (never your own); misuse files a misuse report."""
    with _on_record(runtime, caller, "emergency.review", "emergency_declaration", declaration_id), \
            runtime.db.unit_of_work() as session:
        row = emergency.review(session, policy=caller.policy, actor=caller.actor, declaration_id=declaration_id,
                               outcome=body.outcome, notes=body.notes, source_ip=caller.source_ip, clock=runtime.clock)
        return DeclarationRead.model_validate(row)


NumberQuery = Annotated[str, Query(max_length=40, description="the caller's number, E.164 (e.g. +14165550142)")]
SinceQuery = Annotated[date | None, Query(description="only disclosures on or after this day")]


@router.get("/disclosures", response_model=DisclosureList)
def disclosures(number: NumberQuery, since: SinceQuery = None, caller: Caller = Depends(get_caller),
                runtime: Runtime = Depends(get_runtime)) -> DisclosureList:
    """A caller's accounting of disclosures: every download, export, release and emergency access of
    their recordings, with date, who, what and why. Only ``accounting_of_disclosures.roles``; audited."""
    with _on_record(runtime, caller, accounting.ACTION, "caller_number", number), \
            runtime.db.unit_of_work() as session:
        found = accounting.account(session, policy=caller.policy, actor=caller.actor, number=number, since=since,
                                   default_region=runtime.settings.default_region, source_ip=caller.source_ip,
                                   clock=runtime.clock)
        e164 = accounting.parse_number(number, default_region=runtime.settings.default_region)
    return DisclosureList(number=e164, since=since, disclosures=[DisclosureRead(**d.__dict__) for d in found])


@router.get("/disclosures.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "the accounting as CSV"}})
def disclosures_csv(number: NumberQuery, since: SinceQuery = None, caller: Caller = Depends(get_caller),
                    runtime: Runtime = Depends(get_runtime)) -> Response:
    """The same accounting as a CSV download (audited as such)."""
    return csv_response(runtime, caller, number, since)


def csv_response(runtime: Runtime, caller: Caller, number: str, since: date | None) -> Response:
    """The CSV download the API and the web page share."""
    with _on_record(runtime, caller, accounting.ACTION, "caller_number", number), \
            runtime.db.unit_of_work() as session:
        found = accounting.account(session, policy=caller.policy, actor=caller.actor, number=number, since=since,
                                   default_region=runtime.settings.default_region, form="csv",
                                   source_ip=caller.source_ip, clock=runtime.clock)
        e164 = accounting.parse_number(number, default_region=runtime.settings.default_region)
    return Response(accounting.to_csv(found), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="disclosures-{e164.lstrip("+")}.csv"',
        "Cache-Control": "no-store"})
