"""Capture incidents: a call the policy says must be recorded (``recording_scope.mandatory``) that is not on record.

Raised two ways, into one table (``CaptureIncident``, one row per call and kind, so both ways agree):

* by capture itself, at once, when it refuses a call in scope at admission (``capture.admission``), fails
  one (``capture.ingest.fail_recording``: no media, capture process gone) or stores one with media gaps
  (``capture.ingest``'s finalising step) — no call records needed;
* by ``capture.reconcile`` from the PBX/SBC's call records: calls that never arrived (``missing``), and
  stored recordings with media gaps (``gap``).

Each new incident is an audit entry (``capture.incident_raised``, decision ``alarm``, the mandatory clause
cited; no caller number), a mail to every active user in ``misuse.report_to_roles`` (the compliance roles),
a ``/metrics`` count and a line in the compliance report. Those roles list incidents and resolve them with a
note (audited); others are refused (audited). Under a policy that does not make recording mandatory nothing
is raised: the gaps are still reported by ``reconcile``, but they are no violation of that policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.capture.models import INCIDENT_STATUSES, CaptureIncident, IncidentKind
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.notify import service as notify
from callvault.oversight import service as oversight
from callvault.policy.schema import PolicyDocument

MAX_NOTE = 2000


@dataclass(frozen=True)
class CallFacts:
    """What is known of the call: from the call records, or from capture's metadata."""

    call_id: str
    started_at: datetime
    direction: str
    extension: str | None = None
    team: str | None = None
    agent: str | None = None
    duration_seconds: float | None = None
    remote_number: str | None = None
    local_number: str | None = None


@dataclass(frozen=True)
class Officer:
    """Who acts on incidents."""

    username: str
    role: str
    source_ip: str | None = None


def clause_of(policy: PolicyDocument) -> str:
    """The clause an incident cites: the policy's ``mandatory_clause``, else the rule's own name."""
    return policy.recording_scope.mandatory_clause or "recording_scope.mandatory"


def may_handle(policy: PolicyDocument, role: str) -> bool:
    """The compliance roles: those the policy routes misuse reports to (``misuse.report_to_roles``)."""
    return oversight.is_recipient(policy, role)


def raise_incident(
    session: Session, *, policy: PolicyDocument, kind: IncidentKind, facts: CallFacts, detail: str, source: str,
    actor: str, recording_id: str | None = None, clock: Clock = system_clock,
) -> CaptureIncident | None:
    """Record one incident, audit it and mail the compliance roles; None when this call already has one of
    this kind (raised by capture and found again by reconciliation, or reconciled twice). Never commits.

    An officer without an address of their own is mailed at the deployment's ``CALLVAULT_MAIL_DOMAIN``, settled
    when the mail is sent (``notify.recipient_of``): capture, which raises most incidents, has no mail settings."""
    if not policy.recording_scope.mandatory:
        return None
    if session.scalar(select(CaptureIncident.id).where(
            CaptureIncident.call_id == facts.call_id, CaptureIncident.kind == kind.value)) is not None:
        return None
    now = clock.now()
    row = CaptureIncident(
        id=new_id(), kind=kind.value, call_id=facts.call_id, source=source, status="open",
        started_at=facts.started_at, duration_seconds=facts.duration_seconds, direction=facts.direction,
        extension=facts.extension, team=facts.team, agent=facts.agent, remote_number=facts.remote_number,
        local_number=facts.local_number, recording_id=recording_id, detail=detail[:2000], clause=clause_of(policy),
        policy=f"{policy.policy_id}@{policy.version}", created_at=now, resolution_note="",
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except SqlIntegrityError:
        return None  # raised at the same moment by another process
    audit.append(session, audit.AuditEvent(
        actor=actor, action="capture.incident_raised", decision="alarm", object_type="capture_incident",
        object_id=row.id, reason=f"{kind.value}: {detail}"[:300], clauses=(row.clause,),
        details={"kind": kind.value, "call_id": facts.call_id, "source": source, "direction": facts.direction,
                 "extension": facts.extension, "team": facts.team, "started_at": facts.started_at.isoformat(),
                 "recording_id": recording_id},
    ), clock=clock)
    _mail(session, policy, row, clock=clock)
    return row


def _mail(session: Session, policy: PolicyDocument, row: CaptureIncident, *, clock: Clock) -> None:
    for user in oversight.recipients(session, policy):
        body = (
            f"A call that policy {policy.policy_id} ({policy.version}) says must be recorded is not on record.\n\n"
            f"Incident: {row.id}\nKind: {row.kind}\nCall: {row.call_id}\n"
            f"Started: {row.started_at.isoformat()}\nDirection: {row.direction}\n"
            f"Extension: {row.extension or '(none)'}\nTeam: {row.team or '(none)'}\n"
            f"What was found: {row.detail}\nRule: {row.clause}\n\n"
            f"Sign in to callvault to see and resolve it: /compliance/incidents (GET /api/v1/capture/incidents)\n"
            f"You receive this because the policy routes misuse and compliance reports to the role {user.role}.\n"
        )
        notify.enqueue(
            session, to=getattr(user, "email", None) or "", recipient_user=user.username,
            subject=f"[callvault] Recording incident ({row.kind}): call {row.call_id}"[:300],
            body=body, dedup_key=f"capture-incident:{row.id}:{user.username}", clock=clock)


def _deny(session: Session, who: Officer, action: str, object_id: str | None, reason: str, clock: Clock) -> None:
    audit.append(session, audit.AuditEvent(
        actor=who.username, actor_role=who.role, action=action, decision="deny", object_type="capture_incident",
        object_id=object_id or "", reason=reason, source_ip=who.source_ip), clock=clock)


def check_officer(session: Session, *, policy: PolicyDocument, who: Officer, action: str,
                  object_id: str | None = None, clock: Clock = system_clock) -> AccessDenied | None:
    """None for a compliance role; otherwise the refusal (audited in ``session``: commit it, then raise)."""
    if may_handle(policy, who.role):
        return None
    reason = f"role {who.role} does not receive compliance reports (misuse.report_to_roles)"
    _deny(session, who, action, object_id, reason, clock)
    return AccessDenied(f"role {who.role} may not see or resolve recording incidents")


def list_incidents(
    session: Session, *, status: str | None = None, kind: str | None = None, since: datetime | None = None,
    until: datetime | None = None, limit: int = 500,
) -> list[CaptureIncident]:
    """Incidents, newest call first, filtered by status, kind and the call's start in [since, until)."""
    problems = []
    if status is not None and status not in INCIDENT_STATUSES:
        problems.append(FieldProblem("status", f"use one of {', '.join(INCIDENT_STATUSES)}"))
    if kind is not None and kind not in {k.value for k in IncidentKind}:
        problems.append(FieldProblem("kind", f"use one of {', '.join(k.value for k in IncidentKind)}"))
    if problems:
        raise InvalidInput("cannot list incidents:", problems)
    stmt = select(CaptureIncident)
    if status is not None:
        stmt = stmt.where(CaptureIncident.status == status)
    if kind is not None:
        stmt = stmt.where(CaptureIncident.kind == kind)
    if since is not None:
        stmt = stmt.where(CaptureIncident.started_at >= since)
    if until is not None:
        stmt = stmt.where(CaptureIncident.started_at < until)
    return list(session.scalars(stmt.order_by(CaptureIncident.started_at.desc(), CaptureIncident.id).limit(limit)))


def resolve(session: Session, *, incident_id: str, note: str, who: Officer,
            clock: Clock = system_clock) -> CaptureIncident:
    """Close an open incident with a note saying what was done (audited). The caller checked ``who``."""
    note = note.strip()
    if not note:
        raise InvalidInput("a resolution needs a note:", [FieldProblem("note", "say what was found and done")])
    if len(note) > MAX_NOTE:
        raise InvalidInput("the note is too long:", [FieldProblem("note", f"at most {MAX_NOTE} characters")])
    row = session.get(CaptureIncident, incident_id)
    if row is None:
        raise NotFound(f"no recording incident {incident_id}")
    if row.status == "resolved":
        raise Conflict(f"incident {incident_id} was already resolved by {row.resolved_by}")
    row.status, row.resolved_at, row.resolved_by, row.resolution_note = "resolved", clock.now(), who.username, note
    audit.append(session, audit.AuditEvent(
        actor=who.username, actor_role=who.role, action="capture.incident_resolved", decision="allow",
        object_type="capture_incident", object_id=row.id, source_ip=who.source_ip, clauses=(row.clause,),
        details={"kind": row.kind, "call_id": row.call_id, "note_chars": len(note)}), clock=clock)
    return row


def counts_by_kind(rows: Sequence[CaptureIncident]) -> dict[str, int]:
    found = {k.value: 0 for k in IncidentKind}
    for row in rows:
        found[row.kind] = found.get(row.kind, 0) + 1
    return found
