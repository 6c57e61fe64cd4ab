"""Reconciliation and recording incidents over HTTP (``/api/v1/capture/reconcile``, ``/capture/incidents``).

For the compliance roles only (``misuse.report_to_roles``); anyone else is refused with 403 and the refusal
is audited. Thin over ``capture.reconcile`` and ``capture.incidents``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Body, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.capture import call_records, incidents
from callvault.capture.imports.settings import pbx_settings
from callvault.capture.reconcile import Reconciliation, reconcile
from callvault.capture.schemas import CaptureIncidentRead, IncidentResolve, ReconcileFinding, ReconcileResult
from callvault.core.errors import FieldProblem, InvalidInput
from callvault.runtime import Runtime

router = APIRouter(tags=["capture incidents"])
MAX_CDR_UPLOAD = 64 * 1024 * 1024


def _officer(caller: Caller) -> incidents.Officer:
    return incidents.Officer(username=caller.user.username, role=caller.user.role, source_ip=caller.source_ip)


def _gate(runtime: Runtime, caller: Caller, action: str, object_id: str | None = None) -> None:
    """Refuse (audited, committed) anyone outside the compliance roles."""
    with runtime.db.unit_of_work() as session:
        refused = incidents.check_officer(session, policy=caller.policy, who=_officer(caller), action=action,
                                          object_id=object_id, clock=runtime.clock)
    if refused is not None:
        raise refused


def _result(result: Reconciliation) -> ReconcileResult:
    return ReconcileResult(
        summary=result.summary(), policy=result.policy, mandatory=result.mandatory, raised=result.raised,
        not_answered=result.not_answered, counts=dict(result.counts),
        findings=[ReconcileFinding(line=f.record.line, call_id=f.record.call_id, outcome=f.outcome, detail=f.detail,
                                   stored_call_id=f.call_id, incident_id=f.incident_id) for f in result.findings])


def _reconcile(runtime: Runtime, caller: Caller, data: bytes, fmt: str, timezone: str | None,
               tolerance: int) -> ReconcileResult:
    zone = pbx_settings(runtime.settings.env).timezone
    if timezone:
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput("bad time zone:", [FieldProblem("timezone", f"{timezone!r} is not a zone name")]
                               ) from None
    records = call_records.read_records(data, fmt=fmt, region=runtime.settings.default_region, tz=zone)
    with runtime.db.unit_of_work() as session:
        result = reconcile(session, policy=caller.policy, records=records, actor=caller.user.username,
                           actor_role=caller.user.role, source_ip=caller.source_ip,
                           tolerance=timedelta(seconds=tolerance), clock=runtime.clock)
        return _result(result)


@router.post("/capture/reconcile", response_model=ReconcileResult, max_body_size=MAX_CDR_UPLOAD,
             responses={403: {"description": "not a compliance role (misuse.report_to_roles)"},
                        413: {"description": "the file is larger than 64 MiB"},
                        422: {"description": "a line of the call records is wrong: each problem names its line and "
                                             "field, and nothing was reconciled"}},
             openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}})
async def reconcile_call_records(
    request: Request, caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime),
    fmt: Annotated[str, Query(alias="format", description="generic | asterisk | freeswitch")] = "generic",
    timezone: Annotated[str | None, Query(description="zone of the PBX's local times (asterisk, freeswitch)")] = None,
    tolerance: Annotated[int, Query(ge=0, le=3600, description="seconds, for matching by extension")] = 120,
) -> ReconcileResult:
    """Upload a PBX/SBC's call records (the CSV as the request body) and compare them with what was stored.
    Under a mandatory policy each missing, failed, gapped or refused call in scope becomes an incident (once)."""
    await run_in_threadpool(_gate, runtime, caller, "capture.reconcile")  # before reading a body it would refuse
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > MAX_CDR_UPLOAD:
            raise InvalidInput("the call records are larger than 64 MiB; split the file")
    return await run_in_threadpool(_reconcile, runtime, caller, bytes(data), fmt, timezone, tolerance)


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput("bad date:", [FieldProblem(name, "give YYYY-MM-DD or an ISO 8601 date-time")]) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo("UTC"))


@router.get("/capture/incidents", response_model=list[CaptureIncidentRead],
            responses={403: {"description": "not a compliance role (misuse.report_to_roles)"},
                       422: {"description": "an unknown status or kind, or a date that is not ISO 8601"}})
def list_capture_incidents(
    caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime),
    status: Annotated[str | None, Query(description="open | resolved")] = None,
    kind: Annotated[str | None, Query(description="missing | failed | gap | refused")] = None,
    since: Annotated[str | None, Query(description="calls started on/after (ISO 8601)")] = None,
    until: Annotated[str | None, Query(description="calls started before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[CaptureIncidentRead]:
    """Recording incidents, newest call first (compliance roles)."""
    start, end = _when(since, "since"), _when(until, "until")
    _gate(runtime, caller, "capture.incidents_read")
    with runtime.db.unit_of_work() as session:
        rows = incidents.list_incidents(session, status=status, kind=kind, since=start, until=end, limit=limit)
        return [CaptureIncidentRead.model_validate(r) for r in rows]


@router.post("/capture/incidents/{incident_id}/resolve", response_model=CaptureIncidentRead,
             responses={403: {"description": "not a compliance role (misuse.report_to_roles)"},
                        404: {"description": "no such incident"}, 409: {"description": "already resolved"},
                        422: {"description": "no note"}})
def resolve_capture_incident(incident_id: str, body: Annotated[IncidentResolve, Body()],
                             caller: Caller = Depends(get_caller),
                             runtime: Runtime = Depends(get_runtime)) -> CaptureIncidentRead:
    """Resolve an open incident with a note saying what was found and done (audited)."""
    _gate(runtime, caller, "capture.incident_resolved", incident_id)
    with runtime.db.unit_of_work() as session:
        row = incidents.resolve(session, incident_id=incident_id, note=body.note, who=_officer(caller),
                                clock=runtime.clock)
        return CaptureIncidentRead.model_validate(row)
