"""Recording control and quarantine over HTTP (A5, A14, B2, B4).

* ``POST /calls/{call_id}/control``: stop / pause / resume / personal for a call, stored yet or not
  (capture integrations and the agent's phone-side button use this while the call is live).
* ``POST /recordings/{id}/control``: the same for a stored recording, applied after the fact.
* ``GET /recordings/{id}/controls``: the call's control timeline (no content).
* ``POST /recordings/{id}/quarantine``: an administering role releases or destroys a recording that
  arrived without consent evidence.

Allowed: the agent on the call (their extension is the call's) and the phone system's integration account
relaying the agent's act (a role in ``controls.integration_roles``); administering roles are refused. ``personal``
on a stored recording: only its recorded agent, within the policy's window after the call's end, and
never while it is evidence (``capture.personal``: 403 or 409, naming the reason and clauses). A
refusal is audited and committed before the request is refused.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.api.routes_live import LocalRelays
from callvault.audit import service as audit
from callvault.capture import control
from callvault.capture.personal import PersonalRefused
from callvault.core.errors import AccessDenied, NotFound
from callvault.notify.service import SmtpSettings
from callvault.recordings import service as recordings
from callvault.retention.schemas import (
    ControlRead,
    ControlRequest,
    ControlResult,
    QuarantineResolution,
    QuarantineResult,
)
from callvault.retention.shred import finish
from callvault.runtime import Runtime

router = APIRouter(tags=["recording control"])


def _audit_denial(runtime: Runtime, caller: Caller, action: str, object_type: str, object_id: str,
                  exc: AccessDenied | control.UnderLegalHold | PersonalRefused) -> None:
    with runtime.db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(
            actor=caller.user.username, actor_role=caller.user.role, action=action, decision="deny",
            object_type=object_type, object_id=object_id[:200], reason=exc.reason, clauses=exc.clauses,
            source_ip=caller.source_ip), clock=runtime.clock)


def _control(runtime: Runtime, caller: Caller, body: ControlRequest, *, call_id: str | None,
             recording_id: str | None, relays: LocalRelays) -> ControlResult:
    try:
        with runtime.db.unit_of_work() as session:
            filed = control.file_control(session, policy=caller.policy, actor=caller.actor, kind=body.action,
                                         at=body.at, until=body.until, version=body.version, call_id=call_id,
                                         recording_id=recording_id,
                                         source_ip=caller.source_ip, clock=runtime.clock,
                                         mail_domain=SmtpSettings.from_env(runtime.settings.env).mail_domain)
    except (AccessDenied, PersonalRefused) as exc:
        _audit_denial(runtime, caller, f"recording.control_{body.action}", "recording" if recording_id else "call",
                      recording_id or call_id or "", exc)
        raise
    if filed.live:
        relays.controlled(filed.call_id, body.action, now=body.at is None or body.at <= runtime.clock.now())
    outcome = control.apply_to_stored(db=runtime.db, store=runtime.store, keyring=runtime.keyring, filed=filed,
                                      actor=caller.actor, source_ip=caller.source_ip, clock=runtime.clock)
    return ControlResult(call_id=filed.call_id, recording_id=filed.recording_id,
                         control_ids=list(filed.control_ids), outcome=outcome)


@router.post("/calls/{call_id}/control", response_model=ControlResult)
def control_call(call_id: str, body: ControlRequest, request: Request, caller: Caller = Depends(get_caller),
                 runtime: Runtime = Depends(get_runtime)) -> ControlResult:
    """Stop, pause (``at``, optional ``until``), resume or mark personal a call, live or already stored."""
    return _control(runtime, caller, body, call_id=call_id, recording_id=None, relays=request.app.state.live_relays)


@router.post("/recordings/{recording_id}/control", response_model=ControlResult)
def control_recording(recording_id: str, body: ControlRequest, request: Request,
                      caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> ControlResult:
    """Apply a control to a stored recording: stop truncates it, pause silences a span, personal destroys it."""
    return _control(runtime, caller, body, call_id=None, recording_id=recording_id,
                    relays=request.app.state.live_relays)


@router.get("/recordings/{recording_id}/controls", response_model=list[ControlRead])
def control_timeline(recording_id: str, caller: Caller = Depends(get_caller),
                     runtime: Runtime = Depends(get_runtime)) -> list[ControlRead]:
    """The call's control events (when recording stopped, paused, resumed), for anyone who may see it."""
    with runtime.db.unit_of_work() as session:
        row = recordings.get_visible(session, policy=caller.policy, actor=caller.actor, recording_id=recording_id,
                                     source_ip=caller.source_ip, clock=runtime.clock)
        events = None if row is None else [ControlRead.model_validate(c) for c in control.timeline(session,
                                                                                                    recording=row)]
    if events is None:
        raise NotFound("no such recording")
    return events


@router.post("/recordings/{recording_id}/quarantine", response_model=QuarantineResult)
def resolve_quarantine(recording_id: str, body: QuarantineResolution, caller: Caller = Depends(get_caller),
                       runtime: Runtime = Depends(get_runtime)) -> QuarantineResult:
    """Release (consent evidence found) or destroy a quarantined recording, with a reason (A5, B2)."""
    try:
        with runtime.db.unit_of_work() as session:
            pending = control.resolve_quarantine(
                session, policy=caller.policy, actor=caller.actor, recording_id=recording_id, decision=body.decision,
                reason=body.reason, keyring=runtime.keyring, source_ip=caller.source_ip, clock=runtime.clock)
    except (AccessDenied, control.UnderLegalHold) as exc:
        _audit_denial(runtime, caller, f"recording.quarantine_{body.decision}", "recording", recording_id, exc)
        raise
    finish(runtime.db, runtime.store, runtime.keyring, pending, clock=runtime.clock)
    return QuarantineResult(recording_id=recording_id, decision=body.decision,
                            state="available" if body.decision == "release" else "destroyed")
