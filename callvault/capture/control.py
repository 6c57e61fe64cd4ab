"""Recording control (A14, B4) and quarantine resolution (A5, B2).

Control events: ``stop`` (nothing after the instant is kept), ``pause``/``resume`` (the span is
silenced; the timeline keeps the fact that it existed), ``personal`` (nothing of the call is kept).
Who may file one (``capacity``), the agent controls and the consent evidence alike: the agent on the
call (a user whose extension is the call's), or the telephony/CTI/desktop integration relaying the
agent's own act with an account whose role is in ``controls.integration_roles`` (A14, B4: the agent
stops the recording or marks the call personal). A role that merely administers the system may not: an
administrator or IT person never stops, pauses or wipes someone's call. Everyone else is refused
(AccessDenied naming the roles that may and the clauses), and the edge audits the refusal as a denial.
``personal`` on a *stored* recording is narrower (``capture.personal``): only the recorded agent,
within the policy's window after the call's end, never while the recording is evidence; each such
marking is reported to the misuse recipients.

* For a call not stored yet the event is kept in ``recording_controls`` and applied by ingest
  (``capture.admission``); a specialist's event applies only if the call is on their extension.
* For a call a SIPREC capture process is recording now (a row in ``active_calls``), that process
  polls for the event and applies it live (``capture.siprec.live``): the pause silences the span,
  stop keeps nothing more, personal ends capture and destroys the partial recording at once.
* For a stored recording it is applied after the fact, here:
  - ``stop``: the audio is decrypted in memory, cut, re-encrypted under a **new** data key into a new
    blob; the catalog switches to it in one transaction and the old key and blob are destroyed
    (``retention.shred``: listed, blob deleted). A stop at or before the start destroys the recording.
  - ``pause`` (with ``until``, or to the end when none is given) silences the span the same way;
    a lone ``resume`` on a stored recording changes nothing (silenced audio cannot come back).
  - ``personal`` (when ``capture.personal`` allows it): the whole recording is destroyed at once; a
    content-free destruction record stays.

Quarantine: a recording without consent evidence is stored but excluded from normal use; an
administering role releases it (evidence found) or destroys it, with a reason, audited.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.capture import personal
from callvault.capture.audioedit import AudioEdit, apply_edit
from callvault.capture.models import EVIDENCE_KINDS, ControlKind, RecordingControl
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import AccessDenied, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.live import service as live
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.recordings import playback
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.retention import service as retention
from callvault.retention.models import RetentionRule
from callvault.retention.shred import Doomed, Pending, destroy_now, finish, replace_key
from callvault.storage.blobstore import BlobStore
from callvault.storage.crypto import encrypt_stream, new_data_key
from callvault.storage.keys import Keyring

CHUNK_SIZE = 64 * 1024
AGENT_CONTROLS = frozenset({ControlKind.PAUSE.value, ControlKind.STOP.value, ControlKind.PERSONAL.value})
"""The controls ``controls.agent_may`` switches on or off (a ``resume`` only ends a pause)."""


class UnderRetentionMinimum(Conflict):
    """The recording is within its retention minimum: nothing may destroy or alter it yet (issue 28)."""


def _mandatory_clauses(policy: PolicyDocument) -> tuple[str, ...]:
    extra = (policy.recording_scope.mandatory_clause,) if policy.recording_scope.mandatory_clause else ()
    return ("A14", "B4", *extra)


def is_administrative(policy: PolicyDocument, role: str) -> bool:
    rule = policy.roles.get(role)
    return bool(rule and rule.can_administer)


Capacity = Literal["agent", "integration"]


def capacity(policy: PolicyDocument, actor: Actor, extension: str | None, *,
             call_known: bool = True) -> Capacity | None:
    """In which capacity ``actor`` may file controls on a call on ``extension``: ``integration`` for a role in
    ``controls.integration_roles`` (it relays the agent's act, for any call), ``agent`` for the agent on the
    call, None for anyone else. A call this node knows nothing of yet (``call_known`` false): any user with an
    extension files as its agent, and ingest applies the event only if the call turns out to be theirs."""
    if actor.role in policy.controls.integration_roles:
        return "integration"
    if actor.role not in policy.roles or not actor.extension:
        return None
    if not call_known:
        return "agent"
    return "agent" if extension and actor.extension == extension else None


def may_control(policy: PolicyDocument, actor: Actor, extension: str | None) -> bool:
    """The agent on the call (their extension is the call's) or an integration role relaying the agent's act."""
    return capacity(policy, actor, extension) is not None


def _not_allowed(policy: PolicyDocument, actor: Actor, kind: str) -> AccessDenied:
    relays = ", ".join(policy.controls.integration_roles)
    who = (f"or an account whose role is in controls.integration_roles ({relays}) relaying the agent's act"
           if relays else f"(policy {policy.policy_id} {policy.version} names no controls.integration_roles)")
    admin = " (administering the system does not allow it)" if is_administrative(policy, actor.role) else ""
    evidence = kind in EVIDENCE_KINDS
    clauses = ("A5", "B2", "A14", "B4") if evidence else ("A14", "B4")
    what = ("The call's consent evidence is reported during the call by its agent or the phone system"
            if evidence else "Stopping, pausing or marking a call personal is the agent's act during the call")
    return AccessDenied(
        f"only the agent on the call {who} may file {kind} for it; role {actor.role!r} may not{admin}. "
        f"{what} ({', '.join(clauses)})",
        reason="neither the agent on the call nor an integration role", clauses=clauses)


def audio_origin(row: Recording) -> datetime:
    """The call instant the stored audio's first sample belongs to (after a removed announcement)."""
    ended = row.consent.get("announcement_ended_at") if row.consent else None
    if ended:
        at = datetime.fromisoformat(ended)
        if at > row.started_at:
            return at
    return row.started_at


@dataclass(frozen=True)
class ControlFiled:
    """The stored event(s) and, when the call is already stored, the recording to apply them to."""

    control_ids: tuple[str, ...]
    recording_id: str | None
    call_id: str
    live: bool = False
    """The call is being recorded now: its capture process applies the events within a fraction of a second."""


def _check_request(kind: str, at: datetime | None, until: datetime | None, version: str | None = None) -> None:
    problems = []
    if kind not in set(ControlKind) or kind == ControlKind.ANNOUNCEMENT_END:
        choices = ", ".join(k.value for k in ControlKind if k != ControlKind.ANNOUNCEMENT_END)
        problems.append(FieldProblem("action", f"must be one of {choices} (an announcement's end is its `until`)"))
    elif kind != ControlKind.PERSONAL and at is None:
        problems.append(FieldProblem("at", f"say when to {kind} (ISO 8601 with a UTC offset)"))
    for name, value in (("at", at), ("until", until)):
        if value is not None and value.tzinfo is None:
            problems.append(FieldProblem(name, "must include a UTC offset"))
    if until is not None and kind not in (ControlKind.PAUSE, ControlKind.ANNOUNCED):
        problems.append(FieldProblem("until", "only a pause or an announcement has an end"))
    if until is not None and at is not None and until.tzinfo and at.tzinfo and until <= at:
        problems.append(FieldProblem("until", "must be after at"))
    if version is not None and kind != ControlKind.ANNOUNCED:
        problems.append(FieldProblem("version", "only an announcement names a prompt version"))
    elif version is not None and len(version) > 50:
        problems.append(FieldProblem("version", "at most 50 characters"))
    if problems:
        raise InvalidInput("invalid recording control:", problems)


def file_control(
    session: Session, *, policy: PolicyDocument, actor: Actor, kind: str, at: datetime | None = None,
    until: datetime | None = None, call_id: str | None = None, recording_id: str | None = None,
    source_ip: str | None = None, mail_domain: str = "localhost",
    clock: Clock = system_clock, version: str | None = None,
) -> ControlFiled:
    """Record a control event for a call (by ``call_id``) or a stored recording (by ``recording_id``).

    AccessDenied for someone who is neither the agent on the call nor an integration role; NotFound for an
    unknown recording id; Conflict for a call being stored right now or already destroyed. ``personal``
    on a stored recording: see ``capture.personal`` (AccessDenied, or ``PersonalRefused``; an allowed
    marking after the call's end files a misuse report, mailed with ``mail_domain``). ``version``: an
    ``announced`` event's prompt version, kept on its row for admission (``capture.admission``).
    """
    version = (version.strip() or None) if version is not None else None
    _check_request(kind, at, until, version)
    if kind in AGENT_CONTROLS and kind not in policy.controls.agent_may:
        raise AccessDenied(
            f"recording control {kind} does not exist under policy {policy.policy_id} {policy.version}: "
            f"controls.agent_may allows {', '.join(policy.controls.agent_may) or 'none'}",
            reason=f"{kind} is not in controls.agent_may", clauses=_mandatory_clauses(policy))
    row: Recording | None
    if recording_id is not None:
        row = session.get(Recording, recording_id)
        if row is None:
            raise NotFound("no such recording")
        call_id = row.call_id
    else:
        if not call_id:
            raise InvalidInput("invalid recording control:", [FieldProblem("call_id", "name the call")])
        row = session.scalar(select(Recording).where(Recording.call_id == call_id))
    filed_as = capacity(policy, actor, row.extension if row is not None else None, call_known=row is not None)
    if filed_as is None:
        if kind == ControlKind.PERSONAL and row is not None and row.state == RecordingState.AVAILABLE:
            personal.check(session, policy=policy, actor=actor, row=row, clock=clock)  # "only the recorded agent"
        raise _not_allowed(policy, actor, kind)
    if row is not None:
        if row.state == RecordingState.PENDING and live.live_call(session, row.call_id, clock=clock) is None:
            raise Conflict(f"call {call_id} is being stored right now; send the control again in a moment")
        if row.state == RecordingState.DESTROYED:
            raise Conflict(f"the recording of call {call_id} was already destroyed")
        if (row.state == RecordingState.AVAILABLE and kind in AGENT_CONTROLS
                and retention.under_minimum(row, clock.now())):
            raise UnderRetentionMinimum(retention.minimum_refusal(
                policy, row, "discarded" if kind == ControlKind.PERSONAL else "cut or silenced"))
        if row.state == RecordingState.AVAILABLE and kind in (ControlKind.STOP, ControlKind.PAUSE):
            refusal = late_edit_refusal(session, policy, row, clock.now())
            if refusal is not None:
                raise refusal
    assert call_id is not None
    live_now = row is not None and row.state == RecordingState.PENDING
    late_personal: Recording | None = None
    if kind == ControlKind.PERSONAL and row is not None and not live_now:
        personal.check(session, policy=policy, actor=actor, row=row, clock=clock)
        if personal.after_end(row, clock.now()):
            late_personal = row
    if live_now:
        row = None  # being recorded live: the capture process applies the events (capture/siprec/live.py)
    if kind in EVIDENCE_KINDS and row is not None:
        raise Conflict(f"consent evidence for call {call_id} must be filed while the call is in progress; for a "
                       "stored recording, release it from quarantine with the reason instead")
    events = [(kind, at)]
    if until is not None and kind == ControlKind.PAUSE:
        events.append((ControlKind.RESUME.value, until))
    if until is not None and kind == ControlKind.ANNOUNCED:
        events.append((ControlKind.ANNOUNCEMENT_END.value, until))
    ids = []
    for event_kind, event_at in events:
        control = RecordingControl(
            id=new_id(), call_id=call_id, recording_id=row.id if row is not None else None, kind=event_kind,
            at=event_at, requested_by=actor.username, requested_role=actor.role,
            requester_extension=actor.extension, administrative=filed_as == "integration", created_at=clock.now(),
            outcome="", version=version if event_kind == ControlKind.ANNOUNCED else None,
        )
        session.add(control)
        ids.append(control.id)
    session.flush()
    entry = audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action=f"recording.control_{kind}", decision="allow",
        object_type="recording" if row is not None else "call", object_id=row.id if row is not None else call_id,
        source_ip=source_ip, clauses=("A5", "B2") if kind in EVIDENCE_KINDS else ("A14", "B4"),
        details={"call_id": call_id, "at": at.isoformat() if at else None,
                 "until": until.isoformat() if until else None, "stored": row is not None, "live": live_now,
                 "capacity": filed_as,
                 **({"version": version} if kind == ControlKind.ANNOUNCED else {}),
                 **({"after_call_end": True} if late_personal is not None else {})},
    ), clock=clock)
    if late_personal is not None:
        personal.report(session, policy=policy, actor=actor, row=late_personal, evidence=entry.seq,
                        mail_domain=mail_domain, clock=clock)
    return ControlFiled(tuple(ids), row.id if row is not None else None, call_id, live=live_now)


def late_edit_refusal(session: Session, policy: PolicyDocument, row: Recording,
                      now: datetime) -> personal.PersonalRefused | None:
    """Why a ``stop`` or ``pause`` may not reach the stored recording ``row`` now; None when it may.

    They are the agent's acts during the call, relayed late at most by the window ``personal`` has
    (``controls.personal_after_call_minutes``); after it, or while the recording is evidence (an unresolved
    case, an access or caller's request in hand, a quality sample: ``personal.evidence``), cutting it would be
    a way around everything that keeps it, as marking it personal would (A3, A9, A14, B4). A legal hold defers
    the edit instead (``apply_deferred`` asks again once it is released)."""
    window = policy.controls.personal_after_call_minutes
    minutes = (now - row.ended_at).total_seconds() / 60
    if minutes > window:
        return personal.PersonalRefused(
            f"recording {row.id} cannot be cut or silenced: the call ended {minutes:.0f} minutes ago and policy "
            f"{policy.policy_id} lets the agent's stop or pause reach its stored recording for {window} minutes "
            "after the call's end (controls.personal_after_call_minutes; A14, B4)",
            reason="after the window for the agent's controls", clauses=("A14", "B4"))
    if row.on_hold:
        return None
    return personal.evidence(session, row, now, what="cut or silenced")


def _edit_for(row: Recording, controls: list[RecordingControl]) -> tuple[AudioEdit, bool]:
    """The edit these new events ask of the stored audio, and whether nothing would remain."""
    origin = audio_origin(row)
    stops = [(c.at - origin).total_seconds() for c in controls if c.kind == ControlKind.STOP and c.at]
    keep_until = min(stops) if stops else None
    pause = next((c for c in controls if c.kind == ControlKind.PAUSE and c.at), None)
    spans: tuple[tuple[float, float], ...] = ()
    if pause is not None and pause.at is not None:
        resume = next((c for c in controls if c.kind == ControlKind.RESUME and c.at), None)
        end = (resume.at - origin).total_seconds() if resume is not None and resume.at else row.duration_seconds
        spans = ((max(0.0, (pause.at - origin).total_seconds()), end),)
    if keep_until is not None and keep_until >= row.duration_seconds:
        keep_until = None  # stopped after the audio ended: nothing to cut
    edit = AudioEdit(keep_until=keep_until, silence=tuple(s for s in spans if s[1] > s[0]))
    return edit, keep_until is not None and keep_until <= 0


def apply_to_stored(
    *, db: Database, store: BlobStore, keyring: Keyring, filed: ControlFiled, actor: Actor,
    source_ip: str | None = None, clock: Clock = system_clock,
) -> str:
    """Apply just-filed events to the stored recording (see the module docstring); returns what was done."""
    if filed.live:
        return "sent to the call being recorded now; applied live by the capture process"
    if filed.recording_id is None:
        return "kept; applied when the call's recording arrives"
    edit = AudioEdit()
    pending: list[Pending] = []
    outcome = ""
    with db.unit_of_work() as session:
        row = session.get(Recording, filed.recording_id)
        controls = list(session.scalars(select(RecordingControl).where(RecordingControl.id.in_(filed.control_ids))))
        if row is None or row.state != RecordingState.AVAILABLE:
            raise Conflict("the recording is no longer available")
        if row.on_hold:
            return _defer_for_hold(session, row=row, controls=controls, actor=actor, source_ip=source_ip,
                                   clock=clock)
        kept = (None if any(c.kind == ControlKind.PERSONAL for c in controls)
                else personal.evidence(session, row, clock.now(), what="cut or silenced"))
        if kept is not None:  # a stop a hold deferred, asked again once the hold went: it is still evidence
            outcome = f"not applied: {kept.message}"
            _mark(controls, outcome, clock)
            audit.append(session, audit.AuditEvent(
                actor=actor.username, actor_role=actor.role, action="recording.control_refused", decision="deny",
                object_type="recording", object_id=row.id, reason=kept.reason, source_ip=source_ip,
                clauses=kept.clauses, details={"controls": [c.kind for c in controls]}), clock=clock)
            return outcome
        if any(c.kind == ControlKind.PERSONAL for c in controls):
            pending = destroy_now(session, keyring=keyring, doomed=[Doomed.of(
                row, RetentionRule.PERSONAL_CALL.value, f"call marked personal by {actor.username}")],
                actor=actor.username, actor_role=actor.role, source_ip=source_ip, clock=clock)
            outcome = "recording destroyed: the call is personal"
            _mark(controls, outcome, clock)
        else:
            edit, nothing_left = _edit_for(row, controls)
            if nothing_left:
                pending = destroy_now(session, keyring=keyring, doomed=[Doomed.of(
                    row, RetentionRule.STOPPED.value, f"recording stopped at its start by {actor.username}")],
                    actor=actor.username, actor_role=actor.role, source_ip=source_ip, clock=clock)
                outcome = "recording destroyed: stopped before any audio"
                _mark(controls, outcome, clock)
            elif edit.is_noop:
                outcome = "nothing to change in the stored audio"
                _mark(controls, outcome, clock)
    if pending:
        finish(db, store, keyring, pending, clock=clock)
    if outcome:
        return outcome
    return _rewrite(db=db, store=store, keyring=keyring, recording_id=filed.recording_id, edit=edit,
                    control_ids=filed.control_ids, actor=actor, source_ip=source_ip, clock=clock)


class UnderLegalHold(Conflict):
    """Destruction refused because a legal hold covers the recording; callers audit the refusal."""

    reason = "legal hold"
    clauses = ("A9", "B11")


HELD_OUTCOME = "deferred: the recording is under legal hold; applied when the hold is released"
NOT_APPLIED_HELD = ("not applied: a recording under legal hold is never marked personal, and the window after the "
                    "call's end has passed (A9, A14, B4)")


def _defer_for_hold(session: Session, *, row: Recording, controls: list[RecordingControl], actor: Actor,
                    source_ip: str | None, clock: Clock) -> str:
    """A legal hold outranks destruction and alteration (RELIABILITY 11): refuse now, on the record.

    The events stay unapplied (``applied_at`` empty) with the reason as their outcome; the
    ``capture.apply_deferred_controls`` job applies them once no hold covers the recording.
    """
    for control in controls:
        control.outcome = HELD_OUTCOME
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="recording.control_deferred", decision="deny",
        object_type="recording", object_id=row.id, reason="legal hold", source_ip=source_ip,
        clauses=("A9", "B11"), details={"controls": [c.kind for c in controls]},
    ), clock=clock)
    return HELD_OUTCOME


def apply_deferred(*, db: Database, store: BlobStore, keyring: Keyring, clock: Clock = system_clock) -> int:
    """Apply control events a legal hold held back, for recordings no hold covers any more."""
    with db.unit_of_work() as session:
        waiting = session.execute(
            select(RecordingControl.recording_id, RecordingControl.id, RecordingControl.requested_by,
                   RecordingControl.requested_role)
            .join(Recording, Recording.id == RecordingControl.recording_id)
            .where(RecordingControl.applied_at.is_(None), RecordingControl.outcome == HELD_OUTCOME,
                   RecordingControl.kind != ControlKind.PERSONAL,
                   Recording.state == RecordingState.AVAILABLE, Recording.on_hold.is_(False))
            .order_by(RecordingControl.created_at)).all()
        # A held recording is never marked personal any more (``capture.personal``); one deferred before
        # that rule is closed, not applied: the hold's end is long after the call's, and the window.
        for stale in session.scalars(select(RecordingControl).where(
                RecordingControl.applied_at.is_(None), RecordingControl.outcome == HELD_OUTCOME,
                RecordingControl.kind == ControlKind.PERSONAL)):
            stale.applied_at, stale.outcome = clock.now(), NOT_APPLIED_HELD
    by_recording: dict[str, list[tuple[str, str, str]]] = {}
    for rec_id, control_id, who, role in waiting:
        by_recording.setdefault(str(rec_id), []).append((control_id, who, role))
    for rec_id, items in by_recording.items():
        first = items[0]
        filed = ControlFiled(control_ids=tuple(i[0] for i in items), recording_id=rec_id, call_id="")
        apply_to_stored(db=db, store=store, keyring=keyring, filed=filed,
                        actor=Actor(user_id="", username=first[1], role=first[2]), clock=clock)
    return len(by_recording)


def _mark(controls: list[RecordingControl], outcome: str, clock: Clock) -> None:
    for control in controls:
        control.applied_at, control.outcome = clock.now(), outcome


def _rewrite(
    *, db: Database, store: BlobStore, keyring: Keyring, recording_id: str, edit: AudioEdit,
    control_ids: tuple[str, ...], actor: Actor, source_ip: str | None, clock: Clock,
) -> str:
    """Cut/silence the stored audio under a new key and blob, then destroy the old key and blob."""
    with db.unit_of_work() as session:
        row = session.get(Recording, recording_id)
        assert row is not None
        old_blob = row.blob_key
        reader = playback.open_reader(session, store=store, keyring=keyring, row=row)
        plaintext = b"".join(playback.stream(reader, None, row.sha256))
    edited = apply_edit(plaintext, edit)
    del plaintext
    data_key = new_data_key()
    new_blob = f"{recording_id[:2]}/{recording_id[2:4]}/{recording_id}.{new_id()[:8]}.cva"
    with store.writer(new_blob) as sink:
        result = encrypt_stream(io.BytesIO(edited.data), len(edited.data), sink, data_key=data_key,
                                context=recording_id.encode(), chunk_size=CHUNK_SIZE)
    wrapped = keyring.wrap(data_key, recording_id=recording_id)
    pending: Pending
    try:
        with db.unit_of_work() as session:
            row = session.get(Recording, recording_id)
            old_key = session.get(DataKey, recording_id)
            if row is None or old_key is None or row.state != RecordingState.AVAILABLE or row.blob_key != old_blob:
                raise Conflict("the recording changed while the control was applied; send it again")
            pending = replace_key(session, row=row, old_key=old_key, new_key=DataKey(
                recording_id=recording_id, kek_id=wrapped.kek_id, wrapped_key=wrapped.wrapped, chunk_size=CHUNK_SIZE,
                ciphertext_size=result.ciphertext_size, created_at=clock.now()), new_blob_key=new_blob, clock=clock)
            old_sha = row.sha256
            row.sha256, row.size_bytes = result.sha256_hex, result.plaintext_size
            row.duration_seconds = edited.seconds
            parts = []
            if edit.keep_until is not None:
                parts.append(f"truncated at {edit.keep_until:.1f} s")
            if edit.silence:
                parts.append(", ".join(f"{a:.1f}-{b:.1f} s silenced" for a, b in edit.silence))
            outcome = "; ".join(parts)
            for control in session.scalars(select(RecordingControl).where(RecordingControl.id.in_(control_ids))):
                control.applied_at, control.outcome = clock.now(), outcome
            audit.append(session, audit.AuditEvent(
                actor=actor.username, actor_role=actor.role, action="recording.edited", decision="info",
                object_type="recording", object_id=recording_id, reason=outcome, source_ip=source_ip,
                clauses=("A14", "B4"),
                details={"old_sha256": old_sha, "new_sha256": result.sha256_hex, "old_kek_id": old_key.kek_id,
                         "new_kek_id": wrapped.kek_id},
            ), clock=clock)
    except BaseException:
        store.delete(new_blob)
        raise
    finish(db, store, keyring, [pending], clock=clock)
    return outcome


def timeline(session: Session, *, recording: Recording) -> list[RecordingControl]:
    """The call's control events, in the order they happened on the call."""
    events = session.scalars(select(RecordingControl).where(or_(
        RecordingControl.recording_id == recording.id, RecordingControl.call_id == recording.call_id,
    )))
    return sorted(events, key=lambda e: (e.at or e.created_at, e.created_at, e.id))


# ----------------------------------------------------------------------------------------- quarantine
def resolve_quarantine(
    session: Session, *, policy: PolicyDocument, actor: Actor, recording_id: str, decision: str, reason: str,
    keyring: Keyring, administrative: bool | None = None, source_ip: str | None = None,
    clock: Clock = system_clock,
) -> list[Pending]:
    """Release (evidence found) or destroy a quarantined recording. The caller commits, then ``finish``es."""
    admin = is_administrative(policy, actor.role) if administrative is None else administrative
    if not admin:
        raise AccessDenied("only an administering role may resolve quarantined recordings",
                           reason="not an administering role", clauses=("A5", "B2"))
    problems = []
    if decision not in ("release", "destroy"):
        problems.append(FieldProblem("decision", "must be release or destroy"))
    if not reason.strip():
        problems.append(FieldProblem("reason", "say why (e.g. where the consent evidence was found)"))
    if problems:
        raise InvalidInput("invalid quarantine resolution:", problems)
    row = session.get(Recording, recording_id)
    if row is None or row.state != RecordingState.AVAILABLE:
        raise NotFound("no such recording")
    if not row.quarantined:
        raise Conflict(f"recording {recording_id} is not quarantined")
    if decision == "destroy" and retention.under_minimum(row, clock.now()):
        raise UnderRetentionMinimum(retention.minimum_refusal(policy, row, "destroyed") + "; release it from "
                                    "quarantine once its consent evidence is found, or leave it quarantined")
    if decision == "destroy" and row.on_hold:
        raise UnderLegalHold(f"recording {recording_id} is under legal hold: it cannot be destroyed until the "
                             "hold is released (release it from quarantine, or wait for the hold's release)")
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action=f"recording.quarantine_{decision}", decision="allow",
        object_type="recording", object_id=row.id, reason=reason.strip(), source_ip=source_ip, clauses=("A5", "B2"),
        details={"quarantine_reason": row.quarantine_reason},
    ), clock=clock)
    if decision == "release":
        row.quarantined, row.quarantine_reason = False, None
        session.flush()
        return []
    return destroy_now(session, keyring=keyring, doomed=[Doomed.of(
        row, RetentionRule.QUARANTINE_DESTROYED.value, reason.strip())], actor=actor.username,
        actor_role=actor.role, source_ip=source_ip, clock=clock)
