"""Destroying recordings for good: crypto-shredding first, then the blob, then the catalog row.

Order, and why it is safe to stop at any point (``kill -9`` included) and run again:

  1. ``destroy_now`` (the caller's transaction): the wrapped keys' fingerprints are appended to the
     key-destruction list (fsynced) *before* anything else, so from that instant no copy of the key
     row, not even one restored from a backup, unwraps again. Then the ``data_keys`` rows are
     deleted, a ``DestructionRecord`` (with the key's KEK id and fingerprint) is written and one
     audit entry is appended; the caller commits.
  2. ``finish`` (its own transactions): the fingerprints are listed again (a no-op normally), the
     blobs are deleted and the recordings are marked ``destroyed``.

A stop between 1 and 2 leaves recordings with a destruction record but not marked ``destroyed``;
``resume`` (run at the start of every sweep) finishes them. A stop inside 1 rolls the transaction
back: the recording is intact in the catalog, but its key is already listed, so it can no longer be
played; it is still due, and the next sweep destroys it. Every recording is therefore either
intact-and-playable, or fully destroyed with its record, or (only between a crash and the next run)
unplayable and about to be finished.

Truncation (a ``stop`` applied after the fact) logs the replaced key in ``key_destructions``
(committed with the switch to the new key and blob); step 2 lists it, deletes the old blob and
completes the log entry, and ``resume`` finishes any entry a crash left incomplete.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import Conflict
from callvault.integrations.webhooks_out import emit as webhooks
from callvault.quality.models import QaComment, QaReview, QaReviewItem
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.retention.models import DestructionRecord, KeyDestruction
from callvault.storage.blobstore import BlobStore
from callvault.storage.keys import Keyring, WrappedKey
from callvault.storage.shredlist import fingerprint

WHOLE = "destroyed"
BLOB_DELETE_THREADS = 16
REPLACED = "replaced"


@dataclass(frozen=True)
class Pending:
    """Work left after the key is gone: delete ``blob_key``; mark the recording destroyed if ``whole``."""

    recording_id: str
    blob_key: str
    fingerprint: str | None
    whole: bool


@dataclass(frozen=True)
class Doomed:
    """A recording to destroy and the rule that says so (only the catalog fields the record keeps)."""

    recording_id: str
    call_id: str
    sha256: str | None
    size_bytes: int
    blob_key: str
    started_at: datetime
    rule: str
    reason: str = ""

    @classmethod
    def of(cls, row: Recording, rule: str, reason: str = "") -> Doomed:
        return cls(row.id, row.call_id, row.sha256, row.size_bytes, row.blob_key, row.started_at, rule, reason)


def destroy_now(
    session: Session, *, keyring: Keyring, doomed: Sequence[Doomed], actor: str, actor_role: str = "",
    source_ip: str | None = None, clock: Clock = system_clock,
) -> list[Pending]:
    """Step 1 for these recordings, in the caller's transaction (the caller commits, then calls ``finish``).

    The destruction record (with the key's fingerprint) is also the work list for ``resume``: a
    record whose recording is not yet marked ``destroyed`` is finished by the next run.
    """
    if not doomed:
        return []
    now = clock.now()
    ids = [d.recording_id for d in doomed]
    # The last line of defence for legal holds (every caller already skips or defers held recordings):
    # a hold placed after a caller looked is still seen here, and the whole step is refused.
    held = sorted(session.scalars(select(Recording.id).where(Recording.id.in_(ids), Recording.on_hold.is_(True))))
    if held:
        raise Conflict(f"not destroyed: recording(s) {', '.join(held)} are under legal hold; "
                       "release the hold first (`callvault retention hold release`)")
    # Claim the rows: a second sweeper whose FOR UPDATE SKIP LOCKED reaches one of them after this
    # transaction commits re-checks its conditions against this version (no destruction date any more)
    # and passes it by; without a change to the row it would see it as still due and shred it again.
    session.execute(update(Recording).where(Recording.id.in_(ids)).values(destroy_after=None),
                    execution_options={"synchronize_session": False})
    keys = {rec_id: (kek_id, wrapped) for rec_id, kek_id, wrapped in session.execute(
        select(DataKey.recording_id, DataKey.kek_id, DataKey.wrapped_key).where(DataKey.recording_id.in_(ids)))}
    # List first: from here on the key is dead everywhere, including in any backup of data_keys.
    keyring.record_destroyed([WrappedKey(kek_id, wrapped) for kek_id, wrapped in keys.values()])
    session.execute(delete(DataKey).where(DataKey.recording_id.in_(ids)),
                    execution_options={"synchronize_session": False})
    records, pending = [], []
    for item in doomed:
        key = keys.get(item.recording_id)
        fp = fingerprint(key[1]) if key is not None else None
        records.append({
            "recording_id": item.recording_id, "call_id": item.call_id, "content_sha256": item.sha256,
            "size_bytes": item.size_bytes, "rule": item.rule, "reason": item.reason,
            "kek_id": key[0] if key is not None else None, "key_fingerprint": fp, "destroyed_at": now,
            "destroyed_by": actor, "recorded_started_at": item.started_at,
        })
        pending.append(Pending(item.recording_id, item.blob_key, fp, whole=True))
    session.execute(insert(DestructionRecord), records)
    rules = Counter(d.rule for d in doomed)
    single = len(doomed) == 1
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="recording.destroyed", decision="info",
        object_type="recording" if single else "recordings", object_id=ids[0] if single else f"{len(ids)} recordings",
        reason=doomed[0].reason if single else "retention sweep", source_ip=source_ip,
        details={"recording_ids": ids, "rules": dict(rules), "kek_ids": sorted({k[0] for k in keys.values()})},
        clauses=("A3", "A9", "B11"),
    ), clock=clock)
    webhooks.emit_many(session, "recording.destroyed", [{
        "recording_id": item.recording_id, "call_id": item.call_id, "rule": item.rule, "reason": item.reason,
        "destroyed_at": now.isoformat(), "content_sha256": item.sha256} for item in doomed], clock=clock)
    return pending


def replace_key(
    session: Session, *, row: Recording, old_key: DataKey, new_key: DataKey, new_blob_key: str, clock: Clock,
) -> Pending:
    """Swap a recording onto a new key and blob (truncation) in the caller's transaction.

    The old key row is deleted and logged as ``replaced``; after the commit, ``finish`` lists it and
    deletes the old blob. The recording stays available.
    """
    pending = log_replaced(session, row=row, old_key=old_key, clock=clock)
    session.delete(old_key)
    session.flush()
    session.add(new_key)
    row.blob_key = new_blob_key
    session.flush()
    return pending


def log_replaced(session: Session, *, row: Recording, old_key: DataKey, clock: Clock) -> Pending:
    """Log ``old_key`` (still ``row``'s, with ``row.blob_key``) as ``replaced`` in the caller's transaction, before
    the caller swaps the recording onto a new key and blob; ``finish`` after the commit lists the key and deletes
    the old blob. Every replacement goes through here (a truncation, card data removed from the audio), so a
    database restored from before it can never unwrap the old key and play what was cut (A9, PCI DSS)."""
    fp = fingerprint(old_key.wrapped_key)
    session.add(KeyDestruction(fingerprint=fp, recording_id=row.id, kek_id=old_key.kek_id, blob_key=row.blob_key,
                               reason=REPLACED, destroyed_at=clock.now(), completed_at=None))
    return Pending(row.id, row.blob_key, fp, whole=False)


def finish(
    db: Database, store: BlobStore, keyring: Keyring, pending: Sequence[Pending], *, clock: Clock = system_clock,
) -> int:
    """Step 2: list the keys (again), delete the blobs, mark rows destroyed, complete the key log."""
    if not pending:
        return 0
    if keyring.shredded is not None:
        keyring.shredded.add(p.fingerprint for p in pending if p.fingerprint)
    _delete_blobs(store, [p.blob_key for p in pending])
    now = clock.now()
    whole = [p.recording_id for p in pending if p.whole]
    fps = [p.fingerprint for p in pending if p.fingerprint]
    with db.unit_of_work() as session:
        if whole:
            # The caller's number and CRM link are personal data and go with the audio (B11); what stays
            # is who/when on our side, and the rule that destroyed it, so the catalog itself says why.
            by_rule: dict[str, list[str]] = {}
            for rec_id, rule in session.execute(select(DestructionRecord.recording_id, DestructionRecord.rule)
                                                .where(DestructionRecord.recording_id.in_(whole))):
                by_rule.setdefault(rule, []).append(rec_id)
            for rule, ids in by_rule.items():
                session.execute(update(Recording).where(Recording.id.in_(ids)).values(
                    state=RecordingState.DESTROYED, destroyed_at=now, on_hold=False, retention_rule=rule,
                    destroy_after=None, remote_number=None, crm_ref=None, consent={}))
            _scrub_reviews(session, whole)
        if fps:
            session.execute(update(KeyDestruction).where(KeyDestruction.fingerprint.in_(fps),
                                                         KeyDestruction.completed_at.is_(None))
                            .values(completed_at=now))
    return len(whole)


def _scrub_reviews(session: Session, recording_ids: Sequence[str]) -> None:
    """Quality reviewers' words about destroyed calls go with them: the comments pinned to moments of the call and
    the coaching note and the agent's reply quote or describe what was said (B11: the content is destroyed). The
    scores stay (the agent's record, B8), and so does the fact that the call was reviewed."""
    items = select(QaReviewItem.id).where(QaReviewItem.recording_id.in_(recording_ids))
    session.execute(delete(QaComment).where(QaComment.item_id.in_(items)),
                    execution_options={"synchronize_session": False})
    session.execute(update(QaReview).where(QaReview.item_id.in_(items)).values(coaching_note="", agent_response=""),
                    execution_options={"synchronize_session": False})


def _delete_blobs(store: BlobStore, keys: Sequence[str]) -> None:
    """Delete blobs concurrently: each delete waits on a directory fsync (local) or a round trip (S3),
    and those overlap well. The key is already gone, so the order among them does not matter."""
    if len(keys) <= 1:
        for key in keys:
            store.delete(key)
        return
    with ThreadPoolExecutor(max_workers=min(BLOB_DELETE_THREADS, len(keys))) as pool:
        for _ in pool.map(store.delete, keys):
            pass


def resume(db: Database, store: BlobStore, keyring: Keyring, *, clock: Clock = system_clock,
           batch_size: int = 1000) -> int:
    """Finish what a stopped sweep (or destruction) left between step 1 and step 2; returns how many."""
    done = 0
    while True:
        with db.unit_of_work() as session:
            keys = list(session.execute(
                select(KeyDestruction.recording_id, KeyDestruction.blob_key, KeyDestruction.fingerprint,
                       KeyDestruction.reason)
                .where(KeyDestruction.completed_at.is_(None)).limit(batch_size)))
            pending = [Pending(r, b, f, whole=reason == WHOLE) for r, b, f, reason in keys]
            if len(pending) < batch_size:
                # Whole destructions: a destruction record whose recording is not marked destroyed yet.
                unfinished = session.execute(
                    select(Recording.id, Recording.blob_key, DestructionRecord.key_fingerprint).join(
                        DestructionRecord, DestructionRecord.recording_id == Recording.id)
                    .where(Recording.state != RecordingState.DESTROYED).limit(batch_size - len(pending)))
                seen = {p.recording_id for p in pending}
                pending += [Pending(r, b, f, whole=True) for r, b, f in unfinished if r not in seen]
        if not pending:
            return done
        finish(db, store, keyring, pending, clock=clock)
        done += len(pending)
