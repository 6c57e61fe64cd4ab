"""Ingest's admission step: may this call be stored at all, and which parts of it?

Runs before anything is reserved or written (A1, A3, A8, A14, B1, B3, B4, B11):

* **scope**: a call outside the policy's recording scope (team, direction, extension, private line,
  trunk number) is not stored. The refusal is audited with the reason and the call's routing
  metadata, never the caller's number or any audio.
* **retention**: a call whose retention has already ended (its start + the policy's cap, or its
  resolved case's date) is not stored: stored, it would be playable until the next sweep. The refusal
  names the rule and its end date. A legal hold on the call's case (``case_ref``) keeps it, as it
  would keep a stored one; an open case alone does not (it never extends the cap).
* **announcement**: a call that ended during the inbound announcement keeps no caller audio, so
  nothing is stored; otherwise the stored audio starts when the announcement ended
  (``consent.announcement_ended_at``). A call without evidence of its own that a standing rule covers
  (``consent.standing_evidence``) gets the rule's evidence first, so the same cut applies to it.
* **control events** already filed for the call (``recording_controls``, e.g. the agent pressed stop
  while the call was live): ``personal`` stores nothing (one filed after the call's end is not applied:
  the call is stored and its recorded agent may mark it, see ``capture.personal``); ``stop`` cuts everything after it;
  ``pause``/``resume`` spans are silenced. An event from a specialist applies only if the call turns
  out to be on their own extension; others are marked ignored, with the reason.

Under ``recording_scope.mandatory`` every refusal of a call in scope (all but the scope refusal itself) also
raises a ``refused`` incident (``capture.incidents``), in the same transaction as the refusal's audit entry.

Refusals are ``NotRecordable`` (an ``InvalidInput``: HTTP 422, CLI exit 2) naming the field at fault.
The caller commits the audit entry before raising it, so the refusal is on record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.capture import consent_check, incidents
from callvault.capture.audio import AudioInfo
from callvault.capture.audioedit import AudioEdit, pause_spans
from callvault.capture.metadata import CallMetadata, ConsentEvidence
from callvault.capture.models import EVIDENCE_KINDS, ControlKind, IncidentKind, RecordingControl
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import FieldProblem, InvalidInput
from callvault.policy.schema import PolicyDocument
from callvault.retention import service as retention
from callvault.retention.models import RetentionRule


class NotRecordable(InvalidInput):
    """The call may not be stored: out of scope, past its retention, ended during the announcement, personal, or
    stopped at once."""


@dataclass
class Admission:
    """The outcome: a refusal, or the edit to apply and the control events it honours."""

    refusal: NotRecordable | None = None
    edit: AudioEdit = field(default_factory=AudioEdit)
    applied: list[str] = field(default_factory=list)
    """Control event ids honoured by ``edit``; marked applied when the recording is finalised."""
    notes: list[str] = field(default_factory=list)
    consent: ConsentEvidence | None = None
    """Consent evidence the metadata lacked but the recording-control API supplied (``announced`` /
    ``notified`` events filed while the call ran) or a standing rule of the policy covers
    (``consent_check.standing_evidence``); the caller stores the call with it."""

    def applied_to(self, meta: CallMetadata) -> CallMetadata:
        """``meta`` as the call is stored: with the consent evidence admission completed, if any."""
        return meta if self.consent is None else meta.model_copy(update={"consent": self.consent})


def _scope_field(policy: PolicyDocument, meta: CallMetadata) -> str:
    scope = policy.recording_scope
    if meta.direction not in scope.directions:
        return "direction"
    if scope.extension_excluded(meta.extension):
        return "extension"
    if scope.teams and meta.team not in scope.teams:
        return "team"
    if scope.extensions and not scope.check(direction=meta.direction, team=meta.team, extension=meta.extension,
                                            trunk_number=None).in_scope:
        return "extension"
    return "local_number"


def _facts(meta: CallMetadata) -> incidents.CallFacts:
    return incidents.CallFacts(
        call_id=meta.call_id, started_at=meta.started_at, direction=meta.direction, extension=meta.extension,
        team=meta.team, agent=meta.agent, duration_seconds=(meta.ended_at - meta.started_at).total_seconds(),
        remote_number=meta.remote_number, local_number=meta.local_number)


def _seconds(at: datetime, origin: datetime) -> float:
    return (at - origin).total_seconds()


def _retention_reason(policy: PolicyDocument, rule: RetentionRule, when: datetime,
                      meta: CallMetadata) -> tuple[str, tuple[str, ...]]:
    """Why a call's retention has already ended, naming the rule, its end date and the clauses."""
    name = f"policy {policy.policy_id} {policy.version}"
    end = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if rule == RetentionRule.CASE_RESOLVED:
        return (f"its retention ended {end} (rule case_resolved: its case {meta.case_ref} was resolved and {name} "
                f"keeps a resolved case's recordings {policy.retention.post_resolution_grace_days} days more; A3, A9)",
                ("A3", "A9"))
    return (f"its retention ended {end} (rule max_age: {name} keeps recordings no more than "
            f"{policy.retention.max_age_months} months after the call; A3, B11)", ("A3", "B11"))


def _refuse(
    session: Session, *, meta: CallMetadata, message: str, location: str, reason: str, clauses: tuple[str, ...],
    actor: str, actor_role: str, source_ip: str | None, clock: Clock,
) -> Admission:
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="recording.not_stored", decision="deny",
        object_type="call", object_id=meta.call_id, reason=reason, clauses=clauses, source_ip=source_ip,
        details={"direction": meta.direction, "extension": meta.extension, "team": meta.team,
                 "local_number": meta.local_number, "started_at": meta.started_at.isoformat()},
    ), clock=clock)
    return Admission(refusal=NotRecordable(message, [FieldProblem(location, reason)]))


def _late_personal(session: Session, *, policy: PolicyDocument, meta: CallMetadata, control: RecordingControl,
                   source_ip: str | None, clock: Clock) -> None:
    """A ``personal`` filed after the call ended is not applied here: ingest cannot check what a stored
    call's marking needs (the recorded agent, the window, that the call is no evidence) or report it
    (``capture.personal``). The call is stored; the event says why and where to mark it, and is audited."""
    window = policy.controls.personal_after_call_minutes
    control.applied_at = clock.now()
    control.outcome = (f"not applied: filed at {control.created_at.isoformat(timespec='seconds')}, after the call "
                       f"ended at {meta.ended_at.isoformat(timespec='seconds')}; the stored recording may be marked "
                       f"personal by its recorded agent within {window} minutes of the call's end (A14, B4)")
    audit.append(session, audit.AuditEvent(
        actor=control.requested_by, actor_role=control.requested_role, action="recording.control_personal",
        decision="deny", object_type="call", object_id=meta.call_id, reason="filed after the call ended",
        clauses=("A14", "B4"), source_ip=source_ip,
        details={"control_id": control.id, "filed_at": control.created_at.isoformat(),
                 "ended_at": meta.ended_at.isoformat()},
    ), clock=clock)


def unapplied_controls(session: Session, call_ids: Iterable[str]) -> dict[str, list[RecordingControl]]:
    """The control events not yet applied, per call id, oldest first: one query for a whole batch."""
    found: dict[str, list[RecordingControl]] = {}
    ids = list(set(call_ids))
    for start in range(0, len(ids), _IN_BATCH):
        for control in session.scalars(select(RecordingControl).where(
                RecordingControl.call_id.in_(ids[start:start + _IN_BATCH]), RecordingControl.applied_at.is_(None)
        ).order_by(RecordingControl.created_at)):
            found.setdefault(control.call_id, []).append(control)
    return found


_IN_BATCH = 500
"""Call ids per IN (...) query: well inside SQLite's and PostgreSQL's limits on bound parameters."""


def admit(
    session: Session, *, policy: PolicyDocument, meta: CallMetadata, info: AudioInfo, actor: str,
    actor_role: str = "", source_ip: str | None = None, clock: Clock = system_clock,
    controls: dict[str, list[RecordingControl]] | None = None,
) -> Admission:
    """Decide what of this call may be stored (see the module docstring). Audits refusals; never commits.

    ``controls``: ``unapplied_controls`` for a batch of calls including this one, looked up once by the
    caller (``ingest_many``); None looks this call's up here.
    """

    def refuse(*, message: str, location: str, reason: str, clauses: tuple[str, ...],
               in_scope: bool = True) -> Admission:
        if in_scope:  # a call the policy must have recorded: an incident, not a silent drop (mandatory scope)
            incidents.raise_incident(session, policy=policy, kind=IncidentKind.REFUSED, facts=_facts(meta),
                                     detail=f"refused at admission: {reason}", source="capture", actor=actor,
                                     clock=clock)
        return _refuse(session, meta=meta, message=message, location=location, reason=reason, clauses=clauses,
                       actor=actor, actor_role=actor_role, source_ip=source_ip, clock=clock)

    scope = policy.recording_scope.check(direction=meta.direction, team=meta.team, extension=meta.extension,
                                         trunk_number=meta.local_number)
    if not scope.in_scope:
        return refuse(message=f"call {meta.call_id} is outside the recording scope and was not stored: "
                              f"{scope.reason}",
                      location=_scope_field(policy, meta), reason=scope.reason, clauses=tuple(scope.clauses),
                      in_scope=False)

    expired = retention.expired_on_arrival(session, policy=policy, started_at=meta.started_at,
                                           case_ref=meta.case_ref, now=clock.now())
    if expired is not None:
        when, rule = expired
        reason, clauses = _retention_reason(policy, rule, when, meta)
        return refuse(message=f"call {meta.call_id} started {meta.started_at.isoformat()} and was not stored: "
                              f"{reason}. It would be destroyed on arrival; a call that must be kept longer needs a "
                              "legal hold on its case (case_ref).",
                      location="started_at", reason=reason, clauses=clauses)

    switched = {ControlKind.PAUSE.value, ControlKind.STOP.value, ControlKind.PERSONAL.value}  # controls.agent_may
    calls = controls if controls is not None else unapplied_controls(session, [meta.call_id])
    eligible: list[RecordingControl] = []
    for control in [c for c in calls.get(meta.call_id, []) if c.applied_at is None]:
        if control.kind in switched and control.kind not in policy.controls.agent_may:
            # Filed under an earlier version that still had the control: the policy in force decides.
            control.applied_at = clock.now()
            control.outcome = f"ignored: controls.agent_may no longer allows {control.kind}"
        elif control.administrative and control.requested_role not in policy.controls.integration_roles:
            # Filed by an administering role under an earlier version, which let it: the policy in force lets
            # only the agent and controls.integration_roles control a call (A14, B4).
            control.applied_at = clock.now()
            control.outcome = (f"ignored: filed by {control.requested_by} (role {control.requested_role}), neither the "
                               "agent on the call nor a role in controls.integration_roles (A14, B4)")
        elif control.administrative or (control.requester_extension and control.requester_extension == meta.extension):
            eligible.append(control)
        else:
            control.applied_at = clock.now()
            control.outcome = (f"ignored: requested by {control.requested_by} (extension "
                               f"{control.requester_extension or 'none'}), but the call is on extension "
                               f"{meta.extension or 'none'}")
    for late in [c for c in eligible if c.kind == ControlKind.PERSONAL and c.created_at > meta.ended_at]:
        eligible.remove(late)
        _late_personal(session, policy=policy, meta=meta, control=late, source_ip=source_ip, clock=clock)
    evidence = [c for c in eligible if c.kind in EVIDENCE_KINDS]
    consent = _consent_with(meta, evidence)
    if consent is not None:
        meta = meta.model_copy(update={"consent": consent})
    standing = consent_check.standing_evidence(policy, meta)  # only when neither metadata nor events said
    if standing is not None:
        consent = standing
        meta = meta.model_copy(update={"consent": consent})
    personal = next((c for c in eligible if c.kind == ControlKind.PERSONAL), None)
    if personal is not None:
        personal.applied_at, personal.outcome = clock.now(), "call is personal: nothing stored"
        return refuse(message=f"call {meta.call_id} was marked personal by {personal.requested_by}; "
                              "nothing of it is stored",
                      location="call_id", reason="the call was marked personal; no recording is kept",
                      clauses=("A14", "B4"))

    consented = consent_check.outcome(policy, meta)
    if consented.action == "not_stored":
        reason = consented.reason or "the policy keeps no call without consent evidence"
        return refuse(message=f"call {meta.call_id} was not stored: {reason}", location="consent", reason=reason,
                      clauses=("A5", "B2"))

    origin = meta.started_at
    announcement_end = meta.consent.announcement_ended_at if meta.consent else None
    keep_from = 0.0
    if announcement_end is not None:
        if meta.ended_at <= announcement_end:
            return refuse(message=f"call {meta.call_id} ended during the announcement, so no caller audio is "
                                  "kept (the caller did not consent by staying on the line)",
                          location="consent.announcement_ended_at",
                          reason="the call ended during the announcement; nothing is stored", clauses=("A14",))
        keep_from = max(0.0, _seconds(announcement_end, origin))
    stop_times = [_seconds(c.at, origin) for c in eligible if c.kind == ControlKind.STOP and c.at is not None]
    keep_until = min(stop_times) if stop_times else None
    if keep_until is not None and keep_until <= keep_from:
        for c in eligible:
            if c.kind == ControlKind.STOP:
                c.applied_at, c.outcome = clock.now(), "stopped before any audio could be kept: nothing stored"
        return refuse(message=f"recording of call {meta.call_id} was stopped before any audio could be kept; "
                              "nothing is stored",
                      location="call_id", reason="recording was stopped before any audio could be kept",
                      clauses=("A14", "B4"))
    if keep_from >= info.duration_seconds:
        return refuse(message=f"call {meta.call_id}: the audio ends before the announcement does, so no caller "
                              "audio is kept",
                      location="consent.announcement_ended_at",
                      reason="no audio after the announcement; nothing is stored", clauses=("A14",))
    pauses = [(c.kind, _seconds(c.at, origin)) for c in eligible
              if c.kind in (ControlKind.PAUSE, ControlKind.RESUME) and c.at is not None]
    spans = tuple(pause_spans(pauses, end=keep_until))
    edit = AudioEdit(keep_from=keep_from, keep_until=keep_until, silence=spans)
    notes = []
    if keep_from > 0:
        notes.append(f"announcement removed ({keep_from:.1f} s)")
    if keep_until is not None:
        notes.append(f"stopped at {keep_until:.1f} s")
    if spans:
        notes.append(f"{len(spans)} paused span(s) silenced")
    if consent is not None and consent.source == "standing_rule":
        notes.append(f"consent evidence from standing rule {consent.rule} of policy {consent.policy}")
    elif consent is not None:
        notes.append("consent evidence from the recording-control API")
    return Admission(edit=edit, applied=[c.id for c in eligible], notes=notes, consent=consent)


def _consent_with(meta: CallMetadata, evidence: list[RecordingControl]) -> ConsentEvidence | None:
    """The call's consent evidence completed from control-API events, or None when they add nothing.

    An ``announced`` event brings its time, its prompt ``version`` (None when it named none: then the
    evidence is quarantined by ``consent_check``) and, with ``until``, the announcement's end.

    Metadata wins where it already says something: the telephony platform's own record is the better
    evidence, and an event cannot overwrite it.
    """
    first = {kind: min((c.at for c in evidence if c.kind == kind and c.at is not None), default=None)
             for kind in EVIDENCE_KINDS}
    current = meta.consent or ConsentEvidence()
    update: dict[str, object] = {}
    if meta.direction == "inbound" and current.announcement_played_at is None and first[ControlKind.ANNOUNCED]:
        update["announcement_played_at"] = first[ControlKind.ANNOUNCED]
        # The first announcement's prompt version; none named is checked (and quarantined) like metadata's.
        announced = min((c for c in evidence if c.kind == ControlKind.ANNOUNCED and c.at is not None),
                        key=lambda c: (c.at, c.created_at))
        if current.announcement_version is None:
            update["announcement_version"] = announced.version
        if current.announcement_ended_at is None and first[ControlKind.ANNOUNCEMENT_END]:
            update["announcement_ended_at"] = first[ControlKind.ANNOUNCEMENT_END]
    if meta.direction == "outbound" and current.agent_notice_at is None and first[ControlKind.NOTIFIED]:
        update["agent_notice_at"] = first[ControlKind.NOTIFIED]
    if update:
        update["source"] = "control_api"
    return current.model_copy(update=update) if update else None


def mark_applied(session: Session, *, admission: Admission, recording_id: str, clock: Clock = system_clock) -> None:
    """Link the honoured control events to the stored recording (the call's timeline)."""
    for control_id in admission.applied:
        control = session.get(RecordingControl, control_id)
        if control is not None and control.applied_at is None:
            control.recording_id = recording_id
            control.applied_at = clock.now()
            control.outcome = "applied when the recording was stored"
