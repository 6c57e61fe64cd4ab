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

Steps 2b and 3 share one transaction (a second one only when admission edits the audio), step 5 is
the other. ``ingest_many`` runs the same steps for a batch (bulk imports): each recording still has
its own admission decision, data key, fsynced blob and audit entry, and is acknowledged only after
the finalising commit; only the two transactions are shared.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.capture import consent_check, incidents
from callvault.capture.admission import Admission, admit, mark_applied, unapplied_controls
from callvault.capture.audio import AudioInfo, probe_audio
from callvault.capture.audioedit import apply_edit
from callvault.capture.group_commit import GroupCommit
from callvault.capture.metadata import CallMetadata, parse_metadata
from callvault.capture.models import IncidentKind
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import Conflict
from callvault.core.ids import new_id
from callvault.integrations.webhooks_out import emit as webhooks
from callvault.policy import service as policy_service
from callvault.policy.schema import PolicyDocument
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.retention import service as retention
from callvault.storage.blobstore import BlobStore, FlushFailed
from callvault.storage.crypto import EncryptResult, encrypt_file, encrypt_stream, new_data_key
from callvault.storage.keys import Keyring

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
BLOB_WRITERS = 8
"""Blobs ``ingest_many`` writes at once: on a virtual disk each file create, mkdir and fsync waits
about 1-2 ms, so a fresh store took ~10 ms per blob one at a time; eight at once overlap those waits."""


@dataclass(frozen=True)
class IngestResult:
    """The recording's id and whether this call created it (False: an identical earlier ingest)."""

    recording_id: str
    created: bool


_SINGLE_INGESTS: GroupCommit[IngestItem, IngestResult] = GroupCommit()
"""Where concurrent ``ingest_recording`` calls meet to share a batch (see ``capture.group_commit``)."""


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
    session: Session, *, policy: PolicyDocument, meta: CallMetadata, info: AudioInfo, actor: str, store: BlobStore,
    clock: Clock, stale_after: timedelta, audio_sha256: Callable[[], str] | None = None,
    existing_rows: dict[str, Recording] | None = None,
) -> Recording | IngestResult:
    """Step 3: add the ``pending`` row (the caller commits it before writing the blob).

    Idempotent on ``call_id``: an available recording whose audio hashes the same (``audio_sha256``,
    computed only when needed) is returned as ``IngestResult(created=False)``; different or unknown
    audio is a Conflict, as is a pending row younger than ``stale_after``. An older pending row is
    the remains of a crash and is replaced (blob first). Used by upload ingest and live capture.
    ``existing_rows``: ``recordings_by_call_id`` for a batch including this call, looked up once by the
    caller (``ingest_many``); None looks this call up here.
    """
    existing = (existing_rows.get(meta.call_id) if existing_rows is not None
                else session.scalar(select(Recording).where(Recording.call_id == meta.call_id)))
    if existing is not None:
        if existing.state == RecordingState.DESTROYED:
            raise Conflict(f"call_id {meta.call_id!r} was stored and then destroyed "
                           f"({existing.retention_rule or 'retention'}); it cannot be stored again")
        if existing.state == RecordingState.AVAILABLE:
            if audio_sha256 is not None and existing.sha256 == audio_sha256():
                return IngestResult(existing.id, created=False)
            raise Conflict(f"call_id {meta.call_id!r} is already stored with different audio")
        # A ``failed`` row (no audio: capture got no media, or died) gives way to audio that does arrive
        # (a PBX's own copy, a resent upload); its audit entry keeps the failure on the record.
        if existing.state == RecordingState.PENDING and existing.created_at > clock.now() - stale_after:
            raise Conflict(f"call_id {meta.call_id!r} is being ingested right now; retry later")
        store.delete(existing.blob_key)
        session.delete(existing)
        session.flush()
    rec_id = new_id()
    quarantine = consent_check.quarantine_reason(policy, meta)
    row = Recording(
        id=rec_id, call_id=meta.call_id, state=RecordingState.PENDING, direction=meta.direction,
        started_at=meta.started_at, ended_at=meta.ended_at, extension=meta.extension, agent=meta.agent,
        team=meta.team, remote_number=meta.remote_number, local_number=meta.local_number,
        consent=meta.consent.model_dump(mode="json", exclude_none=True) if meta.consent else {},
        consent_state=meta.consent_state, consent_source=meta.consent_source, quarantined=quarantine is not None,
        quarantine_reason=quarantine, consent_flag=consent_check.flag_reason(policy, meta),
        case_ref=meta.case_ref, crm_ref=meta.crm_ref, audio_format=info.audio_format,
        sample_rate=info.sample_rate, channels=info.channels, duration_seconds=info.duration_seconds,
        size_bytes=0, sha256=None, blob_key=blob_key_for(rec_id), ingested_by=actor, created_at=clock.now(),
    )
    session.add(row)
    return row


def recordings_by_call_id(session: Session, call_ids: Iterable[str]) -> dict[str, Recording]:
    """The stored rows (in any state) of these call ids: one query per 500 for a whole batch."""
    ids = list(set(call_ids))
    found: dict[str, Recording] = {}
    for start in range(0, len(ids), 500):
        found.update((row.call_id, row) for row in session.scalars(
            select(Recording).where(Recording.call_id.in_(ids[start:start + 500]))))
    return found


def finalise_recording(
    session: Session, *, rec_id: str, result: EncryptResult, data_key: bytes, keyring: Keyring, chunk_size: int,
    actor: str, actor_role: str = "", source_ip: str | None = None, call_id: str, consent_state: str,
    clock: Clock, action: str = "recording.ingested", details: dict[str, Any] | None = None,
) -> None:
    """Step 5: mark the row available, store the wrapped key and audit, in the caller's transaction."""
    row = session.get(Recording, rec_id)
    assert row is not None
    _store_rows(session, [_Stored(row, result, data_key, call_id, consent_state, details)],
                policy=policy_service.current_policy(session, clock=clock), keyring=keyring, chunk_size=chunk_size,
                actor=actor, actor_role=actor_role, source_ip=source_ip, action=action, clock=clock)


@dataclass(frozen=True)
class _Stored:
    """A pending row (in the session) whose blob is durable, ready to become available."""

    row: Recording
    result: EncryptResult
    data_key: bytes
    call_id: str
    consent_state: str
    details: dict[str, Any] | None


def _store_rows(
    session: Session, stored: Sequence[_Stored], *, policy: PolicyDocument, keyring: Keyring, chunk_size: int,
    actor: str, actor_role: str, source_ip: str | None, action: str, clock: Clock,
) -> None:
    """Step 5 for one or many recordings: rows available, wrapped keys, one audit entry each, webhooks.

    Set-wise (one retention refresh, one audit append, one webhook look-up per event type) so a batch
    costs little more than one recording; the entries are what one-at-a-time finalising would write."""
    for item in stored:
        item.row.state = RecordingState.AVAILABLE
        item.row.sha256 = item.result.sha256_hex
        item.row.size_bytes = item.result.plaintext_size
    retention.refresh(session, policy=policy, rows=[item.row for item in stored], just_stored=True)
    now = clock.now()
    for item in stored:
        wrapped = keyring.wrap(item.data_key, recording_id=item.row.id)
        session.add(DataKey(
            recording_id=item.row.id, kek_id=wrapped.kek_id, wrapped_key=wrapped.wrapped, chunk_size=chunk_size,
            ciphertext_size=item.result.ciphertext_size, created_at=now,
        ))
    audit.append_many(session, [audit.AuditEvent(
        actor=actor, actor_role=actor_role, action=action, decision="info",
        object_type="recording", object_id=item.row.id, source_ip=source_ip,
        details={"call_id": item.call_id, "sha256": item.result.sha256_hex, "bytes": item.result.plaintext_size,
                 "consent_state": item.consent_state,
                 **({"quarantine_reason": item.row.quarantine_reason} if item.row.quarantined else {}),
                 **(item.details or {})},
        clauses=("A5", "B2") if item.row.quarantined else (),
    ) for item in stored], clock=clock)
    _emit_saved(session, [(item.row, item.details or {}) for item in stored], clock)
    for item in stored:
        if item.row.missing_seconds > 0:  # stretches without media: incomplete; in mandatory scope, an incident
            _raise_for(session, policy, item.row, IncidentKind.GAP,
                       f"{item.row.missing_seconds:g} s of the call have no media", actor, clock)


def _raise_for(session: Session, policy: PolicyDocument, row: Recording, kind: IncidentKind, detail: str, actor: str,
               clock: Clock) -> None:
    """An admitted (so in-scope) call capture could not wholly keep: an incident under a mandatory policy."""
    incidents.raise_incident(
        session, policy=policy, kind=kind,
        facts=incidents.CallFacts(call_id=row.call_id, started_at=row.started_at, direction=row.direction,
                                  extension=row.extension, team=row.team, agent=row.agent,
                                  duration_seconds=(row.ended_at - row.started_at).total_seconds(),
                                  remote_number=row.remote_number, local_number=row.local_number),
        detail=detail, source="capture", actor=actor, recording_id=row.id, clock=clock)


def _emit_saved(session: Session, stored: Sequence[tuple[Recording, dict[str, Any]]], clock: Clock) -> None:
    """Outgoing webhooks for stored recordings: saved, and quarantined / gap where that applies."""
    saved, quarantined, gaps = [], [], []
    for row, details in stored:
        data = {"recording_id": row.id, "call_id": row.call_id, "started_at": row.started_at.isoformat(),
                "duration_seconds": row.duration_seconds, "extension": row.extension, "agent": row.agent,
                "crm_ref": row.crm_ref, "case_ref": row.case_ref, "quarantined": row.quarantined,
                "destroy_after": row.destroy_after.isoformat() if row.destroy_after else None}
        saved.append(data)
        if row.quarantined:
            quarantined.append({**data, "reason": f"{row.quarantine_reason or consent_check.MISSING} (A5, B2)"})
        streams = details.get("streams")
        lost = sum(int(s.get("lost", 0)) for s in streams.values()) if isinstance(streams, dict) else 0
        if lost or row.missing_seconds > 0:
            gaps.append({**data, "lost_packets": lost, "missing_seconds": row.missing_seconds,
                         "media_gaps": row.media_gaps or []})
    webhooks.emit_many(session, "recording.saved", saved, clock=clock)
    webhooks.emit_many(session, "recording.quarantined", quarantined, clock=clock)
    webhooks.emit_many(session, "recording.gap", gaps, clock=clock)


@dataclass(frozen=True)
class IngestItem:
    """One recording for ``ingest_many``: its audio and metadata, as ``ingest_recording`` takes them."""

    audio: Path | BinaryIO
    metadata: bytes | str | dict[str, Any] | CallMetadata


class _ReserveCollision(Exception):
    """The shared admit-and-reserve transaction hit a unique constraint (see ``ingest_many``)."""


@contextmanager
def _collision_guard() -> Iterator[None]:
    try:
        yield
    except SQLIntegrityError as exc:
        raise _ReserveCollision() from exc


@dataclass
class _Work:
    """One recording on its way through ``ingest_many``; ``outcome`` is set once it is decided."""

    meta: CallMetadata
    info: AudioInfo
    audio: Path | BinaryIO
    admission: Admission = field(default_factory=Admission)
    row: Recording | None = None
    data_key: bytes = b""
    result: EncryptResult | None = None
    outcome: IngestResult | Exception | None = None


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
    """Run the pipeline for one recording (see the module contract); raises what stopped it.

    Concurrent calls with the same database, store, actor and source share their transactions
    (``capture.group_commit``); each recording's contract is the same as alone.
    """
    def run_batch(items: Sequence[IngestItem]) -> list[IngestResult | Exception]:
        return ingest_many(db=db, store=store, keyring=keyring, items=items, actor=actor, actor_role=actor_role,
                           default_region=default_region, source_ip=source_ip, stale_after=stale_after, clock=clock)

    key = (id(db), id(store), id(keyring), actor, actor_role, default_region, source_ip, stale_after, id(clock))
    return _SINGLE_INGESTS.run(key, IngestItem(audio, metadata), run_batch)


def ingest_many(
    *,
    db: Database,
    store: BlobStore,
    keyring: Keyring,
    items: Sequence[IngestItem],
    actor: str,
    actor_role: str = "",
    default_region: str = "CA",
    source_ip: str | None = None,
    stale_after: timedelta = timedelta(hours=1),
    clock: Clock = system_clock,
) -> list[IngestResult | Exception]:
    """Run the pipeline for several recordings at once (bulk imports); one outcome per item, in order.

    Each recording is handled exactly as ``ingest_recording`` handles it (its own admission decision,
    reservation, data key, blob, audit entry and webhooks), and an item that fails gets its exception
    as its outcome without stopping the others. What is shared is the transactions: one for admitting
    and reserving every item, one for finalising every blob written, so a batch costs a few commits
    instead of a few per recording. Every returned ``IngestResult`` was acknowledged only after its blob
    was fsynced and the final commit was done; a crash before that leaves pending rows, which
    ``reap_stale_ingests`` removes, exactly as for one recording. Raises (after undoing whatever
    it reserved) only when the database or the process fails.
    """
    outcomes: list[IngestResult | Exception | None] = [None] * len(items)
    works: list[tuple[int, _Work]] = []
    for i, item in enumerate(items):
        try:
            meta = (item.metadata if isinstance(item.metadata, CallMetadata)
                    else parse_metadata(item.metadata, default_region=default_region))
            works.append((i, _Work(meta=meta, info=probe_audio(item.audio), audio=item.audio)))
        except Exception as exc:
            outcomes[i] = exc
    if works:
        try:
            _ingest_works(db=db, store=store, keyring=keyring, works=[w for _, w in works], actor=actor,
                          actor_role=actor_role, source_ip=source_ip, stale_after=stale_after, clock=clock)
        except _ReserveCollision as exc:
            if len(works) == 1:
                assert exc.__cause__ is not None
                raise exc.__cause__ from None  # the database's own error, as it always was
            # Another writer reserved one of these call ids meanwhile (unique call_id), so the shared
            # transaction failed for all and nothing of it was kept. Each item alone gets its own answer.
            for i, _work in works:
                outcomes[i] = ingest_many(
                    db=db, store=store, keyring=keyring, items=[items[i]], actor=actor, actor_role=actor_role,
                    default_region=default_region, source_ip=source_ip, stale_after=stale_after, clock=clock)[0]
            works = []
        for i, work in works:
            outcomes[i] = work.outcome
    return [outcome if outcome is not None else RuntimeError("ingest left an item undecided")
            for outcome in outcomes]


def _ingest_works(
    *, db: Database, store: BlobStore, keyring: Keyring, works: list[_Work], actor: str, actor_role: str,
    source_ip: str | None, stale_after: timedelta, clock: Clock,
) -> None:
    """Steps 2b-5 for parsed and probed recordings; sets each one's ``outcome``."""

    seen: set[str] = set()

    def reserve(session: Session, work: _Work, existing_rows: dict[str, Recording] | None) -> None:
        audio = work.audio
        try:
            if work.meta.call_id in seen:  # what the second of two uploads racing each other hears
                raise Conflict(f"call_id {work.meta.call_id!r} is being ingested right now (it came "
                               "twice in one batch of uploads); retry later")
            reserved = reserve_recording(session, policy=policy, meta=work.meta, info=work.info, actor=actor,
                                         store=store,
                                         clock=clock, stale_after=stale_after,
                                         audio_sha256=lambda: _sha256_of(audio), existing_rows=existing_rows)
        except Conflict as exc:  # raised before the session was changed: the others go on
            work.outcome = exc
            return
        seen.add(work.meta.call_id)
        if isinstance(reserved, IngestResult):
            work.outcome = reserved
        else:
            work.row = reserved

    to_edit: list[_Work] = []
    with _collision_guard(), db.unit_of_work() as session, session.no_autoflush:
        # One look-up of the policy in force serves the batch, for admission and for the retention dates
        # set at finalising; a row computed under a version replaced meanwhile is caught up by the
        # retention sweep (``retention_basis``). Control events and existing rows are looked up for the
        # whole batch at once, and the new rows are inserted together at commit (no autoflush).
        policy = policy_service.current_policy(session, clock=clock)
        call_ids = [work.meta.call_id for work in works]
        controls = unapplied_controls(session, call_ids)
        existing_rows = recordings_by_call_id(session, call_ids)
        for work in works:
            work.admission = admit(session, policy=policy, meta=work.meta, info=work.info, actor=actor,
                                   actor_role=actor_role, source_ip=source_ip, clock=clock, controls=controls)
            if work.admission.refusal is not None:
                work.outcome = work.admission.refusal  # its audit entry is committed with this transaction
                continue
            work.meta = work.admission.applied_to(work.meta)
            if work.admission.edit.is_noop:
                reserve(session, work, existing_rows)
            else:
                to_edit.append(work)
    if to_edit:
        # Cutting and silencing audio takes a while: not inside a transaction (the admission decisions
        # above are committed; the edited audio is reserved in a second one).
        for work in to_edit:
            try:
                work.audio = io.BytesIO(apply_edit(work.audio, work.admission.edit).data)
                work.info = probe_audio(work.audio)
            except Exception as exc:
                work.outcome = exc
        if any(work.outcome is None for work in to_edit):
            with db.unit_of_work() as session:
                for work in to_edit:
                    if work.outcome is None:
                        reserve(session, work, None)
    reserved = [work for work in works if work.row is not None]

    def write(work: _Work) -> None:
        assert work.row is not None
        try:
            work.data_key = new_data_key()
            with store.writer(work.row.blob_key) as sink:
                work.result = encrypt_audio(work.audio, sink, data_key=work.data_key,
                                            context=work.row.id.encode(), chunk_size=CHUNK_SIZE)
        except Exception as exc:
            work.outcome = exc
            _discard(db, store, work.row.id, work.row.blob_key, failure=f"{type(exc).__name__}: {exc}"[:300],
                     clock=clock)
            work.row = None
            if isinstance(exc, FlushFailed):
                raise_storage_alarm(db, exc, call_id=work.meta.call_id, actor=actor, clock=clock)

    try:
        if len(reserved) > 1:
            # Several blobs at once: creating, fsyncing and renaming files waits on the disk, and
            # hashing and writing release the GIL, so a few writers overlap what one would wait for.
            # Leaving the block waits for every writer, also on an interrupt, before anything is undone.
            with ThreadPoolExecutor(max_workers=min(BLOB_WRITERS, len(reserved)),
                                    thread_name_prefix="ingest-blob") as pool:
                list(pool.map(write, reserved))
        else:
            for work in reserved:
                write(work)
        written = [work for work in reserved if work.row is not None and work.result is not None]
        if written:
            with db.unit_of_work() as session:
                gone = _finalise_works(session, written, policy=policy, keyring=keyring, actor=actor,
                                       actor_role=actor_role, source_ip=source_ip, clock=clock)
            for work in written:  # committed: acknowledged from here on, never undone
                assert work.row is not None
                if work.row.id not in gone:
                    work.outcome, work.row = IngestResult(work.row.id, created=True), None
            for work in written:
                if work.row is not None:  # its pending row was gone (see ``_finalise_works``)
                    work.outcome = Conflict(f"call_id {work.meta.call_id!r}: the ingest took longer than the "
                                            "stale limit and was cleaned up meanwhile; retry")
                    store.delete(work.row.blob_key)
                    work.row = None
    except BaseException as exc:
        for work in reserved:
            if work.row is not None:
                _discard(db, store, work.row.id, work.row.blob_key, failure=f"{type(exc).__name__}: {exc}"[:300],
                         clock=clock)
                work.row = None
        raise


def _finalise_works(
    session: Session, works: list[_Work], *, policy: PolicyDocument, keyring: Keyring, actor: str,
    actor_role: str, source_ip: str | None, clock: Clock,
) -> set[str]:
    """Step 5 for the written blobs of ``ingest_many``, in the caller's transaction.

    Returns the ids whose pending row was gone: reaped as stale (or replaced by a later ingest of the
    call) while the blob was being written, so the blob is no longer the recording's."""
    ids = [work.row.id for work in works if work.row is not None]
    rows = {row.id: row for row in session.scalars(
        select(Recording).where(Recording.id.in_(ids), Recording.state == RecordingState.PENDING))}
    stored: list[_Stored] = []
    for work in works:
        assert work.row is not None and work.result is not None
        row = rows.get(work.row.id)
        if row is None:
            continue
        stored.append(_Stored(row, work.result, work.data_key, work.meta.call_id, work.meta.consent_state,
                              {"edits": work.admission.notes} if work.admission.notes else None))
    _store_rows(session, stored, policy=policy, keyring=keyring, chunk_size=CHUNK_SIZE, actor=actor,
                actor_role=actor_role, source_ip=source_ip, action="recording.ingested", clock=clock)
    for work in works:
        assert work.row is not None
        if work.row.id in rows:
            mark_applied(session, admission=work.admission, recording_id=work.row.id, clock=clock)
    return {work.row.id for work in works if work.row is not None and work.row.id not in rows}


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


def fail_recording(db: Database, store: BlobStore, rec_id: str, blob_key: str, *, reason: str, actor: str,
                   ended_at: datetime | None = None, details: dict[str, Any] | None = None,
                   clock: Clock = system_clock) -> bool:
    """A pending row whose audio cannot be produced becomes ``failed`` (kept, content-free) with ``reason``.

    Unlike a discard the row stays, so the call's absence from the record is visible: the recordings
    list, the compliance report, ``/metrics`` and the ``recording.failed`` webhook all show it. The
    (unreadable or empty) blob is deleted first. Returns False when the row was no longer pending.
    """
    with contextlib.suppress(Exception):  # the reaper and check --repair catch a blob left behind
        store.delete(blob_key)
    with db.unit_of_work() as session:
        row = session.get(Recording, rec_id)
        if row is None or row.state != RecordingState.PENDING:
            return False
        row.state = RecordingState.FAILED
        row.failure_reason = reason[:300]
        row.duration_seconds, row.size_bytes, row.sha256 = 0.0, 0, None
        if ended_at is not None:
            row.ended_at = max(ended_at, row.started_at)
        webhooks.emit(session, "recording.failed", _failed_payload(row, row.failure_reason), clock=clock)
        audit.append(session, audit.AuditEvent(
            actor=actor, action="recording.failed", decision="alarm", object_type="recording", object_id=row.id,
            reason=row.failure_reason, details={"call_id": row.call_id, **(details or {})}), clock=clock)
        # Admitted, so in scope: under a mandatory policy the failure is an incident at once (no CDR needed).
        _raise_for(session, policy_service.current_policy(session, clock=clock), row, IncidentKind.FAILED,
                   f"capture failed: {row.failure_reason}", actor, clock)
    return True


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
