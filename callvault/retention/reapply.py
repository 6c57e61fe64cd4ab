"""Re-applying the key-destruction list to the database: erased calls stay erased after a restore.

Why: the key-destruction list (``keys/SHREDDED``, ``callvault.storage.shredlist``) lives in the key
directory, which is never restored from a database backup. A restored database brings back the rows
of recordings destroyed after the backup was taken: their audio, transcript and CRM notes stay
unreadable (the wrapped key is on the list, so ``unwrap`` refuses it), but the catalog row (caller
number, CRM reference, consent) and the transcript's search terms are plain database rows, and a
recording whose retention date lies in the future is not due for the sweep. So the list, not the
database, is authoritative: ``reapply`` finds every data key whose fingerprint is listed and destroys
what hangs off it again, exactly as the first destruction did.

Run at every start (``callvault serve`` / the API app, ``callvault worker``), at the start of every
retention sweep and by ``callvault check --repair``. Idempotent and cheap when nothing was restored:
one pass over ``data_keys`` hashing each wrapped key (only the wrapped keys, no content).

What it does for each listed recording key, in one transaction per batch:

- deletes the ``data_keys`` row, which removes the transcript, its search terms and CRM notes with it
  (``ON DELETE CASCADE``);
- writes a destruction record if the restored database lacks one (rule ``shred_list``);
- appends one ``recording.re_destroyed`` audit entry per batch naming the recordings and the trigger;
- after the commit, ``shred.finish`` deletes the restored blob and scrubs the catalog row the way any
  destruction does (state ``destroyed``, no caller number, CRM reference or consent details).

Training clips (their own data keys) whose key is listed are marked destroyed and their blobs deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.quality.models import ClipState, TrainingClip
from callvault.recordings.models import DataKey, Recording
from callvault.retention.models import DestructionRecord
from callvault.retention.shred import Pending, finish
from callvault.storage.blobstore import BlobStore
from callvault.storage.keys import Keyring, WrappedKey
from callvault.storage.shredlist import fingerprint

RULE = "shred_list"
"""The destruction record's rule for a recording found alive again with a destroyed key."""
REASON = "its data key is on the key-destruction list (a database restored from a backup brought it back)"
BATCH = 500
log = logging.getLogger("callvault.retention.reapply")


@dataclass(frozen=True)
class ReapplyResult:
    recordings: int = 0
    clips: int = 0

    @property
    def total(self) -> int:
        return self.recordings + self.clips


def _listed_recordings(session: Session, keyring: Keyring) -> list[tuple[str, str, str]]:
    """(recording id, KEK id, fingerprint) of every data key on the destruction list."""
    found = []
    for rec_id, kek_id, wrapped in session.execute(
            select(DataKey.recording_id, DataKey.kek_id, DataKey.wrapped_key)).yield_per(BATCH):
        if keyring.is_destroyed(WrappedKey(kek_id, bytes(wrapped))):
            found.append((rec_id, kek_id, fingerprint(bytes(wrapped))))
    return found


def _destroy_batch(session: Session, batch: Sequence[tuple[str, str, str]], *, trigger: str,
                   clock: Clock) -> list[Pending]:
    # Claim the rows first and look again: the list is written *before* a destroying transaction
    # commits (``shred.destroy_now``), so a key seen listed may belong to another worker's destruction
    # in flight. Its row lock makes this wait for that commit (PostgreSQL; SQLite serialises writers),
    # after which its key row is gone and the recording is that worker's to finish, not ours.
    claimed = [rec_id for rec_id, _, _ in batch]
    session.execute(select(Recording.id).where(Recording.id.in_(claimed)).order_by(Recording.id)
                    .with_for_update(of=Recording))
    alive = set(session.scalars(select(DataKey.recording_id).where(DataKey.recording_id.in_(claimed))))
    batch = [item for item in batch if item[0] in alive]
    if not batch:
        return []
    ids = [rec_id for rec_id, _, _ in batch]
    rows = {r.id: r for r in session.scalars(select(Recording).where(Recording.id.in_(ids)))}
    recorded = set(session.scalars(select(DestructionRecord.recording_id)
                                   .where(DestructionRecord.recording_id.in_(ids))))
    now = clock.now()
    records = [{
        "recording_id": rec_id, "call_id": row.call_id, "content_sha256": row.sha256, "size_bytes": row.size_bytes,
        "rule": RULE, "reason": REASON, "kek_id": kek_id, "key_fingerprint": fp, "destroyed_at": now,
        "destroyed_by": "system", "recorded_started_at": row.started_at,
    } for rec_id, kek_id, fp in batch if (row := rows.get(rec_id)) is not None and rec_id not in recorded]
    if records:
        session.execute(insert(DestructionRecord), records)
    # The cascade takes the transcript, its search terms and the CRM notes with the key row.
    session.execute(delete(DataKey).where(DataKey.recording_id.in_(ids)),
                    execution_options={"synchronize_session": False})
    audit.append(session, audit.AuditEvent(
        actor="system", action="recording.re_destroyed", decision="info",
        object_type="recording" if len(ids) == 1 else "recordings",
        object_id=ids[0] if len(ids) == 1 else f"{len(ids)} recordings", reason=REASON,
        details={"recording_ids": ids, "trigger": trigger,
                 "removed": ["catalog personal data", "transcript", "search terms", "crm notes", "audio blob"]},
        clauses=("A3", "A9", "B11")), clock=clock)
    return [Pending(rec_id, rows[rec_id].blob_key, fp, whole=True) for rec_id, _, fp in batch if rec_id in rows]


def _reapply_clips(db: Database, store: BlobStore, keyring: Keyring, *, trigger: str, clock: Clock) -> int:
    with db.unit_of_work() as session:
        clips = [c for c in session.scalars(select(TrainingClip).where(TrainingClip.wrapped_key.is_not(None)))
                 if c.kek_id is not None and keyring.is_destroyed(WrappedKey(c.kek_id, bytes(c.wrapped_key or b"")))]
        now = clock.now()
        blobs = []
        for clip in clips:
            clip.wrapped_key, clip.state, clip.destroyed_at, clip.destroyed_reason = (
                None, ClipState.DESTROYED, now, RULE)
            blobs.append(clip.blob_key)
            audit.append(session, audit.AuditEvent(
                actor="system", action="training_clip.re_destroyed", object_type="training_clip",
                object_id=clip.id, reason=REASON, details={"trigger": trigger}, clauses=("A6",)), clock=clock)
    for key in blobs:
        store.delete(key)
    return len(clips)


def reapply(db: Database, store: BlobStore, keyring: Keyring, *, trigger: str,
            clock: Clock = system_clock) -> ReapplyResult:
    """Destroy again everything whose data key is on the key-destruction list (see the module doc).

    ``trigger`` names who ran it (``start``, ``sweep``, ``check --repair``) for the audit entry.
    A keyring without a destruction list (tests only) has nothing to re-apply.
    """
    if keyring.shredded is None or len(keyring.shredded) == 0:
        return ReapplyResult()
    with db.unit_of_work() as session:
        listed = _listed_recordings(session, keyring)
    destroyed = 0
    for start in range(0, len(listed), BATCH):
        with db.unit_of_work() as session:
            pending = _destroy_batch(session, listed[start:start + BATCH], trigger=trigger, clock=clock)
        destroyed += finish(db, store, keyring, pending, clock=clock)
    return ReapplyResult(recordings=destroyed, clips=_reapply_clips(db, store, keyring, trigger=trigger,
                                                                    clock=clock))


def reapply_at_start(db: Database, store: BlobStore, keyring: Keyring, *, clock: Clock = system_clock) -> None:
    """``reapply`` for a process that is starting (server or worker): a failure is logged, not fatal.

    Why not fatal: a server must come up while the database is briefly unreachable (it answers 503
    and recovers); the next retention sweep and ``callvault check --repair`` re-apply the list again.
    """
    try:
        done = reapply(db, store, keyring, trigger="start", clock=clock)
    except Exception:
        log.exception("could not re-apply the key-destruction list at start; the next retention sweep will")
        return
    if done.total:
        log.warning("destroyed again %d recording(s) and %d training clip(s) whose key is on the "
                    "key-destruction list (a database restored from a backup?)", done.recordings, done.clips)
