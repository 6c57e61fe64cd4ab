"""Transcription, redaction and the CRM check: the domain's operations.

Work is claimed from the ``transcripts`` table (state ``pending`` → ``running`` → ``done``), so a
worker killed at any point loses nothing and repeats nothing already stored:

1. ``enqueue_new``: a ``pending`` row for each available, non-quarantined recording without one.
2. ``claim``: a conditional UPDATE (after ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL) that
   must change exactly one row; a ``running`` claim older than the lease is taken over.
3. ``process``: decrypt the audio in memory, transcribe each channel, find card data; when the
   policy says so, blank the card spans and DTMF tones and re-encrypt the audio under a NEW data key
   into a new blob (nothing committed yet).
4. ``_finalise``: ONE transaction stores the sealed transcript, its index terms, the new wrapped
   key and blob pointer, and the audit entries, but only if this worker still holds the claim.
   Only after the commit is the old blob deleted (its key no longer exists by then, so a crash
   before the delete leaves an unreadable orphan that ``callvault check`` reports).

Services take the session/actor explicitly and never commit; ``process`` and ``check_waiting_notes``
run whole jobs and so manage their own units of work (like ``capture.ingest_recording``).
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.recordings import playback
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.retention import shred
from callvault.storage.blobstore import BlobStore
from callvault.storage.crypto import encrypt_stream, new_data_key
from callvault.storage.keys import Keyring
from callvault.transcription import audio as taudio
from callvault.transcription import crm, redaction, sealing, search
from callvault.transcription.document import TranscriptDoc, TSegment, TWord
from callvault.transcription.engines import Engine
from callvault.transcription.models import CrmNote, Transcript, TranscriptStatus

MAX_ATTEMPTS = 3
LEASE = timedelta(minutes=30)
CARD_PAD_SECONDS = 0.25
"""Blanked on each side of a spoken card span: word timings are within a few hundred ms."""
MAX_NOTE_CHARS = 20_000


@dataclass
class Outcome:
    recording_id: str
    words: int = 0
    seconds_audio: float = 0.0
    seconds_processing: float = 0.0
    removed: Counter[str] = field(default_factory=Counter)


# ------------------------------------------------------------------------------------------ the queue
def enqueue_new(session: Session, *, engine: str, clock: Clock = system_clock, limit: int = 500) -> int:
    """Add a ``pending`` transcript row for recordings that have none yet; returns how many."""
    rows = list(session.scalars(
        select(Recording.id).join(DataKey, DataKey.recording_id == Recording.id)
        .outerjoin(Transcript, Transcript.recording_id == Recording.id)
        .where(Transcript.recording_id.is_(None), Recording.state == RecordingState.AVAILABLE,
               Recording.quarantined.is_(False))
        .order_by(Recording.created_at).limit(limit)))
    for rec_id in rows:
        session.add(Transcript(recording_id=rec_id, status=TranscriptStatus.PENDING, engine=engine, attempts=0,
                               created_at=clock.now()))
    return len(rows)


def enqueue_safely(db: Database, *, engine: str, clock: Clock = system_clock) -> int:
    """``enqueue_new`` in its own transaction; another worker enqueuing the same rows is not an error."""
    try:
        with db.unit_of_work() as session:
            return enqueue_new(session, engine=engine, clock=clock)
    except SAIntegrityError:
        return 0


def _claimable(cutoff: Any) -> Any:
    return and_(Transcript.attempts < MAX_ATTEMPTS, or_(
        Transcript.status == TranscriptStatus.PENDING,
        and_(Transcript.status == TranscriptStatus.RUNNING, Transcript.claimed_at < cutoff)))


def claim(db: Database, *, worker_id: str, clock: Clock = system_clock, recording_id: str | None = None,
          lease: timedelta = LEASE) -> str | None:
    """Claim one transcript job (or the given recording's); None when there is nothing to claim."""
    now = clock.now()
    with db.unit_of_work() as session:
        query = select(Transcript.recording_id).where(_claimable(now - lease))
        if recording_id is not None:
            query = query.where(Transcript.recording_id == recording_id)
        rec_id = session.scalar(query.order_by(Transcript.created_at).limit(1).with_for_update(skip_locked=True))
        if rec_id is None:
            return None
        result = session.execute(
            update(Transcript).where(Transcript.recording_id == rec_id, _claimable(now - lease))
            .values(status=TranscriptStatus.RUNNING, claimed_by=worker_id, claimed_at=now,
                    attempts=Transcript.attempts + 1, error=None))
        return rec_id if result.rowcount == 1 else None  # type: ignore[attr-defined]


def release_failed(db: Database, *, recording_id: str, worker_id: str, error: str, clock: Clock,
                   final: bool = False) -> None:
    """Give a failed claim back (or mark it failed after MAX_ATTEMPTS, or at once when ``final``: an
    operator's run, whose error they read now). ``error`` must hold no content."""
    with db.unit_of_work() as session:
        row = session.get(Transcript, recording_id)
        if row is None or row.claimed_by != worker_id or row.status != TranscriptStatus.RUNNING:
            return
        row.status = TranscriptStatus.FAILED if final or row.attempts >= MAX_ATTEMPTS else TranscriptStatus.PENDING
        row.claimed_by, row.claimed_at, row.error = None, None, error[:500]
        if row.status == TranscriptStatus.FAILED:
            audit.append(session, audit.AuditEvent(
                actor="system", action="transcript.failed", object_type="recording", object_id=recording_id,
                reason=f"transcription failed (attempt {row.attempts}; `callvault transcribe` tries again): "
                       f"{error[:200]}" if final else
                       f"transcription gave up after {row.attempts} attempts: {error[:200]}"), clock=clock)


# --------------------------------------------------------------------------------------- processing
def _read_audio(db: Database, store: BlobStore, keyring: Keyring, recording_id: str) -> tuple[Recording, bytes]:
    with db.unit_of_work() as session:
        row = session.get(Recording, recording_id)
        if row is None or row.state != RecordingState.AVAILABLE:
            raise NotFound("no such recording")
        reader = playback.open_reader(session, store=store, keyring=keyring, row=row)
        session.expunge(row)
    raw = b"".join(playback.stream(reader, None, row.sha256))
    return row, raw


def transcribe_audio(decoded: taudio.DecodedAudio, engine: Engine) -> TranscriptDoc:
    """Each channel on its own (so the transcript knows who spoke), merged in time order."""
    segments: list[TSegment] = []
    speakers = []
    for ch in range(decoded.channels):
        speaker = decoded.speaker(ch)
        speakers.append(speaker)
        samples = taudio.resample(np.ascontiguousarray(decoded.data[:, ch]), decoded.rate)
        if not np.any(np.abs(samples) > 1e-4):
            continue  # a silent channel (e.g. one-sided recording): nothing to say
        for seg in engine.transcribe(samples):
            words = [TWord(w.text, w.start, w.end) for w in seg.words] or [TWord(seg.text, seg.start, seg.end)]
            item = TSegment(speaker, seg.start, seg.end, words)
            item.rebuild_text()
            segments.append(item)
    segments.sort(key=lambda s: (s.start, s.speaker))
    return TranscriptDoc(engine=engine.name, speakers=speakers, segments=segments)


def process(
    *, db: Database, store: BlobStore, keyring: Keyring, engine: Engine, recording_id: str, worker_id: str,
    redact_card_data: bool, search_key: bytes, region: str = "CA", env: Mapping[str, str] | None = None,
    clock: Clock = system_clock,
) -> Outcome | None:
    """Transcribe one CLAIMED recording and store the result; None if the claim was lost meanwhile."""
    started = time.monotonic()
    row, raw = _read_audio(db, store, keyring, recording_id)
    decoded = taudio.decode(raw)
    del raw
    doc = transcribe_audio(decoded, engine)
    outcome = Outcome(recording_id, seconds_audio=len(decoded.data) / decoded.rate)
    new_audio: tuple[str, bytes, int, int, str] | None = None  # blob key, data key, size, ciphertext, sha
    if redact_card_data:
        findings = [f for f in redaction.find(doc, region=region) if f.kind in redaction.CARD_KINDS]
        tones = [r for ch in range(decoded.channels)
                 for r in taudio.detect_dtmf(np.ascontiguousarray(decoded.data[:, ch]), decoded.rate)]
        if findings or tones:
            taudio.blank(decoded.data, decoded.rate, [(f.start, f.end) for f in findings], pad=CARD_PAD_SECONDS)
            taudio.blank(decoded.data, decoded.rate, [(t.start, t.end) for t in tones], pad=0.02)
            doc = redaction.apply(doc, findings, kinds=redaction.CARD_KINDS, record_removal=True)
            doc.removed.extend({"kind": "dtmf", "speaker": "keypad", "start": round(t.start, 3),
                                "end": round(t.end, 3)} for t in tones)
            outcome.removed.update(f.kind for f in findings)
            outcome.removed.update({"dtmf": len(tones)} if tones else {})
            new_audio = _write_redacted_audio(store, row, decoded)
    outcome.words = sum(len(s.words) for s in doc.segments)
    replaced: list[shred.Pending] = []
    try:
        done = _finalise(db, store, keyring, row=row, doc=doc, worker_id=worker_id, outcome=outcome,
                         new_audio=new_audio, search_key=search_key, env=env or {}, clock=clock,
                         seconds=time.monotonic() - started, replaced=replaced)
    except BaseException:
        if new_audio is not None:
            store.delete(new_audio[0])
        raise
    if not done:
        if new_audio is not None:
            store.delete(new_audio[0])
        return None
    shred.finish(db, store, keyring, replaced, clock=clock)  # the old key listed, the old blob deleted
    outcome.seconds_processing = time.monotonic() - started
    return outcome


def _write_redacted_audio(store: BlobStore, row: Recording, decoded: taudio.DecodedAudio
                          ) -> tuple[str, bytes, int, int, str]:
    encoded = decoded.encode()
    key = new_data_key()
    blob_key = f"{row.id[:2]}/{row.id[2:4]}/{row.id}.r{new_id()[:8]}.cva"
    with store.writer(blob_key) as sink:
        result = encrypt_stream(io.BytesIO(encoded), len(encoded), sink, data_key=key, context=row.id.encode(),
                                chunk_size=64 * 1024)
    return blob_key, key, result.plaintext_size, result.ciphertext_size, result.sha256_hex


def _finalise(
    db: Database, store: BlobStore, keyring: Keyring, *, row: Recording, doc: TranscriptDoc, worker_id: str,
    outcome: Outcome, new_audio: tuple[str, bytes, int, int, str] | None, search_key: bytes,
    env: Mapping[str, str], clock: Clock, seconds: float, replaced: list[shred.Pending],
) -> bool:
    """Store the transcript (and the audio with card data removed, under a new key) in one transaction;
    ``replaced`` gets the old key's pending destruction, for ``shred.finish`` after the commit."""
    with db.unit_of_work() as session:
        t = session.get(Transcript, row.id, with_for_update=True)
        rec = session.get(Recording, row.id)
        key_row = session.get(DataKey, row.id)
        if t is None or rec is None or key_row is None or t.status != TranscriptStatus.RUNNING \
                or t.claimed_by != worker_id:
            return False
        if new_audio is not None:
            blob_key, data_key, size, ct_size, sha = new_audio
            wrapped = keyring.wrap(data_key, recording_id=row.id)
            # The old wrapped key is listed as replaced (``finish`` after the commit), then overwritten in place:
            # the row keeps its transcript and index, and no restored backup can unwrap the old key again.
            replaced.append(shred.log_replaced(session, row=rec, old_key=key_row, clock=clock))
            key_row.kek_id, key_row.wrapped_key = wrapped.kek_id, wrapped.wrapped
            key_row.ciphertext_size, key_row.created_at = ct_size, clock.now()
            rec.blob_key, rec.size_bytes, rec.sha256 = blob_key, size, sha
            audit.append(session, audit.AuditEvent(
                actor="system", action="recording.card_data_removed", object_type="recording", object_id=row.id,
                reason="spoken card data or keyed tones were removed from the stored audio and transcript; "
                       "the audio was re-encrypted under a new data key and the old one destroyed",
                clauses=("PCI-DSS",), details={"removed": dict(outcome.removed)}), clock=clock)
        else:
            data_key = sealing.data_key_for(session, keyring=keyring, recording_id=row.id)
        t.sealed = sealing.seal(data_key, sealing.context_for(row.id, sealing.TRANSCRIPT), doc.to_json())
        t.status, t.engine, t.completed_at = TranscriptStatus.DONE, doc.engine, clock.now()
        t.claimed_by, t.claimed_at, t.error = None, None, None
        t.word_count, t.seconds_processed = outcome.words, round(seconds, 3)
        t.card_spans_removed = sum(v for k, v in outcome.removed.items() if k != "dtmf")
        t.dtmf_spans_removed = outcome.removed.get("dtmf", 0)
        search.index(session, key=search_key, recording_id=row.id, texts=[s.text for s in doc.segments])
        audit.append(session, audit.AuditEvent(
            actor="system", action="transcript.created", object_type="recording", object_id=row.id,
            details={"engine": doc.engine, "words": outcome.words, "audio_seconds": round(outcome.seconds_audio, 2),
                     "processing_seconds": round(seconds, 2)}), clock=clock)
        _check_notes(session, keyring=keyring, recording_id=row.id, data_key=data_key, doc=doc, env=env,
                     clock=clock)
    return True


# ---------------------------------------------------------------------------------------- reading
def missing_transcript(session: Session, recording_id: str) -> NotFound | None:
    """Why a recording has no transcript to read yet (NotFound, not raised), or None when it has one.

    The serving paths check this before they audit a decision, so a request answered "no transcript"
    is on record as refused, not as allowed."""
    t = session.get(Transcript, recording_id)
    if t is None or t.status != TranscriptStatus.DONE or t.sealed is None:
        state = "not transcribed yet" if t is None else f"transcript {t.status}"
        return NotFound(f"this recording has no transcript ({state})")
    return None


def load_transcript(session: Session, *, keyring: Keyring, recording_id: str) -> tuple[Transcript, TranscriptDoc]:
    """The stored transcript; NotFound while it is not done (or its key was destroyed)."""
    missing = missing_transcript(session, recording_id)
    if missing is not None:
        raise missing
    t = session.get(Transcript, recording_id)
    assert t is not None and t.sealed is not None
    data_key = sealing.data_key_for(session, keyring=keyring, recording_id=recording_id)
    raw = sealing.unseal(data_key, sealing.context_for(recording_id, sealing.TRANSCRIPT), t.sealed)
    return t, TranscriptDoc.from_json(raw)


def redacted(doc: TranscriptDoc, *, region: str = "CA") -> TranscriptDoc:
    """Personal data (phone numbers, e-mails, card and account numbers, names) masked as ``[kind]``."""
    return redaction.apply(doc, redaction.find(doc, region=region))


MASKED_SERVES = frozenset({"anonymised_derivative", "redacted"})
"""What a decision may serve (``Decision.serves``) that allows only a masked copy of what was said."""


def masks(serves: str | None) -> bool:
    """Whether a decision that ``serves`` this may see only masked text: the transcript, the CRM check and
    anything else derived from what was said (A6 training's anonymised copy, a "minimum necessary" purpose's
    redacted one). Anything but the original counts as masked, so a kind added later is masked until it says not."""
    return serves != "original"


# --------------------------------------------------------------------------------------- CRM notes
def add_crm_note(
    session: Session, *, keyring: Keyring, recording: Recording, note: str, actor: str, source: str = "api",
    products: list[str] | None = None, env: Mapping[str, str] | None = None, clock: Clock = system_clock,
    note_id: str | None = None, author: str | None = None, written_at: str | None = None,
) -> CrmNote:
    """Store a sealed CRM note and, if the transcript exists, compare them now.

    ``note_id`` fixes the row id (the webhook derives it from the CRM's note id, for idempotency);
    ``author`` and ``written_at`` (from a CRM connector) are sealed with the note.
    """
    note = note.strip()
    if not note or len(note) > MAX_NOTE_CHARS:
        raise InvalidInput("invalid CRM note:", [FieldProblem("note", f"send 1 to {MAX_NOTE_CHARS} characters")])
    data_key = sealing.data_key_for(session, keyring=keyring, recording_id=recording.id)
    sealed_body: dict[str, Any] = {"note": note, "products": products or []}
    if author is not None:
        sealed_body.update(author=author, written_at=written_at)
    body = json.dumps(sealed_body).encode()
    row = CrmNote(id=note_id or new_id(), recording_id=recording.id, crm_ref=recording.crm_ref, source=source,
                  sealed_note=sealing.seal(data_key, sealing.context_for(recording.id, sealing.CRM_NOTE), body),
                  check_state="waiting", flag_count=0, flags_summary=[], received_by=actor,
                  received_at=clock.now())
    session.add(row)
    session.flush()
    t = session.get(Transcript, recording.id)
    if t is not None and t.status == TranscriptStatus.DONE:
        _, doc = load_transcript(session, keyring=keyring, recording_id=recording.id)
        _check_notes(session, keyring=keyring, recording_id=recording.id, data_key=data_key, doc=doc,
                     env=env or {}, clock=clock)
    audit.append(session, audit.AuditEvent(
        actor=actor, action="crm_note.received", object_type="recording", object_id=recording.id,
        # No check state or flag count: the trail's readers (administrators) have no transcript access.
        details={"note_id": row.id, "source": source}), clock=clock)
    return row


def _check_notes(session: Session, *, keyring: Keyring, recording_id: str, data_key: bytes, doc: TranscriptDoc,
                 env: Mapping[str, str], clock: Clock) -> int:
    notes = list(session.scalars(select(CrmNote).where(CrmNote.recording_id == recording_id,
                                                       CrmNote.check_state == "waiting")))
    for n in notes:
        body = json.loads(sealing.unseal(data_key, sealing.context_for(recording_id, sealing.CRM_NOTE),
                                         n.sealed_note))
        result = crm.compare(body["note"], doc, products=body.get("products") or (), env=env)
        n.sealed_check = sealing.seal(data_key, sealing.context_for(recording_id, sealing.CRM_CHECK),
                                      json.dumps(result.to_dict()).encode())
        n.flag_count = len(result.flags)
        n.flags_summary = sorted({f.kind for f in result.flags})
        n.similarity, n.similarity_method = round(result.similarity, 4), result.method
        n.check_state, n.checked_at = "checked", clock.now()
    return len(notes)


def read_crm_notes(session: Session, *, keyring: Keyring, recording_id: str, masked: bool = False,
                   region: str = "CA", env: Mapping[str, str] | None = None,
                   note_id: str | None = None) -> list[dict[str, Any]]:
    """The notes with their checks, unsealed (the caller has authorised content access); only ``note_id``'s if given.

    ``masked`` (the decision serves only a masked copy, see ``masks``): each note is shown masked and its check
    is made afresh from the masked note and the masked transcript; the stored check is not shown. Why: it was
    made from what was said, so its flags quote the digits, dates and words near them that the copy hides, and
    its flag count answers "was this exact number said?" for a guessed note (an oracle over masked data). A check
    built from the masked texts tells the reader nothing they could not read in the masked transcript."""
    data_key = sealing.data_key_for(session, keyring=keyring, recording_id=recording_id)
    masked_doc: TranscriptDoc | None = None
    if masked and missing_transcript(session, recording_id) is None:
        masked_doc = redacted(load_transcript(session, keyring=keyring, recording_id=recording_id)[1], region=region)
    query = select(CrmNote).where(CrmNote.recording_id == recording_id)
    if note_id is not None:
        query = query.where(CrmNote.id == note_id)
    out = []
    for n in session.scalars(query.order_by(CrmNote.received_at)):
        body = json.loads(sealing.unseal(data_key, sealing.context_for(recording_id, sealing.CRM_NOTE),
                                         n.sealed_note))
        check = json.loads(sealing.unseal(data_key, sealing.context_for(recording_id, sealing.CRM_CHECK),
                                          n.sealed_check)) if n.sealed_check else None
        item = {"id": n.id, "crm_ref": n.crm_ref, "source": n.source, "received_at": n.received_at,
                "received_by": n.received_by, "note": body["note"], "author": body.get("author"),
                "written_at": body.get("written_at"), "check_state": n.check_state,
                "flag_count": n.flag_count, "similarity": n.similarity, "similarity_method": n.similarity_method,
                "flags": check["flags"] if check else [], "redacted": masked}
        if masked:
            item.update(_masked_check(body, masked_doc if n.check_state == "checked" else None, region=region,
                                      env=env))
        out.append(item)
    return out


def _masked_check(body: dict[str, Any], masked_doc: TranscriptDoc | None, *, region: str,
                  env: Mapping[str, str] | None) -> dict[str, Any]:
    """A note's masked text and its check against the masked transcript (none while it is not checked yet)."""
    note = redaction.mask_text(body["note"], region=region)
    if masked_doc is None:
        return {"note": note, "flag_count": 0, "similarity": None, "similarity_method": None, "flags": []}
    products = [redaction.mask_text(p, region=region) for p in body.get("products") or ()]
    result = crm.compare(note, masked_doc, products=products, env=env or {}).to_dict()
    return {"note": note, "flag_count": len(result["flags"]), "similarity": result["similarity"],
            "similarity_method": result["method"], "flags": result["flags"]}
