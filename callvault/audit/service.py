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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from callvault.audit.models import AuditEntry
from callvault.core.clock import Clock, system_clock

GENESIS_HASH = "0" * 64
_PG_AUDIT_LOCK = 0x63_76_61_75  # "cvau": arbitrary, constant across nodes


def _canonical(entry_fields: dict[str, Any]) -> bytes:
    return json.dumps(entry_fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _fields(entry: AuditEntry) -> dict[str, Any]:
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


def compute_entry_hash(entry: AuditEntry) -> str:
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


def append(session: Session, event: AuditEvent, *, clock: Clock = system_clock) -> AuditEntry:
    """Append one entry to the chain inside the caller's transaction (the caller commits)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    entry = AuditEntry(
        seq=seq,
        at=clock.now(),
        actor=event.actor,
        actor_role=event.actor_role,
        action=event.action,
        object_type=event.object_type,
        object_id=event.object_id,
        purpose=event.purpose,
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


def _iter_entries(session: Session, batch: int = 2000) -> Iterator[AuditEntry]:
    after = 0
    while True:
        rows = list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def verify_chain(session: Session) -> VerifyResult:
    """Walk the whole chain; report the first entry whose sequence, link or hash is wrong.

    Detects edits, deletions, insertions and reordering anywhere except removal of the newest
    entries (that needs the signed checkpoints of the oversight issue).
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for entry in _iter_entries(session):
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


def as_dict(entry: AuditEntry) -> dict[str, Any]:
    """JSON-ready form of an entry (for API and export)."""
    out = _fields(entry)
    out["prev_hash"] = entry.prev_hash
    out["entry_hash"] = entry.entry_hash
    return out


def parse_time(value: str) -> datetime:
    """ISO 8601 → datetime, for CLI filters."""
    return datetime.fromisoformat(value)
