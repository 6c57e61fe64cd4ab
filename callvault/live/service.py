"""Calls being recorded now and the people listening to them (A7, A13, A14).

The capture process writes ``active_calls`` (insert when it answers the INVITE, a heartbeat for all
of its calls every few seconds, delete at BYE); a row whose heartbeat is older than ``STALE_AFTER``
is a dead process's and is ignored. The API node that a supervisor reaches reads it for the live
view, asks ``decide()`` (action ``monitor``, with the purpose) whether this person may listen,
records a ``live_monitoring_sessions`` row with a one-time ticket, and shows that ticket to the
capture process's tap, which redeems it here. Every start, refusal and end is audited with its
purpose. Services never commit: the caller's unit of work does.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, Conflict, NotFound
from callvault.core.ids import new_id
from callvault.live.models import ActiveCall, MonitoringSession
from callvault.policy.decide import Action, Actor, RecordingFacts, decide
from callvault.policy.schema import PolicyDocument

STALE_AFTER = timedelta(seconds=30)
"""A capture process heartbeats every ``HEARTBEAT_SECONDS``; after this long without one it is dead."""
HEARTBEAT_SECONDS = 5.0
TICKET_SECONDS = 30
"""How long the API node has to show a fresh ticket to the capture tap."""

END_REASON_BY_CONTROL = {"pause": "paused", "stop": "stopped", "personal": "personal"}
"""Recording-control actions that end every live listener of the call, with the end reason they give."""

END_REASONS = {
    "personal": "the call was marked personal: monitoring ended at once and nothing of the call is kept",
    "paused": "recording of the call was paused: monitoring ended",
    "stopped": "recording of the call was stopped: monitoring ended",
    "call_ended": "the call ended",
    "listener_left": "the listener left",
    "capture_lost": "the capture process stopped sending audio",
}
"""Why a monitoring session ended, in words the listener reads (the key is the machine reason)."""


# ------------------------------------------------------------------------------------ active calls
def register_call(
    session: Session, *, call_id: str, recording_id: str | None, node: str, tap_url: str | None, direction: str,
    extension: str | None, agent: str | None, team: str | None, consent_state: str, started_at: datetime,
    clock: Clock = system_clock,
) -> None:
    """Insert (or refresh, after a restart) the row for a call this process is recording now."""
    row = session.get(ActiveCall, call_id)
    if row is None:
        row = ActiveCall(call_id=call_id, started_at=started_at)
        session.add(row)
    row.recording_id, row.node, row.tap_url, row.direction = recording_id, node, tap_url, direction
    row.extension, row.agent, row.team, row.consent_state = extension, agent, team, consent_state
    row.state, row.heartbeat_at = "recording", clock.now()


def update_call(session: Session, call_id: str, **fields: str | None) -> None:
    """Change what the live view shows of a call (state after a control event, facts from metadata)."""
    if fields:
        session.execute(update(ActiveCall).where(ActiveCall.call_id == call_id).values(**fields))


def heartbeat(session: Session, call_ids: Sequence[str], *, clock: Clock = system_clock) -> None:
    """One statement for all of a process's calls: they are still being recorded."""
    if call_ids:
        session.execute(update(ActiveCall).where(ActiveCall.call_id.in_(list(call_ids)))
                        .values(heartbeat_at=clock.now()))


def end_call(session: Session, call_id: str, *, reason: str = "call_ended", clock: Clock = system_clock) -> int:
    """The call is no longer recorded: its row goes, and so does every listener (audited)."""
    session.execute(delete(ActiveCall).where(ActiveCall.call_id == call_id))
    return end_all_for_call(session, call_id, reason=reason, actor="siprec", clock=clock)


def sweep_stale(session: Session, *, clock: Clock = system_clock) -> int:
    """Remove rows of capture processes that stopped heartbeating (and end their listeners)."""
    cutoff = clock.now() - STALE_AFTER
    stale = list(session.scalars(select(ActiveCall.call_id).where(ActiveCall.heartbeat_at < cutoff)))
    for call_id in stale:
        end_call(session, call_id, reason="capture_lost", clock=clock)
    return len(stale)


def live_call(session: Session, call_id: str, *, clock: Clock = system_clock) -> ActiveCall | None:
    """The call's row if a capture process is recording it now (stale rows do not count)."""
    row = session.get(ActiveCall, call_id)
    if row is None or row.heartbeat_at < clock.now() - STALE_AFTER:
        return None
    return row


def _facts(row: ActiveCall) -> RecordingFacts:
    # A live call is reached like its recording would be: by extension and team. Consent evidence may
    # still arrive in a metadata update, so a call is not treated as quarantined while it runs.
    return RecordingFacts(recording_id=row.recording_id or row.call_id, extension=row.extension, agent=row.agent,
                          team=row.team, state="available", direction=row.direction)


@dataclass(frozen=True)
class LiveCallView:
    """What the live view shows of one call (no numbers: the caller's number is not needed to listen)."""

    call_id: str
    direction: str
    extension: str | None
    agent: str | None
    team: str | None
    consent_state: str
    state: str
    started_at: datetime
    seconds: int
    own: bool
    """The signed-in person is the agent on this call (they may control it)."""
    may_monitor: bool
    listeners: tuple[tuple[str, str, str], ...]
    """(listener, role, purpose) of everyone monitoring now; shown to the agent when the policy says so."""


def visible_calls(session: Session, *, policy: PolicyDocument, actor: Actor,
                  clock: Clock = system_clock) -> list[LiveCallView]:
    """Calls being recorded now that this person may see: their own, and those they may monitor."""
    now = clock.now()
    rows = list(session.scalars(select(ActiveCall).where(ActiveCall.heartbeat_at >= now - STALE_AFTER)
                                .order_by(ActiveCall.started_at)))
    listening = listeners_by_call(session, [r.call_id for r in rows])
    purpose = policy.monitoring.default_purpose or next(iter(policy.monitoring.purposes), None)
    out = []
    for row in rows:
        own = bool(actor.extension and row.extension == actor.extension)
        may = decide(policy=policy, actor=actor, action=Action.MONITOR, recording=_facts(row),
                     purpose=purpose).allowed if purpose else False
        if not (own or may):
            continue
        shown = listening.get(row.call_id, ()) if (may or policy.monitoring.notify_agent) else ()
        out.append(LiveCallView(
            call_id=row.call_id, direction=row.direction, extension=row.extension, agent=row.agent, team=row.team,
            consent_state=row.consent_state, state=row.state, started_at=row.started_at,
            seconds=max(0, int((now - row.started_at).total_seconds())), own=own, may_monitor=may,
            listeners=tuple(shown)))
    return out


def listeners_by_call(session: Session, call_ids: Iterable[str]) -> dict[str, list[tuple[str, str, str]]]:
    ids = list(call_ids)
    out: dict[str, list[tuple[str, str, str]]] = {}
    if not ids:
        return out
    for m in session.scalars(select(MonitoringSession).where(MonitoringSession.call_id.in_(ids),
                                                             MonitoringSession.ended_at.is_(None))
                             .order_by(MonitoringSession.started_at)):
        out.setdefault(m.call_id, []).append((m.listener, m.listener_role, m.purpose))
    return out


# -------------------------------------------------------------------------------------- monitoring
@dataclass(frozen=True)
class Started:
    """A monitoring session the API node may now open at the capture tap."""

    monitoring_id: str
    ticket: str
    tap_url: str
    parties: str


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def start_monitoring(
    session: Session, *, policy: PolicyDocument, actor: Actor, call_id: str, purpose: str | None,
    source_ip: str | None = None, clock: Clock = system_clock,
) -> Started:
    """Decide (``monitor`` with the purpose), audit, and record the session with a one-time ticket.

    NotFound when the call is not being recorded now; AccessDenied (audited by the caller's
    ``audit_denial``) when the policy says no; Conflict when the call's capture process has no tap.
    """
    row = live_call(session, call_id, clock=clock)
    if row is None:
        raise NotFound("this call is not being recorded now (it ended, or was marked personal)")
    named = (purpose or "").strip() or policy.monitoring.default_purpose
    decision = decide(policy=policy, actor=actor, action=Action.MONITOR, recording=_facts(row), purpose=named)
    if not decision.allowed:
        raise AccessDenied(decision.reason, reason=decision.reason, clauses=decision.clauses)
    if row.state != "recording":
        raise Conflict(f"recording of this call is {row.state}; it cannot be monitored until it resumes")
    if not row.tap_url:
        raise Conflict("the capture process recording this call offers no live audio (no --tap configured)")
    assert named is not None
    ticket = secrets.token_urlsafe(32)
    now = clock.now()
    monitoring = MonitoringSession(
        id=new_id(), call_id=call_id, extension=row.extension, listener=actor.username, listener_role=actor.role,
        purpose=named, parties=policy.monitoring.parties, ticket_hash=_hash(ticket),
        ticket_expires_at=now + timedelta(seconds=TICKET_SECONDS), source_ip=source_ip, started_at=now,
        end_reason="")
    session.add(monitoring)
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="call.monitor_started", decision="allow",
        object_type="call", object_id=call_id, purpose=named, reason=decision.reason, clauses=decision.clauses,
        source_ip=source_ip, details={"monitoring_id": monitoring.id, "extension": row.extension,
                                      "parties": monitoring.parties},
    ), clock=clock)
    return Started(monitoring.id, ticket, row.tap_url, monitoring.parties)


def audit_denial(session: Session, *, actor: Actor, call_id: str, purpose: str | None, exc: AccessDenied,
                 source_ip: str | None = None, clock: Clock = system_clock) -> None:
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="call.monitor_started", decision="deny",
        object_type="call", object_id=call_id[:200], purpose=purpose, reason=exc.reason, clauses=exc.clauses,
        source_ip=source_ip), clock=clock)


def redeem_ticket(session: Session, *, call_id: str, ticket: str, clock: Clock = system_clock) -> MonitoringSession:
    """The tap's check: a fresh, unused ticket for this very call whose session has not ended. Used once."""
    row = session.scalar(select(MonitoringSession).where(MonitoringSession.ticket_hash == _hash(ticket)))
    if (row is None or row.call_id != call_id or row.ended_at is not None or row.ticket_expires_at is None
            or row.ticket_expires_at < clock.now()):
        raise AccessDenied("no valid monitoring ticket for this call", reason="bad or expired ticket",
                           clauses=("A7",))
    # Used once, even by two relays racing with the same ticket: only one conditional update matches.
    result = cast(CursorResult[Any], session.execute(update(MonitoringSession).where(
        MonitoringSession.id == row.id, MonitoringSession.ticket_hash == row.ticket_hash).values(
        ticket_hash=None, ticket_expires_at=None), execution_options={"synchronize_session": False}))
    if result.rowcount != 1:
        raise AccessDenied("no valid monitoring ticket for this call", reason="ticket already used", clauses=("A7",))
    session.expire(row)
    return row


def end_monitoring(session: Session, monitoring_id: str, *, reason: str, actor: str = "",
                   clock: Clock = system_clock) -> bool:
    """End one session. Idempotent and race-free: the capture side and the API side may both say so at
    once, and only the one whose conditional update wins writes the audit entry."""
    row = session.get(MonitoringSession, monitoring_id)
    if row is None or row.ended_at is not None:
        return False
    return _end(session, row, reason=reason, actor=actor or "system", clock=clock)


def end_all_for_call(session: Session, call_id: str, *, reason: str, actor: str,
                     clock: Clock = system_clock) -> int:
    rows = list(session.scalars(select(MonitoringSession).where(MonitoringSession.call_id == call_id,
                                                                MonitoringSession.ended_at.is_(None))))
    return sum(_end(session, row, reason=reason, actor=actor, clock=clock) for row in rows)


def _end(session: Session, row: MonitoringSession, *, reason: str, actor: str, clock: Clock) -> bool:
    now = clock.now()
    # The WHERE ended_at IS NULL makes a concurrent second ender wait for the first and then match nothing.
    result = cast(CursorResult[Any], session.execute(update(MonitoringSession).where(
        MonitoringSession.id == row.id, MonitoringSession.ended_at.is_(None)).values(
        ended_at=now, end_reason=reason, ticket_hash=None, ticket_expires_at=None),
        execution_options={"synchronize_session": False}))
    won = result.rowcount
    session.expire(row)
    if not won:
        return False
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=row.listener_role if actor == row.listener else "", action="call.monitor_ended",
        decision="info", object_type="call", object_id=row.call_id, purpose=row.purpose,
        reason=END_REASONS.get(reason, reason), clauses=("A7",),
        details={"monitoring_id": row.id, "listener": row.listener, "end": reason,
                 "seconds": round((now - row.started_at).total_seconds(), 3)},
    ), clock=clock)
    return True
