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

from sqlalchemy import exists, func, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from callvault.access import service as access
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
from callvault.subject_requests import service as subject_requests

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
    kept_for_requests: int = 0
    """Due recordings kept because a request in hand wants them: a verified caller's or operator's request not
    sent yet, or an access request pending or granted and in force (``wanted``)."""
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


def wanted(session: Session, rec: Recording, now: datetime) -> str | None:
    """Why a due recording must wait: the request in hand that wants it, or None.

    Destroying what a person has asked for, before they are answered, defeats the request (B7, B10, A4:
    PIPEDA keeps information under an access request for as long as it takes to exhaust recourse); an access
    request pending or granted names the recording for a purpose (B6, B9). It goes at the first sweep after."""
    asked = subject_requests.open_requests_for(session, rec)
    if asked:
        return f"subject request {asked[0].id}"
    named = access.open_requests_naming(session, recording_id=rec.id, now=now)
    return f"access request {named[0]}" if named else None


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
        query = select(Recording).where(*_due(now)).order_by(Recording.destroy_after, Recording.id)
        for row in session.scalars(query):
            assert row.destroy_after is not None  # selected by destroy_after <= now
            if wanted(session, row, now) is not None:
                result.kept_for_requests += 1
                continue
            if limit is not None and len(result.candidates) >= limit:
                continue
            rule = row.retention_rule or "max_age"
            result.candidates.append(Candidate(row.id, row.call_id, row.started_at, row.destroy_after, rule))
            result.by_rule[rule] += 1
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
    waiting: set[str] = set()
    while True:
        with db.unit_of_work() as session:
            query = (select(Recording)
                     .where(*_due(now), Recording.id.not_in(waiting) if waiting else true())
                     .order_by(Recording.destroy_after, Recording.id).limit(batch_size))
            if postgres:
                query = query.with_for_update(skip_locked=True, of=Recording)
            rows = list(session.scalars(query))
            if not rows:
                break
            kept = {row.id for row in rows if wanted(session, row, now) is not None}
            waiting |= kept
            doomed = [Doomed(row.id, row.call_id, row.sha256, row.size_bytes, row.blob_key, row.started_at,
                             row.retention_rule or "max_age",
                             f"retention: {row.retention_rule or 'max_age'} date {row.destroy_after:%Y-%m-%d} reached")
                      for row in rows if row.id not in kept]
            pending = destroy_now(session, keyring=keyring, doomed=doomed, actor=actor, clock=clock) if doomed else []
        result.kept_for_requests = len(waiting)
        if not doomed:
            continue
        if after_keys_destroyed is not None:
            after_keys_destroyed(pending)
        finish(db, store, keyring, pending, clock=clock)
        result.destroyed += len(doomed)
        result.by_rule.update(d.rule for d in doomed)
        if on_batch is not None:
            on_batch(len(doomed))
    with db.unit_of_work() as session:
        result.held = _held(session, now)
    return result
