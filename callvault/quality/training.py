"""Anonymised training clips (A6): built from a reviewed call, kept encrypted, served to the training purpose.

What "anonymised" means here:

- the caller's channel is removed: the clip is the agent's channel only (mono), so no sample of the
  caller's voice is in it; a mono recording (voices mixed) cannot be anonymised and is refused;
- where a transcript exists, personal data said on the agent's channel (numbers, names, e-mail
  addresses, account numbers, card data) is replaced by a tone over the same time span, using the same
  redaction as ``callvault.transcription.derivative``;
- the clip's row holds no caller identifier (numbers, call id, case and CRM references, start time).

Use is decided by the policy engine under the library's purpose: the recorded employee's consent must be
on file (A6), and withdrawing it destroys their clips (``withdraw_for_agent``, also swept by the worker).
The clip is encrypted under its own data key, wrapped in its row, and has its own retention
(``quality_review.training.retention_months`` after it was made), but never past the retention its
call had when the clip was made (A3: the call's clock, not the clip's: a clip made from a five-month-old
call under a six-month cap goes a month later); a call already past its retention (kept only by a legal
hold) is not made into a clip. Destroying a clip lists the wrapped key as destroyed, drops it and then
deletes the blob.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import soundfile
from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.access.consents import consents_of_agent
from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import AccessDenied, Conflict, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.policy.decide import Action, Actor, Decision, RecordingFacts, decide
from callvault.policy.schema import PolicyDocument, TrainingLibraryRules, add_months
from callvault.quality.models import ClipState, QaReviewItem, ReviewItemState, TrainingClip
from callvault.quality.sampling import rules_of
from callvault.recordings import playback
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording
from callvault.storage.blobstore import BlobStore
from callvault.storage.crypto import EncryptedBlobReader, encrypt_stream, new_data_key
from callvault.storage.keys import Keyring, WrappedKey
from callvault.transcription import derivative
from callvault.transcription import service as transcripts
from callvault.transcription.document import TranscriptDoc

AGENT_CHANNEL = 1
"""Stereo recordings carry the caller (remote party) on channel 0 and the agent on channel 1."""


def library_rules(policy: PolicyDocument) -> TrainingLibraryRules:
    rules = rules_of(policy).training
    if rules is None:
        raise InvalidInput(f"policy {policy.policy_id} version {policy.version} has no training library "
                           "(quality_review.training); calls cannot be promoted to it")
    return rules


def clip_purpose(policy: PolicyDocument) -> str:
    """The purpose whose consent keeps clips alive (``training`` unless the policy names another)."""
    qr = policy.quality_review
    return qr.training.purpose if qr is not None and qr.training is not None else "training"


def may_browse(policy: PolicyDocument, role: str) -> bool:
    qr = policy.quality_review
    return qr is not None and qr.training is not None and role in qr.training.library_roles


def anonymise(raw: bytes, doc: TranscriptDoc | None, *, region: str = "CA") -> tuple[bytes, int, float, int]:
    """The clip's WAV bytes (agent channel only, tones over personal data), the number of spans toned out,
    its duration and sample rate. ``raw`` is the decrypted original; nothing is written to disk."""
    doc = doc or TranscriptDoc(engine="none", speakers=[], segments=[])
    built = derivative.build(raw, doc, mask_caller=True, region=region)
    redacted = b"".join(built.chunks)
    data, rate = soundfile.read(io.BytesIO(redacted), dtype="int16", always_2d=True)
    agent = np.ascontiguousarray(data[:, AGENT_CHANNEL])
    out = io.BytesIO()
    soundfile.write(out, agent, rate, format="WAV", subtype="PCM_16")
    return out.getvalue(), sum(built.counts.values()), len(agent) / rate, int(rate)


def check_promotion(session: Session, *, policy: PolicyDocument, item_id: str) -> QaReviewItem:
    """The item exists, was reviewed, and has no clip yet."""
    item = session.get(QaReviewItem, item_id)
    if item is None:
        raise NotFound(f"no review item {item_id}")
    if item.state != ReviewItemState.REVIEWED:
        raise Conflict("only a reviewed call can be promoted to the training library; score it first")
    if session.scalar(select(TrainingClip.id).where(TrainingClip.recording_id == item.recording_id,
                                                    TrainingClip.state == ClipState.AVAILABLE)):
        raise Conflict("this call is already in the training library")
    return item


def store_clip(
    session: Session, *, store: BlobStore, keyring: Keyring, policy: PolicyDocument, recording: Recording,
    wav: bytes, masked_spans: int, duration: float, rate: int, transcript_used: bool, title: str, actor: Actor,
    clock: Clock = system_clock, source_ip: str | None = None,
) -> TrainingClip:
    """Encrypt the clip under a new data key, write it, and add its row (the caller commits).

    The blob is written first: a crash before the commit leaves only ciphertext whose key never existed.
    """
    rules = library_rules(policy)
    now = clock.now()
    destroy_after = clip_destroy_after(policy, recording, now)
    if destroy_after <= now:
        raise Conflict(f"this call's retention ended {destroy_after.isoformat(timespec='minutes')} (A3, B11); it is "
                       "kept only by a legal hold, which keeps evidence, not training material, so no clip is made")
    title = title.strip() or f"{recording.team or 'call'} {recording.direction} call"
    clip_id = new_id()
    data_key = new_data_key()
    blob_key = f"training/{clip_id[:2]}/{clip_id}.cva"
    with store.writer(blob_key) as sink:
        result = encrypt_stream(io.BytesIO(wav), len(wav), sink, data_key=data_key, context=clip_id.encode(),
                                chunk_size=64 * 1024)
    wrapped = keyring.wrap(data_key, recording_id=clip_id)
    clip = TrainingClip(
        id=clip_id, recording_id=recording.id, title=title[:200], agent=recording.agent or "", team=recording.team,
        direction=recording.direction, duration_seconds=round(duration, 2), sample_rate=rate,
        masked_spans=masked_spans, transcript_used=transcript_used, state=ClipState.AVAILABLE, blob_key=blob_key,
        kek_id=wrapped.kek_id, wrapped_key=wrapped.wrapped, size_bytes=result.plaintext_size,
        sha256=result.sha256_hex, created_by=actor.username, created_at=now,
        destroy_after=destroy_after)
    session.add(clip)
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="training_clip.created", object_type="training_clip",
        object_id=clip.id, purpose=rules.purpose, source_ip=source_ip, clauses=("A6",),
        details={"recording": recording.id, "masked_spans": masked_spans, "caller_channel": "removed",
                 "transcript_used": transcript_used}), clock=clock)
    return clip


def clip_destroy_after(policy: PolicyDocument, recording: Recording, now: datetime) -> datetime:
    """When a clip made now from ``recording`` goes: its own retention from now, but no later than the call's
    (its date as stored, which a resolved case may have brought forward, and the policy's cap from the call's
    start, whichever is first)."""
    ends = [_after_months(now, library_rules(policy).retention_months),
            policy.retention.expires_at(recording.started_at)]
    if recording.destroy_after is not None:
        ends.append(recording.destroy_after)
    return min(ends)


def _after_months(now: datetime, months: int) -> datetime:
    end = add_months(now.date(), months)
    return now.replace(year=end.year, month=end.month, day=end.day)


def clip_for_recording(session: Session, recording_id: str) -> TrainingClip | None:
    """The available anonymised clip made from a call, if any (what the training purpose is served)."""
    return session.scalars(select(TrainingClip).where(TrainingClip.recording_id == recording_id,
                                                      TrainingClip.state == ClipState.AVAILABLE).limit(1)).first()


NO_COPY_YET = ("this purpose is served only by an anonymised derivative, and none exists for this call yet: a "
               "reviewer makes one by promoting the reviewed call to the training library")


def missing_copy(session: Session, recording_id: str, clauses: tuple[str, ...] = ("A6",)) -> AccessDenied | None:
    """The refusal for a purpose served only by an anonymised copy (A6) when the call has none yet, else None.

    Checked before the decision is audited (``recordings.service.ServeCheck``), so the entry says
    "deny" when the person is refused for want of a copy."""
    if clip_for_recording(session, recording_id) is None:
        return AccessDenied(NO_COPY_YET, clauses=clauses)
    return None


def list_clips(session: Session, *, policy: PolicyDocument, actor: Actor) -> list[TrainingClip]:
    """The library (metadata only) for the roles the policy lets browse it."""
    rules = library_rules(policy)
    if actor.role not in rules.library_roles:
        raise AccessDenied(f"Role {actor.role!r} may not browse the training library; it is open to: "
                           f"{', '.join(rules.library_roles)}.", clauses=("A6",))
    return list(session.scalars(select(TrainingClip).where(TrainingClip.state == ClipState.AVAILABLE)
                                .order_by(TrainingClip.created_at.desc())))


def clip_facts(session: Session, clip: TrainingClip) -> RecordingFacts:
    """The policy engine's view of a clip: its agent's consents decide (A6); a destroyed clip is unreachable."""
    return RecordingFacts(recording_id=clip.id, extension=None, agent=clip.agent, team=clip.team,
                          employee_consents=consents_of_agent(session, clip.agent),
                          state="available" if clip.state == ClipState.AVAILABLE else "destroyed")


def authorize_clip(
    session: Session, *, policy: PolicyDocument, actor: Actor, clip_id: str, action: Action = Action.PLAY,
    source_ip: str | None = None, clock: Clock = system_clock,
) -> tuple[Decision, TrainingClip | None]:
    """Decide (library role, training purpose, employee consent) and audit; the caller commits, then refuses."""
    rules = library_rules(policy)
    clip = session.get(TrainingClip, clip_id)
    if clip is None:
        decision = Decision(allowed=False, reason="no such training clip", clauses=("A6",), purpose=rules.purpose,
                            serves=None)
    elif actor.role not in rules.library_roles:
        decision = Decision(allowed=False, reason=f"Role {actor.role!r} may not use the training library; it is "
                            f"open to: {', '.join(rules.library_roles)}.", clauses=("A6",), purpose=rules.purpose,
                            serves=None)
    else:
        decision = decide(policy=policy, actor=actor, action=action, recording=clip_facts(session, clip),
                          purpose=rules.purpose, now=clock.now())
        if decision.allowed and decision.serves != "anonymised_derivative":
            decision = Decision(allowed=False, reason=f"purpose {rules.purpose!r} does not serve an anonymised copy",
                                clauses=("A6",), purpose=rules.purpose, serves=None)
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action=f"training_clip.{action.value}",
        decision="allow" if decision.allowed else "deny", object_type="training_clip", object_id=clip_id[:200],
        purpose=decision.purpose, reason=decision.reason, clauses=decision.clauses, source_ip=source_ip), clock=clock)
    return decision, clip


def open_clip(keyring: Keyring, store: BlobStore, clip: TrainingClip) -> EncryptedBlobReader:
    if clip.wrapped_key is None or clip.kek_id is None or clip.state != ClipState.AVAILABLE:
        raise NotFound("this training clip has been destroyed")
    data_key = keyring.unwrap(WrappedKey(kek_id=clip.kek_id, wrapped=clip.wrapped_key), recording_id=clip.id)
    blob_key = clip.blob_key
    return EncryptedBlobReader(store.ranged_reader(blob_key),
                               data_key=data_key, context=clip.id.encode())


def read_clip(keyring: Keyring, store: BlobStore, clip: TrainingClip) -> bytes:
    """The clip's WAV, checked against its SHA-256."""
    data = b"".join(open_clip(keyring, store, clip).iter_all())
    if hashlib.sha256(data).hexdigest() != clip.sha256:
        raise InvalidInput(f"training clip {clip.id}: its audio does not match its checksum")
    return data


def _separable(_session: Session, row: Recording, _decision: Decision) -> InvalidInput | None:
    """A mono call cannot become a clip (the voices cannot be separated): refused before the export is audited."""
    if row.channels < 2:
        return InvalidInput(f"this call cannot be made into a training clip: {derivative.MONO_REFUSAL}")
    return None


def promote(
    *, db: Database, store: BlobStore, keyring: Keyring, policy: PolicyDocument, actor: Actor, item_id: str,
    title: str = "", region: str = "CA", source_ip: str | None = None, clock: Clock = system_clock,
) -> str:
    """Promote a reviewed queued call to the library; returns the new clip's id.

    Decided under the library's purpose as an export of the call (A6: the recorded employee's consent must
    be on file) and audited; a denial is committed before AccessDenied is raised. The original is decrypted
    in memory only; the clip is anonymised (``anonymise``) and stored encrypted (``store_clip``).
    """
    rules = library_rules(policy)
    if actor.role not in rules_of(policy).reviewer_roles:
        raise AccessDenied(f"Role {actor.role!r} does not review calls, so it cannot promote one to the training "
                           "library.", clauses=("A6", "B8"))
    with db.unit_of_work() as session:
        item = check_promotion(session, policy=policy, item_id=item_id)
        if item.agent == actor.username:
            raise NotFound(f"no review item {item_id}")
        decision, row = recordings.authorize_content(
            session, policy=policy, actor=actor, action=Action.EXPORT, recording_id=item.recording_id,
            purpose=rules.purpose, source_ip=source_ip, details={"training_clip_from": item.id},
            check=_separable, clock=clock)
        if row is not None:
            session.expunge(row)
    if row is None:
        raise NotFound("the call no longer exists")
    if not decision.allowed:
        raise recordings.refusal(decision)
    with db.unit_of_work() as session:
        reader = playback.open_reader(session, store=store, keyring=keyring, row=row)
        try:
            _, doc = transcripts.load_transcript(session, keyring=keyring, recording_id=row.id)
        except NotFound:
            doc = None
    raw = b"".join(playback.stream(reader, None, row.sha256))
    try:
        wav, spans, duration, rate = anonymise(raw, doc, region=region)
    except AccessDenied as exc:  # a mono call: the voices cannot be separated
        raise InvalidInput(f"this call cannot be made into a training clip: {exc.message}") from exc
    with db.unit_of_work() as session:
        clip = store_clip(session, store=store, keyring=keyring, policy=policy, recording=row, wav=wav,
                          masked_spans=spans, duration=duration, rate=rate, transcript_used=doc is not None,
                          title=title, actor=actor, clock=clock, source_ip=source_ip)
        return clip.id


# ------------------------------------------------------------------------------------------ destroying
def destroy(session: Session, *, keyring: Keyring, clips: Sequence[TrainingClip], reason: str, actor: str,
            clock: Clock = system_clock) -> list[str]:
    """Crypto-shred ``clips`` (the caller commits, then deletes the returned blob keys with ``delete_blobs``)."""
    live = [c for c in clips if c.wrapped_key is not None and c.kek_id is not None]
    if live:
        keyring.record_destroyed([WrappedKey(kek_id=str(c.kek_id), wrapped=bytes(c.wrapped_key or b""))
                                  for c in live])
    now = clock.now()
    for c in clips:
        c.wrapped_key, c.state, c.destroyed_at, c.destroyed_reason = None, ClipState.DESTROYED, now, reason
        audit.append(session, audit.AuditEvent(
            actor=actor, action="training_clip.destroyed", object_type="training_clip", object_id=c.id,
            reason=reason, clauses=("A6",)), clock=clock)
    return [c.blob_key for c in clips]


def delete_blobs(store: BlobStore, blob_keys: Sequence[str]) -> None:
    for key in blob_keys:
        store.delete(key)


def withdraw_for_agent(session: Session, *, keyring: Keyring, agent: str, actor: str,
                       clock: Clock = system_clock) -> list[str]:
    """Destroy every clip of ``agent`` (their training consent was withdrawn); returns blob keys to delete."""
    clips = list(session.scalars(select(TrainingClip).where(TrainingClip.agent == agent.lower(),
                                                            TrainingClip.state == ClipState.AVAILABLE)))
    return destroy(session, keyring=keyring, clips=clips, reason="consent_withdrawn", actor=actor, clock=clock)


def sweep(session: Session, *, policy: PolicyDocument, keyring: Keyring, clock: Clock = system_clock,
          limit: int = 500) -> list[str]:
    """Destroy clips past their retention, and clips whose agent no longer consents (withdrawn by any path)."""
    purpose = clip_purpose(policy)
    due = list(session.scalars(select(TrainingClip).where(TrainingClip.state == ClipState.AVAILABLE)
                               .order_by(TrainingClip.destroy_after).limit(limit)))
    expired = [c for c in due if c.destroy_after <= clock.now()]
    unconsented = [c for c in due if c not in expired and purpose not in consents_of_agent(session, c.agent)]
    keys = destroy(session, keyring=keyring, clips=expired, reason="retention", actor="worker", clock=clock)
    keys += destroy(session, keyring=keyring, clips=unconsented, reason="consent_withdrawn", actor="worker",
                    clock=clock)
    return keys
