"""Retention extension on request over HTTP (``retention.extension``): a recording's bounds, and the
extension itself. Thin over ``retention.service.extend_retention``; refusals are put on record."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from callvault.access import refusals
from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.core.errors import NotFound
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording
from callvault.retention import extension
from callvault.retention import service as retention
from callvault.retention.schemas import ExtensionCreate, ExtensionRead
from callvault.runtime import Runtime

router = APIRouter(prefix="/retention", tags=["retention"])


def _read(caller: Caller, row: Recording) -> ExtensionRead:
    b = extension.bounds(caller.policy, row)
    return ExtensionRead(**b.__dict__, may_extend=extension.may_extend(caller.policy, caller.user.role))


@router.get("/recordings/{recording_id}/extension", response_model=ExtensionRead)
def extension_bounds(recording_id: str, caller: Caller = Depends(get_caller),
                     runtime: Runtime = Depends(get_runtime)) -> ExtensionRead:
    """A recording you may see: its retention minimum, current keep-until and destruction dates, and the
    furthest date an extension may name (``retention.extension.max_age_months``)."""
    with runtime.db.unit_of_work() as session:
        row = recordings.get_visible(session, policy=caller.policy, actor=caller.actor, recording_id=recording_id,
                                     source_ip=caller.source_ip, clock=runtime.clock)
        found = None if row is None else _read(caller, row)
    if found is None:
        raise NotFound("no such recording")
    return found


@router.post("/recordings/{recording_id}/extension", response_model=ExtensionRead)
def extend(recording_id: str, body: ExtensionCreate, caller: Caller = Depends(get_caller),
           runtime: Runtime = Depends(get_runtime)) -> ExtensionRead:
    """Keep a recording longer on request (``retention.extension.roles``): a keep-until date or months
    after the call, within the policy's limit, never shorter than now, with the reason; audited."""
    with refusals.on_record(runtime.db, actor=caller.user.username, actor_role=caller.user.role,
                            action="retention.extend", object_type="recording", object_id=recording_id,
                            source_ip=caller.source_ip, clock=runtime.clock):
        extension.require_extender(caller.policy, caller.user.role)
    with runtime.db.unit_of_work() as session:
        row = recordings.get_visible(session, policy=caller.policy, actor=caller.actor, recording_id=recording_id,
                                     source_ip=caller.source_ip, clock=runtime.clock)
    if row is None:
        raise NotFound("no such recording")
    with runtime.db.unit_of_work() as session:
        until = extension.keep_until_from(keep_until=body.keep_until, months=body.months, started_at=row.started_at)
        updated = retention.extend_retention(
            session, policy=caller.policy, actor=caller.user.username, actor_role=caller.user.role,
            recording_id=recording_id, keep_until=until, reason=body.reason, clock=runtime.clock)
        return _read(caller, updated)
