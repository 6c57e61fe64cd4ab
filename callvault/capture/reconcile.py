"""Reconciliation: the PBX/SBC's call records against what was stored (``callvault capture reconcile``).

For each call record (``capture.call_records``) in the policy's recording scope (the same
``RecordingScope.check`` admission uses; a record without a team gets the team of the user whose extension
it names), the stored recording is found by call id (also ``asterisk:<uniqueid>`` and ``freeswitch:<uuid>``,
as PBX imports store it), else by extension with a start within ``TOLERANCE``. The outcome per call:

* ``recorded``: an available (or since destroyed) recording without media gaps;
* ``pending``: capture is still writing it (not judged yet);
* ``missing``: no recording and no refusal: the call never reached callvault;
* ``failed``: a ``failed`` recording (no media, capture died);
* ``gap``: a recording with seconds where no media arrived;
* ``refused``: admission refused it (its ``recording.not_stored`` audit entry names why; found by call id, else
  by the extension, direction and start the entry records, as a stored recording is);
* ``out_of_scope``: the policy does not ask for it to be recorded (with the scope's reason).

Under ``recording_scope.mandatory`` every missing, failed, gap or refused call is an incident
(``capture.incidents``); one already raised (by capture, or by an earlier run over the same file) is not
raised again, so reconciling twice raises nothing new. Under another policy the same findings are reported
and nothing is raised (``Reconciliation.mandatory`` is False and the output says so).
The run itself is an audit entry (``capture.reconciled``) with its counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.audit.models import AuditEntry
from callvault.capture.call_records import TOLERANCE, CallRecord, CallRecords
from callvault.capture.imports.settings import FLAVOURS
from callvault.capture.incidents import CallFacts, raise_incident
from callvault.capture.models import IncidentKind
from callvault.core.clock import Clock, system_clock
from callvault.identity.models import User
from callvault.policy.schema import PolicyDocument
from callvault.recordings.models import Recording, RecordingState

PROBLEM_OUTCOMES = ("missing", "failed", "gap", "refused")


@dataclass(frozen=True)
class Finding:
    """One call record's outcome."""

    record: CallRecord
    outcome: str
    detail: str
    recording_id: str | None = None
    call_id: str = ""
    """The stored call id when a recording or refusal was found, else the record's."""
    incident_id: str | None = None
    """The incident raised by this run for it; None when none was raised (or one already existed)."""


@dataclass
class Reconciliation:
    """What one run found and raised."""

    policy: str
    mandatory: bool
    clause: str
    findings: list[Finding] = field(default_factory=list)
    not_answered: int = 0
    raised: int = 0

    @property
    def counts(self) -> Counter[str]:
        return Counter(f.outcome for f in self.findings)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.outcome in PROBLEM_OUTCOMES]

    def summary(self) -> str:
        """The run in a few sentences, for the CLI and the API."""
        counts = self.counts
        parts = ", ".join(f"{counts[o]} {o}" for o in ("recorded", "pending", *PROBLEM_OUTCOMES, "out_of_scope")
                          if counts[o])
        text = f"{len(self.findings)} call(s) checked against policy {self.policy}: {parts or 'none'}."
        if self.not_answered:
            text += f" {self.not_answered} unanswered call record(s) skipped (no conversation to record)."
        if self.mandatory:
            text += (f" {self.raised} new incident(s) raised ({self.clause}); "
                     f"{len(self.problems) - self.raised} already on record.")
        else:
            text += (f" Policy {self.policy} does not make recording mandatory (recording_scope.mandatory is "
                     "false): the calls above are reported, but no incidents were raised.")
        return text


def _team_by_extension(session: Session) -> dict[str, tuple[str | None, str]]:
    return {u.extension: (u.team, u.username) for u in session.scalars(select(User).where(User.extension.is_not(None)))
            if u.extension}


def _ids(record: CallRecord) -> list[str]:
    """The record's call id as capture may have stored it: as is, or as a PBX import names it (``flavour:id``)."""
    return [record.call_id, *(f"{flavour}:{record.call_id}" for flavour in FLAVOURS)]


def _stored(session: Session, record: CallRecord, tolerance: timedelta) -> Recording | None:
    ids = _ids(record)
    row = session.scalar(select(Recording).where(Recording.call_id.in_(ids)))
    if row is not None or not record.extension:
        return row
    near = session.scalars(select(Recording).where(
        Recording.extension == record.extension, Recording.direction == record.direction,
        Recording.started_at >= record.started_at - tolerance, Recording.started_at <= record.started_at + tolerance))
    return min(near, key=lambda r: abs((r.started_at - record.started_at).total_seconds()), default=None)


class Refusals:
    """Admission's refusals (``recording.not_stored``) that could be the file's calls, read once per run.

    Why not by call id alone: the id capture refused (the SBC's SIPREC session) is rarely the id in the PBX's
    CDR, so such a refusal was reported as a missing call and raised a second incident for it. A refusal names
    the call's extension, direction and start (``details``), and is found by them as a stored recording is."""

    def __init__(self, session: Session, records: list[CallRecord], tolerance: timedelta) -> None:
        self.session = session
        self.tolerance = tolerance
        self.near: dict[tuple[str, str], list[tuple[datetime, AuditEntry]]] = {}
        extensions = {r.extension for r in records if r.extension}
        if not extensions:
            return
        earliest = min(r.started_at for r in records) - tolerance  # a call is refused once it has begun
        for entry in session.scalars(select(AuditEntry).where(
                AuditEntry.action == "recording.not_stored", AuditEntry.at >= earliest,
                AuditEntry.details["extension"].as_string().in_(sorted(extensions)))):
            started = _started(entry)
            if started is not None:
                key = (str(entry.details["extension"]), str(entry.details.get("direction") or ""))
                self.near.setdefault(key, []).append((started, entry))

    def of(self, record: CallRecord) -> AuditEntry | None:
        """The latest refusal under one of the record's call ids, else the one on its extension and direction
        that started nearest to it, within the tolerance."""
        by_id = self.session.scalar(select(AuditEntry).where(
            AuditEntry.action == "recording.not_stored",
            AuditEntry.object_id.in_(_ids(record))).order_by(AuditEntry.seq.desc()))
        if by_id is not None or not record.extension:
            return by_id
        close = [(abs((started - record.started_at).total_seconds()), entry)
                 for started, entry in self.near.get((record.extension, record.direction), [])
                 if abs(started - record.started_at) <= self.tolerance]
        return min(close, key=lambda pair: (pair[0], -pair[1].seq), default=(0.0, None))[1]


def _started(entry: AuditEntry) -> datetime | None:
    try:
        started = datetime.fromisoformat(str(entry.details.get("started_at")))
    except ValueError:
        return None
    return started if started.tzinfo is not None else None


def _judge(session: Session, record: CallRecord, tolerance: timedelta, refusals: Refusals) -> Finding:
    row = _stored(session, record, tolerance)
    if row is None:
        refusal = refusals.of(record)
        if refusal is not None:
            return Finding(record, "refused", f"refused at admission: {refusal.reason or 'no reason recorded'}",
                           call_id=refusal.object_id or record.call_id)
        where = f"on extension {record.extension} " if record.extension else ""
        return Finding(record, "missing", f"no recording {where}within {int(tolerance.total_seconds())} s of "
                                          f"{record.started_at.isoformat()} and no refusal on record",
                       call_id=record.call_id)
    found = dict(recording_id=row.id, call_id=row.call_id)
    if row.state == RecordingState.FAILED:
        return Finding(record, "failed", f"capture failed: {row.failure_reason or 'no reason recorded'}", **found)
    if row.state == RecordingState.PENDING:
        return Finding(record, "pending", "capture is still writing it", **found)
    if row.missing_seconds > 0:
        return Finding(record, "gap", f"{row.missing_seconds:g} s of the call have no media", **found)
    return Finding(record, "recorded", "", **found)


def reconcile(
    session: Session, *, policy: PolicyDocument, records: CallRecords, actor: str, actor_role: str = "",
    source_ip: str | None = None, tolerance: timedelta = TOLERANCE,
    clock: Clock = system_clock,
) -> Reconciliation:
    """Check every record, raise the incidents a mandatory policy asks for, audit the run. Never commits."""
    scope = policy.recording_scope
    result = Reconciliation(policy=f"{policy.policy_id} {policy.version}", mandatory=scope.mandatory,
                            clause=scope.mandatory_clause or "recording_scope.mandatory",
                            not_answered=records.not_answered)
    users = _team_by_extension(session)
    refusals = Refusals(session, records.records, tolerance)
    for record in records.records:
        team, agent = record.team, record.agent
        if team is None and record.extension in users:
            team = users[record.extension][0]
        if agent is None and record.extension in users:
            agent = users[record.extension][1]
        local = record.local_number if record.local_number.startswith("+") else None  # "" or an extension: none
        check = scope.check(direction=record.direction, team=team, extension=record.extension, trunk_number=local)
        if not check.in_scope:
            result.findings.append(Finding(record, "out_of_scope", check.reason, call_id=record.call_id))
            continue
        finding = _judge(session, record, tolerance, refusals)
        if finding.outcome in PROBLEM_OUTCOMES:
            facts = CallFacts(call_id=finding.call_id, started_at=record.started_at, direction=record.direction,
                              extension=record.extension, team=team, agent=agent,
                              duration_seconds=record.duration_seconds, remote_number=record.remote_number or None,
                              local_number=record.local_number or None)
            raised = raise_incident(session, policy=policy, kind=IncidentKind(finding.outcome), facts=facts,
                                    detail=finding.detail, source="reconcile", actor=actor,
                                    recording_id=finding.recording_id, clock=clock)
            if raised is not None:
                result.raised += 1
                finding = Finding(record, finding.outcome, finding.detail, finding.recording_id, finding.call_id,
                                  raised.id)
        result.findings.append(finding)
    counts = result.counts
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="capture.reconciled",
        decision="alarm" if result.raised else "info", source_ip=source_ip,
        clauses=(result.clause,) if scope.mandatory else (),
        reason=f"{len(result.findings)} call record(s); {result.raised} new incident(s)",
        details={"policy": result.policy, "mandatory": scope.mandatory, "raised": result.raised,
                 "not_answered": records.not_answered, **{k: counts[k] for k in sorted(counts)}},
    ), clock=clock)
    return result
