"""Appending to and verifying the hash-chained audit log.

Each entry's hash is SHA-256 over the previous entry's hash and a canonical JSON encoding of every
field, so changing, deleting, inserting or reordering any entry breaks every later link.
One writer at a time: PostgreSQL takes a transaction-scoped advisory lock; SQLite transactions
already begin IMMEDIATE (see ``callvault.core.db``). ``seq`` is the primary key, so even a bug
that skipped the lock could not fork the chain; it would fail the insert.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from callvault.audit.models import AuditEntry
from callvault.core.clock import Clock, system_clock

log = logging.getLogger("callvault.audit")

GENESIS_HASH = "0" * 64
_PG_AUDIT_LOCK = 0x63_76_61_75  # "cvau": arbitrary, constant across nodes
PURPOSE_LENGTH = 64
"""``audit_entries.purpose`` (models.py): the longest purpose an entry keeps."""
OBJECT_ID_LENGTH = 200
"""``audit_entries.object_id``."""


def _canonical(entry_fields: dict[str, Any]) -> bytes:
    return json.dumps(entry_fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class EntryFields(Protocol):
    """Anything with an entry's columns: an ``AuditEntry`` or a row selected from its table."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def actor_role(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def object_type(self) -> str: ...
    @property
    def object_id(self) -> str: ...
    @property
    def purpose(self) -> str | None: ...
    @property
    def decision(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def clauses(self) -> list[str]: ...
    @property
    def source_ip(self) -> str | None: ...
    @property
    def details(self) -> dict[str, Any]: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def entry_hash(self) -> str: ...


def canonical_bytes(entry: EntryFields) -> bytes:
    """The canonical encoding the entry hash covers (after ``prev_hash``)."""
    return _canonical(_fields(entry))


def _fields(entry: EntryFields) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "actor_role": entry.actor_role,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "purpose": entry.purpose,
        "decision": entry.decision,
        "reason": entry.reason,
        "clauses": list(entry.clauses),
        "source_ip": entry.source_ip,
        "details": entry.details,
    }


def compute_entry_hash(entry: EntryFields) -> str:
    """The hash an entry must carry, given its fields and ``prev_hash``."""
    digest = hashlib.sha256()
    digest.update(entry.prev_hash.encode())
    digest.update(_canonical(_fields(entry)))
    return digest.hexdigest()


@dataclass(frozen=True)
class AuditEvent:
    """What happened, who did it and why. Never put recording content in ``details``."""

    actor: str
    action: str
    decision: str = "info"
    actor_role: str = ""
    object_type: str = ""
    object_id: str = ""
    purpose: str | None = None
    reason: str = ""
    clauses: Sequence[str] = ()
    source_ip: str | None = None
    details: dict[str, Any] | None = None


def _fit(value: str | None, limit: int) -> str | None:
    """``value`` cut to its column's length, the cut marked with "…".

    Why: a refusal must be on the record whatever the caller sent; a purpose or an id longer than its
    column made PostgreSQL refuse the whole entry (a 500, and no record of the denial), while SQLite kept
    it whole. The event's ``reason`` carries the full text where it matters ("unknown purpose '…'")."""
    if value is None or len(value) <= limit:
        return value
    return value[:limit - 1] + "…"


def append(session: Session, event: AuditEvent, *, clock: Clock = system_clock) -> AuditEntry:
    """Append one entry to the chain inside the caller's transaction (the caller commits)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash, AuditEntry.at).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    now = clock.now()
    if last is not None:
        _warn_if_clock_went_back(last[2], now, seq)
    entry = AuditEntry(
        seq=seq,
        at=now,
        actor=event.actor,
        actor_role=event.actor_role,
        action=event.action,
        object_type=event.object_type,
        object_id=_fit(event.object_id, OBJECT_ID_LENGTH) or "",
        purpose=_fit(event.purpose, PURPOSE_LENGTH),
        decision=event.decision,
        reason=event.reason,
        clauses=list(event.clauses),
        source_ip=event.source_ip,
        details=dict(event.details or {}),
        prev_hash=prev_hash,
    )
    entry.entry_hash = compute_entry_hash(entry)
    session.add(entry)
    session.flush()
    return entry


CLOCK_STEP_TOLERANCE_SECONDS = 5.0
"""How far an entry's time may fall behind the one before it (NTP slewing, two nodes' clocks a little
apart) before the step back is reported."""


def _warn_if_clock_went_back(previous_at: datetime, now: datetime, seq: int) -> None:
    """Log a step back of the clock. The chain does not care (``seq`` orders the log, not ``at``), but
    times earlier than the entry before them mislead anyone reading the trail; the checkpoint job puts
    it on the record (``callvault.audit.checkpoints``)."""
    behind = (previous_at - now).total_seconds()
    if behind > CLOCK_STEP_TOLERANCE_SECONDS:
        log.warning("clock went backwards: audit entry #%d is dated %s, %.0f s before entry #%d",
                    seq, now.isoformat(), behind, seq - 1)


def append_many(session: Session, events: Sequence[AuditEvent], *, clock: Clock = system_clock) -> int:
    """Append several entries at once (one lock, one lookup of the head, one bulk insert).

    For bulk work (imports, ingest); the entries are exactly what ``append`` would write, but the
    caller gets no ORM objects back (cheaper even for one entry).
    Returns the seq of the last entry (0 when ``events`` is empty and the log is empty).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash, AuditEntry.at).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS_HASH)
    rows: list[dict[str, Any]] = []
    for event in events:
        seq += 1
        now = clock.now()
        if last is not None and seq == last[0] + 1:
            _warn_if_clock_went_back(last[2], now, seq)
        # Plain drafts, not ORM instances: half the cost of a bulk append was instrumenting objects.
        draft = _Draft(
            seq=seq, at=now, actor=event.actor, actor_role=event.actor_role, action=event.action,
            object_type=event.object_type, object_id=_fit(event.object_id, OBJECT_ID_LENGTH) or "",
            purpose=_fit(event.purpose, PURPOSE_LENGTH),
            decision=event.decision, reason=event.reason, clauses=list(event.clauses), source_ip=event.source_ip,
            details=dict(event.details or {}), prev_hash=prev_hash,
        )
        draft.entry_hash = prev_hash = compute_entry_hash(draft)
        rows.append(draft.__dict__)
    if rows:
        session.execute(insert(AuditEntry), rows)
    return seq


@dataclass
class _Draft:
    """An entry's columns before insert (see ``append_many``)."""

    seq: int
    at: datetime
    actor: str
    actor_role: str
    action: str
    object_type: str
    object_id: str
    purpose: str | None
    decision: str
    reason: str
    clauses: list[str]
    source_ip: str | None
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str = ""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain check. ``first_bad_seq`` is None when intact."""

    entries_checked: int
    first_bad_seq: int | None
    problem: str
    head_hash: str

    @property
    def intact(self) -> bool:
        return self.first_bad_seq is None


def iter_entry_rows(session: Session, *, first_seq: int = 1, last_seq: int | None = None,
                    batch: int = 5000) -> Iterator[EntryFields]:
    """Entries in seq order as plain rows (no ORM identity map, so a million entries fit in memory)."""
    table = AuditEntry.__table__
    after = first_seq - 1
    while True:
        query = select(table).where(table.c.seq > after).order_by(table.c.seq).limit(batch)
        if last_seq is not None:
            query = query.where(table.c.seq <= last_seq)
        rows = session.execute(query).all()
        if not rows:
            return
        yield from rows  # a Row has every column as an attribute
        after = rows[-1].seq


def verify_chain(session: Session, *, on_entry: Callable[[EntryFields], None] | None = None) -> VerifyResult:
    """Walk the whole chain; report the first entry whose sequence, link or hash is wrong.

    Detects edits, deletions, insertions and reordering anywhere except removal of the newest
    entries (the signed checkpoints catch that: ``callvault.audit.checkpoints.verify_log``).
    ``on_entry`` sees every entry that verified, in order (the Merkle tree is built from it).
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for entry in iter_entry_rows(session):
        if entry.seq != expected_seq:
            return VerifyResult(checked, expected_seq, f"entry {expected_seq} is missing (next is {entry.seq})",
                                prev_hash)
        if entry.prev_hash != prev_hash:
            return VerifyResult(checked, entry.seq, f"entry {entry.seq} does not link to entry {entry.seq - 1}",
                                prev_hash)
        if compute_entry_hash(entry) != entry.entry_hash:
            return VerifyResult(checked, entry.seq, f"entry {entry.seq} was altered after it was written",
                                prev_hash)
        prev_hash = entry.entry_hash
        expected_seq += 1
        checked += 1
        if on_entry is not None:
            on_entry(entry)
    return VerifyResult(checked, None, "", prev_hash)


def entries_for_object(session: Session, object_type: str, object_id: str, limit: int = 200) -> list[AuditEntry]:
    """The trail of one object (e.g. a recording), newest first."""
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.object_type == object_type, AuditEntry.object_id == object_id)
            .order_by(AuditEntry.seq.desc())
            .limit(limit)
        )
    )


def search_entries(session: Session, *, actor: str | None = None, object_id: str | None = None,
                   purpose: str | None = None, decision: str | None = None, start: datetime | None = None,
                   end: datetime | None = None, limit: int = 200) -> list[AuditEntry]:
    """Entries matching every filter given (person, object such as a recording, purpose, decision, period
    ``[start, end)``), newest first: the oversight page's "who did what to this call, and why"."""
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if object_id:
        query = query.where(AuditEntry.object_id == object_id)
    if purpose:
        query = query.where(AuditEntry.purpose == purpose)
    if decision:
        query = query.where(AuditEntry.decision == decision)
    if start:
        query = query.where(AuditEntry.at >= start)
    if end:
        query = query.where(AuditEntry.at < end)
    return list(session.scalars(query.order_by(AuditEntry.seq.desc()).limit(limit)))


def as_dict(entry: EntryFields) -> dict[str, Any]:
    """JSON-ready form of an entry (for API and export)."""
    out = _fields(entry)
    out["prev_hash"] = entry.prev_hash
    out["entry_hash"] = entry.entry_hash
    return out


def parse_time(value: str) -> datetime:
    """ISO 8601 → datetime, for CLI filters."""
    return datetime.fromisoformat(value)
