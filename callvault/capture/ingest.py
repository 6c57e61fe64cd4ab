"""The ingest pipeline: metadata + audio file in, an encrypted, catalogued recording out.

Contract: when ``ingest_recording`` returns, the recording is complete (row ``available`` and the
encrypted blob durable and verified by its SHA-256) and an audit entry says who ingested it. If it
raises, nothing usable was stored. If the process dies half-way, what is left is a ``pending`` row
(and perhaps its blob), which ``reap_stale_ingests`` removes: blob first, then row. The row is
committed *before* the blob is written, so a blob never exists without a row that points at it.

Steps, in order (each small and typed):
  1. parse metadata          → CallMetadata   (InvalidInput naming fields)
  2. probe audio             → AudioInfo      (InvalidInput: not audio, truncated, unsupported)
  2b. admit                  → Admission      (``capture.admission``: recording scope, announcement,
                                                control events; NotRecordable, audited, nothing stored;
                                                else the audio edit: head/tail cut, pauses silenced)
  3. reserve                 → pending row    (idempotent on call_id; Conflict if it differs)
                                                (``reserve_recording``, shared with SIPREC capture)
  4. encrypt to blob store   → EncryptResult  (fresh data key; temp + fsync + rename)
  5. finalise                → available row + wrapped key + audit entry, one transaction
                                                (``finalise_recording``, shared with SIPREC capture)
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.capture.admission import admit, mark_applied
from callvault.capture.audio import AudioInfo, probe_audio
from callvault.capture.audioedit import apply_edit
from callvault.capture.metadata import CallMetadata, parse_metadata
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import Conflict
from callvault.core.ids import new_id
from callvault.integrations.webhooks_out import emit as webhooks
from callvault.policy import service as policy_service
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.retention import service as retention
from callvault.storage.blobstore import BlobStore, FlushFailed
from callvault.storage.crypto import EncryptResult, encrypt_file, encrypt_stream, new_data_key
from callvault.storage.keys import Keyring

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True)
class IngestResult:
    """The recording's id and whether this call created it (False: an identical earlier ingest)."""

    recording_id: str
    created: bool


def blob_key_for(recording_id: str) -> str:
    return f"{recording_id[:2]}/{recording_id[2:4]}/{recording_id}.cva"


def _sha256_of(audio: Path | BinaryIO) -> str:
    digest = hashlib.sha256()
    if isinstance(audio, Path):
        with audio.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    else:
        audio.seek(0)
        while block := audio.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def encrypt_audio(audio: Path | BinaryIO, sink: BinaryIO, *, data_key: bytes, context: bytes,
                  chunk_size: int) -> EncryptResult:
    """Encrypt from a file on disk or from an in-memory upload."""
    if isinstance(audio, Path):
        return encrypt_file(audio, sink, data_key=data_key, context=context, chunk_size=chunk_size)
    audio.seek(0, 2)
    size = audio.tell()
    audio.seek(0)
    return encrypt_stream(audio, size, sink, data_key=data_key, context=context, chunk_size=chunk_size)


def reserve_recording(
    session: Session, *, meta: CallMetadata, info: AudioInfo, actor: str, store: BlobStore, clock: Clock,
    stale_after: timedelta, audio_sha256: Callable[[], str] | None = None,
) -> Recording | IngestResult:
    """Step 3: add the ``pending`` row (the caller commits it before writing the blob).

    Idempotent on ``call_id``: an available recording whose audio hashes the same (``audio_sha256``,
    computed only when needed) is returned as ``IngestResult(created=False)``; different or unknown
    audio is a Conflict, as is a pending row younger than ``stale_after``. An older pending row is
    the remains of a crash and is replaced (blob first). Used by upload ingest and live capture.
    """
    existing = session.scalar(select(Recording).where(Recording.call_id == meta.call_id))
    if existing is not None:
        if existing.state == RecordingState.DESTROYED:
            raise Conflict(f"call_id {meta.call_id!r} was stored and then destroyed "
                           f"({existing.retention_rule or 'retention'}); it cannot be stored again")
        if existing.state == RecordingState.AVAILABLE:
            if audio_sha256 is not None and existing.sha256 == audio_sha256():
                return IngestResult(existing.id, created=False)
            raise Conflict(f"call_id {meta.call_id!r} is already stored with different audio")
        if existing.created_at > clock.now() - stale_after:
            raise Conflict(f"call_id {meta.call_id!r} is being ingested right now; retry later")
        store.delete(existing.blob_key)
        session.delete(existing)
        session.flush()
    rec_id = new_id()
    row = Recording(
        id=rec_id, call_id=meta.call_id, state=RecordingState.PENDING, direction=meta.direction,
        started_at=meta.started_at, ended_at=meta.ended_at, extension=meta.extension, agent=meta.agent,
        team=meta.team, remote_number=meta.remote_number, local_number=meta.local_number,
        consent=meta.consent.model_dump(mode="json", exclude_none=True) if meta.consent else {},
        consent_state=meta.consent_state, quarantined=meta.consent_state == "missing",
        case_ref=meta.case_ref, crm_ref=meta.crm_ref, audio_format=info.audio_format,
        sample_rate=info.sample_rate, channels=info.channels, duration_seconds=info.duration_seconds,
        size_bytes=0, sha256=None, blob_key=blob_key_for(rec_id), ingested_by=actor, created_at=clock.now(),
    )
    session.add(row)
    return row


def finalise_recording(
    session: Session, *, rec_id: str, result: EncryptResult, data_key: bytes, keyring: Keyring, chunk_size: int,
    actor: str, actor_role: str = "", source_ip: str | None = None, call_id: str, consent_state: str,
    clock: Clock, action: str = "recording.ingested", details: dict[str, Any] | None = None,
) -> None:
    """Step 5: mark the row available, store the wrapped key and audit, in the caller's transaction."""
    wrapped = keyring.wrap(data_key, recording_id=rec_id)
    row = session.get(Recording, rec_id)
    assert row is not None
    row.state = RecordingState.AVAILABLE
    row.sha256 = result.sha256_hex
    row.size_bytes = result.plaintext_size
    retention.refresh(session, policy=policy_service.current_policy(session, clock=clock), rows=[row])
    session.add(DataKey(
        recording_id=rec_id, kek_id=wrapped.kek_id, wrapped_key=wrapped.wrapped, chunk_size=chunk_size,
        ciphertext_size=result.ciphertext_size, created_at=clock.now(),
    ))
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action=action, decision="info",
        object_type="recording", object_id=rec_id, source_ip=source_ip,
        details={"call_id": call_id, "sha256": result.sha256_hex, "bytes": result.plaintext_size,
                 "consent_state": consent_state, **(details or {})},
        clauses=("A5", "B2") if consent_state == "missing" else (),
    ), clock=clock)
    _emit_saved(session, row, details or {}, clock)


def _emit_saved(session: Session, row: Recording, details: dict[str, Any], clock: Clock) -> None:
    """Outgoing webhooks for a stored recording: saved, and quarantined / gap where that applies."""
    data = {"recording_id": row.id, "call_id": row.call_id, "started_at": row.started_at.isoformat(),
            "duration_seconds": row.duration_seconds, "extension": row.extension, "agent": row.agent,
            "crm_ref": row.crm_ref, "case_ref": row.case_ref, "quarantined": row.quarantined,
            "destroy_after": row.destroy_after.isoformat() if row.destroy_after else None}
    webhooks.emit(session, "recording.saved", data, clock=clock)
    if row.quarantined:
        webhooks.emit(session, "recording.quarantined", {**data, "reason": "no consent evidence (A5, B2)"},
                      clock=clock)
    streams = details.get("streams")
    lost = sum(int(s.get("lost", 0)) for s in streams.values()) if isinstance(streams, dict) else 0
    if lost:
        webhooks.emit(session, "recording.gap", {**data, "lost_packets": lost}, clock=clock)


def ingest_recording(
    *,
    db: Database,
    store: BlobStore,
    keyring: Keyring,
    audio: Path | BinaryIO,
    metadata: bytes | str | dict[str, Any] | CallMetadata,
    actor: str,
    actor_role: str = "",
    default_region: str = "CA",
    source_ip: str | None = None,
    stale_after: timedelta = timedelta(hours=1),
    clock: Clock = system_clock,
) -> IngestResult:
    """Run the pipeline. Manages its own transactions (see the module contract)."""
    meta = metadata if isinstance(metadata, CallMetadata) else parse_metadata(metadata, default_region=default_region)
    info = probe_audio(audio)
    with db.unit_of_work() as session:
        admission = admit(session, policy=policy_service.current_policy(session, clock=clock), meta=meta, info=info,
                          actor=actor, actor_role=actor_role, source_ip=source_ip, clock=clock)
    if admission.refusal is not None:
        raise admission.refusal  # its audit entry is committed above
    meta = admission.applied_to(meta)
    if not admission.edit.is_noop:
        audio = io.BytesIO(apply_edit(audio, admission.edit).data)
        info = probe_audio(audio)
    with db.unit_of_work() as session:
        reserved = reserve_recording(session, meta=meta, info=info, actor=actor, store=store, clock=clock,
                                     stale_after=stale_after, audio_sha256=lambda: _sha256_of(audio))
    if isinstance(reserved, IngestResult):
        return reserved
    rec_id, blob_key = reserved.id, reserved.blob_key
    try:
        data_key = new_data_key()
        with store.writer(blob_key) as sink:
            result = encrypt_audio(audio, sink, data_key=data_key, context=rec_id.encode(), chunk_size=CHUNK_SIZE)
        with db.unit_of_work() as session:
            finalise_recording(session, rec_id=rec_id, result=result, data_key=data_key, keyring=keyring,
                               chunk_size=CHUNK_SIZE, actor=actor, actor_role=actor_role, source_ip=source_ip,
                               call_id=meta.call_id, consent_state=meta.consent_state, clock=clock,
                               details={"edits": admission.notes} if admission.notes else None)
            mark_applied(session, admission=admission, recording_id=rec_id, clock=clock)
    except BaseException as exc:
        _discard(db, store, rec_id, blob_key, failure=f"{type(exc).__name__}: {exc}"[:300], clock=clock)
        if isinstance(exc, FlushFailed):
            raise_storage_alarm(db, exc, call_id=meta.call_id, actor=actor, clock=clock)
        raise
    return IngestResult(rec_id, created=True)


def raise_storage_alarm(db: Database, exc: OSError, *, call_id: str, actor: str, clock: Clock) -> None:
    """Put a failed flush on the record (audit, log): compliance must be able to show the gap."""
    log.critical("recording of call %s refused: %s", call_id, exc)
    try:
        with db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=actor, action="storage.flush_failed", decision="alarm", object_type="call",
                object_id=call_id, reason=str(exc), details={"errno": exc.errno}), clock=clock)
    except Exception:  # the database may be down too; the log line above stands
        log.exception("could not audit the storage alarm for call %s", call_id)


def discard_recording(db: Database, store: BlobStore, rec_id: str, blob_key: str, *, failure: str | None = None,
                      clock: Clock = system_clock) -> None:
    """Public name of the failure path (live capture uses it when a call is dropped).

    ``failure`` says why when it is one (``recording.failed`` webhook); None for a deliberate discard
    (a personal call, out of scope)."""
    _discard(db, store, rec_id, blob_key, failure=failure, clock=clock)


def _failed_payload(row: Recording, reason: str) -> dict[str, Any]:
    """The ``recording.failed`` webhook body (no content, no caller number)."""
    return {"recording_id": row.id, "call_id": row.call_id, "started_at": row.started_at.isoformat(),
            "extension": row.extension, "agent": row.agent, "reason": reason}


def _discard(db: Database, store: BlobStore, rec_id: str, blob_key: str, *, failure: str | None = None,
             clock: Clock = system_clock) -> None:
    """Undo a failed ingest: blob first, then the pending row. Best effort; the reaper retries."""
    try:
        store.delete(blob_key)
        with db.unit_of_work() as session:
            row = session.get(Recording, rec_id)
            if row is not None and row.state == RecordingState.PENDING:
                if failure is not None:
                    webhooks.emit(session, "recording.failed", _failed_payload(row, failure), clock=clock)
                session.delete(row)
    except Exception:  # noqa: S110 - the reaper finishes what this could not
        pass


def reap_stale_ingests(
    *, db: Database, store: BlobStore, older_than: timedelta, clock: Clock = system_clock
) -> list[str]:
    """Remove what crashed ingests left behind (pending rows older than ``older_than`` and their blobs)."""
    cutoff = clock.now() - older_than
    with db.unit_of_work() as session:
        stale = list(session.scalars(select(Recording).where(
            Recording.state == RecordingState.PENDING, Recording.created_at < cutoff)))
        removed = []
        for row in stale:
            store.delete(row.blob_key)
            removed.append(row.id)
            webhooks.emit(session, "recording.failed", _failed_payload(
                row, "ingest did not complete (process stopped mid-way); partial data removed"), clock=clock)
            session.delete(row)
        if removed:
            audit.append(session, audit.AuditEvent(
                actor="system", action="recording.ingest_reaped", details={"recording_ids": removed},
                reason="ingest did not complete (process stopped mid-way); partial data removed",
            ), clock=clock)
    return removed
