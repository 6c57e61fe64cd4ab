"""The retention sweep: destroy every recording whose date has come and that no legal hold protects.

Each run first reports legal holds past their review date and lapses those left unrenewed too long
(``service.review_overdue_holds``), so no hold keeps a recording forever unattended.

Run by ``callvault retention sweep`` and by the worker job ``retention.sweep``. Each batch is
claimed and crypto-shredded in one transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
workers never take the same rows; SQLite serialises writers anyway), then its blobs are deleted and
its rows marked destroyed (see ``shred`` for the order and why a kill at any moment is safe).
Before the first batch the sweep finishes what an earlier, interrupted run left, recomputes
dates computed under another policy version, and re-applies the key-destruction list (``reapply``:
a restored database must not bring erased calls back to the catalog or to search).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.policy import service as policy_service
from callvault.recordings.models import Recording, RecordingState
from callvault.retention import service
from callvault.retention.models import DestructionRecord
from callvault.retention.reapply import reapply
from callvault.retention.shred import Doomed, Pending, destroy_now, finish, resume
from callvault.storage.blobstore import BlobStore
from callvault.storage.keys import Keyring

DEFAULT_BATCH = 500


@dataclass(frozen=True)
class Candidate:
    """A recording the sweep would destroy, and why (for ``--dry-run``)."""

    recording_id: str
    call_id: str
    started_at: datetime
    destroy_after: datetime
    rule: str


@dataclass
class SweepResult:
    destroyed: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    resumed: int = 0
    reapplied: int = 0
    """Recordings and clips destroyed again because their key is on the key-destruction list (a restore)."""
    recomputed: int = 0
    held: int = 0
    """Due recordings kept because of a legal hold."""
    holds_overdue: int = 0
    """Holds newly reported as past their review date (``service.review_overdue_holds``)."""
    holds_lapsed: int = 0
    """Holds that lapsed, unrenewed past ``retention.legal_hold.lapse_after_overdue_days``."""
    candidates: list[Candidate] = field(default_factory=list)
    """Dry run only: what would go."""


def _due(now: datetime) -> list[ColumnElement[bool]]:
    return [
        Recording.state == RecordingState.AVAILABLE,
        Recording.on_hold.is_(False),
        Recording.destroy_after <= now,
        # Belt and braces over ``destroy_after``: a minimum that applied to it is never undercut (issue 28).
        or_(Recording.keep_until.is_(None), Recording.keep_until <= now),
        # Rows a concurrent or interrupted run already shredded are finished by ``resume``, not twice.
        ~exists().where(DestructionRecord.recording_id == Recording.id),
    ]


def _count(session: Session, conds: Sequence[ColumnElement[bool]]) -> int:
    return int(session.scalar(select(func.count()).select_from(Recording).where(*conds)) or 0)


def _held(session: Session, now: datetime) -> int:
    return _count(session, [Recording.state == RecordingState.AVAILABLE, Recording.on_hold.is_(True),
                            Recording.destroy_after <= now])


def due_count(db: Database, *, now: datetime) -> int:
    with db.unit_of_work() as session:
        return _count(session, _due(now))


def dry_run(db: Database, *, clock: Clock = system_clock, limit: int | None = None) -> SweepResult:
    """What a sweep at ``clock.now()`` would destroy and why; writes nothing (recomputation is rolled back)."""
    now = clock.now()
    result = SweepResult()
    session = db.session_factory()
    try:
        policy = policy_service.current_policy(session, clock=clock)
        result.recomputed = service.refresh_stale(session, policy=policy)
        query = (select(Recording.id, Recording.call_id, Recording.started_at, Recording.destroy_after,
                        Recording.retention_rule)
                 .where(*_due(now)).order_by(Recording.destroy_after, Recording.id))
        if limit is not None:
            query = query.limit(limit)
        for rec_id, call_id, started, after, rule in session.execute(query):
            assert after is not None  # selected by destroy_after <= now
            result.candidates.append(Candidate(rec_id, call_id, started, after, rule or "max_age"))
            result.by_rule[rule or "max_age"] += 1
        result.held = _held(session, now)
    finally:
        session.rollback()
        session.close()
    return result


def sweep(
    *,
    db: Database,
    store: BlobStore,
    keyring: Keyring,
    clock: Clock = system_clock,
    batch_size: int = DEFAULT_BATCH,
    actor: str = "system",
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    after_keys_destroyed: Callable[[Sequence[Pending]], None] | None = None,
) -> SweepResult:
    """Destroy everything due at ``clock.now()``. Idempotent; safe to kill and rerun; any number of workers.

    ``on_start(total)`` and ``on_batch(n)`` drive a progress bar. ``after_keys_destroyed`` runs after
    each batch's key-deletion commit and before its blobs go (tests use it to simulate a kill there).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = clock.now()
    result = SweepResult()
    with db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=clock)
        # Overdue holds first: one that lapses releases its recordings to this very sweep.
        result.holds_overdue, result.holds_lapsed = service.review_overdue_holds(session, policy=policy, clock=clock)
        result.recomputed = service.refresh_stale(session, policy=policy)
    result.resumed = resume(db, store, keyring, clock=clock)
    result.reapplied = reapply(db, store, keyring, trigger="sweep", clock=clock).total
    if on_start is not None:
        on_start(due_count(db, now=now))
    postgres = db.dialect == "postgresql"
    while True:
        with db.unit_of_work() as session:
            query = (select(Recording.id, Recording.call_id, Recording.sha256, Recording.size_bytes,
                            Recording.blob_key, Recording.started_at, Recording.retention_rule,
                            Recording.destroy_after)
                     .where(*_due(now)).order_by(Recording.destroy_after, Recording.id).limit(batch_size))
            if postgres:
                query = query.with_for_update(skip_locked=True, of=Recording)
            rows = list(session.execute(query))
            if not rows:
                break
            doomed = [Doomed(rec_id, call_id, sha, size, blob, started, rule or "max_age",
                             f"retention: {rule or 'max_age'} date {after:%Y-%m-%d} reached")
                      for rec_id, call_id, sha, size, blob, started, rule, after in rows]
            pending = destroy_now(session, keyring=keyring, doomed=doomed, actor=actor, clock=clock)
        if after_keys_destroyed is not None:
            after_keys_destroyed(pending)
        finish(db, store, keyring, pending, clock=clock)
        result.destroyed += len(rows)
        result.by_rule.update(d.rule for d in doomed)
        if on_batch is not None:
            on_batch(len(rows))
    with db.unit_of_work() as session:
        result.held = _held(session, now)
    return result
