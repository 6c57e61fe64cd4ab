"""Signed checkpoints over the audit log, full verification, inclusion proofs and export bundles.

A checkpoint signs this text (UTF-8, ``\\n`` line ends, the same in ``tools/verify_audit_bundle.py``)::

    callvault-audit-checkpoint/1
    seq <checkpoint seq>
    size <tree size>
    root <Merkle root, hex>
    time <published_at, ISO 8601 with microseconds and +00:00>
    key <key id>

``verify_log`` checks, in this order, and stops at the first problem it can name:
the hash chain (first bad entry), then every checkpoint: sequence, signer, signature, that it does not
cover entries that are gone, that its root is the root of the entries as they are now, and that it is
consistent with the checkpoint before it (an RFC 9162 consistency proof).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from callvault.audit import alarm, merkle
from callvault.audit.models import AuditCheckpoint, AuditEntry
from callvault.audit.service import (
    _PG_AUDIT_LOCK,
    CLOCK_STEP_TOLERANCE_SECONDS,
    GENESIS_HASH,
    AuditEvent,
    EntryFields,
    append,
    as_dict,
    compute_entry_hash,
    iter_entry_rows,
    verify_chain,
)
from callvault.audit.signing import Signer, key_id, public_key_pem, raw_public_key, signature_valid
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import ConfigurationError, IntegrityError, InvalidInput, NotFound

log = logging.getLogger("callvault.audit")

BUNDLE_FORMAT = "callvault-audit-bundle/1"
CHECKPOINT_HEADER = "callvault-audit-checkpoint/1"


def checkpoint_message(*, seq: int, tree_size: int, root_hash: str, published_at: datetime, key: str) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    return (
        f"{CHECKPOINT_HEADER}\nseq {seq}\nsize {tree_size}\nroot {root_hash}\n"
        f"time {published_at.astimezone(UTC).isoformat(timespec='microseconds')}\nkey {key}\n"
    ).encode()


def checkpoint_dict(cp: AuditCheckpoint) -> dict[str, Any]:
    """JSON form of a checkpoint (what the CLI prints and bundles carry)."""
    return {
        "seq": cp.seq,
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash,
        "published_at": cp.published_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "key_id": cp.key_id,
        "signature": cp.signature,
    }


def _lock(session: Session) -> None:
    # The same lock appends take: the tree is read as a complete, contiguous prefix of the log.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})


def load_tree(session: Session, *, size: int | None = None) -> merkle.MerkleTree:
    """The Merkle tree of the stored entries (the first ``size`` of them, or all)."""
    tree = merkle.MerkleTree()
    query = select(AuditEntry.entry_hash).order_by(AuditEntry.seq)
    if size is not None:
        query = query.where(AuditEntry.seq <= size)
    for (entry_hash,) in session.execute(query):
        tree.append(merkle.entry_leaf(entry_hash))
    return tree


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1))


def list_checkpoints(session: Session, *, up_to_seq: int | None = None) -> list[AuditCheckpoint]:
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.seq)
    if up_to_seq is not None:
        query = query.where(AuditCheckpoint.seq <= up_to_seq)
    return list(session.scalars(query))


class HistoryRewritten(IntegrityError):
    """The log no longer extends a checkpoint published earlier outside the database."""

    def __init__(self, message: str, *, anchored_seq: int, anchored_size: int, log_size: int) -> None:
        super().__init__(message)
        self.anchored_seq, self.anchored_size, self.log_size = anchored_seq, anchored_size, log_size


REWRITE_CHECK_EVERY_SECONDS = 3600
"""How often a checkpoint recomputes the Merkle root from every stored entry.

In between, a checkpoint appends the entries added since the previous one to that checkpoint's
frontier (``merkle.Frontier``), so publishing costs the new entries, not the log: that is what lets
checkpoints come every minute on a log of millions. The incremental step trusts nothing unsigned
it cannot check: the stored frontier must fold to the previous checkpoint's signed root, the entry
it ended at must still carry the hash kept with it (and in the anchor), and every new entry must
chain from it in unbroken ``seq`` order. An entry changed in the middle of the log with every later
hash recomputed changes that head hash and is caught at once; one changed without recomputing
breaks the chain, which ``verify_log`` reports, and the hourly full recomputation catches anything
else before the next checkpoint after it."""


def publish_checkpoint(
    session: Session, *, signer: Signer, clock: Clock = system_clock, only_if_grown: bool = False,
    max_quiet_seconds: float | None = None, anchored: TrustedCheckpoint | None = None, full: bool = False,
) -> AuditCheckpoint | None:
    """Sign the current tree head and store it (the caller commits).

    With ``only_if_grown`` nothing is published when no entry was added since the last checkpoint,
    unless the last one is older than ``max_quiet_seconds`` (a fresh signature on an unchanged log
    shows the log was still there and unchanged at that time).
    With ``anchored`` (the last checkpoint published outside the database, ``callvault.audit.anchor``)
    nothing is published and ``HistoryRewritten`` is raised unless the log still extends it.
    The root is recomputed from every entry when ``full`` is given, when the last such checkpoint is
    older than ``REWRITE_CHECK_EVERY_SECONDS``, or when the previous checkpoint cannot be extended as
    it is; otherwise it is the previous checkpoint's frontier plus the entries added since.
    """
    _lock(session)
    alarm.refuse_if_open(session)
    last = latest_checkpoint(session)
    now = clock.now()
    # After an acknowledged alarm, the next checkpoint verifies everything, whatever the hour.
    acked = alarm.latest_alarm(session)
    if acked is not None and last is not None and acked.acknowledged_at is not None \
            and acked.acknowledged_at >= last.published_at:
        full = True
    _record_clock_step(session, last, now, clock)
    if last is not None and now < last.published_at:
        # Never date a checkpoint before the one it follows: verification treats that as tampering.
        log.warning("clock is %.0f s behind checkpoint %d; dating the new one %s",
                    (last.published_at - now).total_seconds(), last.seq, last.published_at.isoformat())
        now = last.published_at
    extended = None if full else _extend(session, last, anchored, now)
    if extended is not None:
        frontier, head = extended
    else:
        # The newest seq, not the number of rows: a deleted entry must show as a gap, not a shorter log.
        size = int(session.scalar(select(func.max(AuditEntry.seq))) or 0)
        if _quiet(last, size, now, only_if_grown, max_quiet_seconds):
            return None
        tree = load_tree(session, size=size)
        if tree.size != size:
            gap = _first_gap(session, 0, size)
            raise alarm.AuditTampered(f"audit log tampered: entry #{gap} is missing (the log has {tree.size} of "
                                      f"the entries #1..#{size}); nothing was signed (checking entries "
                                      f"#1..#{size} before signing them)", first_bad_seq=gap)
        if anchored is not None:
            problem = rewrite_problem(session, anchored, tree, last, signer.public_key)
            if problem:
                raise HistoryRewritten(f"history rewritten: {problem}", anchored_seq=anchored.seq,
                                       anchored_size=anchored.tree_size, log_size=size)
        frontier = merkle.Frontier(size, tree.frontier())
        head = session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == size)) or ""
    if extended is not None and _quiet(last, frontier.size, now, only_if_grown, max_quiet_seconds):
        return None
    # Sign only what verifies: an entry deleted, or edited without re-hashing, must not be vouched for.
    since = last.tree_size if extended is not None and last is not None else 0
    problem, first_bad = tamper_problem(session, since=since, size=frontier.size)
    if problem:
        raise alarm.AuditTampered(f"audit log tampered: {problem}; nothing was signed (checking entries "
                                  f"#{max(since, alarm.rebase_seq(session)) + 1}..#{frontier.size} before signing "
                                  "them)", first_bad_seq=first_bad)
    seq = (last.seq + 1) if last else 1
    root = frontier.root().hex()
    cp = AuditCheckpoint(seq=seq, tree_size=frontier.size, root_hash=root, published_at=now, key_id=signer.key_id,
                         signature="", frontier=frontier.to_text(), head_hash=head, rewrite_checked=extended is None)
    cp.signature = signer.sign(checkpoint_message(seq=seq, tree_size=frontier.size, root_hash=root, published_at=now,
                                                  key=signer.key_id))
    session.add(cp)
    session.flush()
    return cp


def tamper_problem(session: Session, *, since: int, size: int) -> tuple[str, int | None]:
    """Why entries ``since..size`` cannot be signed, with the first bad seq; ("", None) when they verify.

    Checks that no entry of the whole log is missing (one COUNT: a row deleted anywhere, even one a
    previous checkpoint covered, leaves a gap), then walks the entries from ``since`` (the last one
    the previous checkpoint covered; 0: all) to ``size``: unbroken ``seq``, each linking to the one
    before, each hash recomputed from its fields. A re-base (``alarm.rebase_seq``) moves the start of
    both checks past the entries an administrator accepted as they stand.
    """
    base = alarm.rebase_seq(session)
    first = max(since, base, 1)
    present = session.scalar(select(func.count()).select_from(AuditEntry)
                             .where(AuditEntry.seq > base, AuditEntry.seq <= size)) or 0
    if present != size - base:
        gap = _first_gap(session, base, size)
        return f"entry #{gap} is missing (the log has {present} of the entries #{base + 1}..#{size})", gap
    prev_hash: str | None = None
    expected = first
    for entry in iter_entry_rows(session, first_seq=first, last_seq=size):
        if entry.seq != expected:
            return f"entry #{expected} is missing (the next is #{entry.seq})", expected
        if entry.seq == 1 and entry.prev_hash != GENESIS_HASH:
            return "entry #1 does not start the chain", 1
        if prev_hash is not None and entry.prev_hash != prev_hash:
            return f"entry #{entry.seq} does not link to entry #{entry.seq - 1}", entry.seq
        if compute_entry_hash(entry) != entry.entry_hash:
            return f"entry #{entry.seq} was altered after it was written (its hash no longer matches)", entry.seq
        prev_hash = entry.entry_hash
        expected += 1
    if expected <= size:
        return f"entry #{expected} is missing", expected
    return "", None


def _first_gap(session: Session, base: int, size: int) -> int:
    """The first seq after ``base`` with no entry (read only when the count says one is missing)."""
    expected = base + 1
    for (seq,) in session.execute(select(AuditEntry.seq).where(AuditEntry.seq > base, AuditEntry.seq <= size)
                                  .order_by(AuditEntry.seq)):
        if seq != expected:
            return int(expected)
        expected += 1
    return int(expected)


def _quiet(last: AuditCheckpoint | None, size: int, now: datetime, only_if_grown: bool,
           max_quiet_seconds: float | None) -> bool:
    """Whether ``only_if_grown`` leaves this checkpoint out: nothing new, and the last one is recent."""
    if not only_if_grown or last is None or last.tree_size != size:
        return False
    return max_quiet_seconds is None or (now - last.published_at).total_seconds() < max_quiet_seconds


def _extend(session: Session, last: AuditCheckpoint | None, anchored: TrustedCheckpoint | None,
            now: datetime) -> tuple[merkle.Frontier, str] | None:
    """The frontier and head hash of the log as it is now, built on ``last``; None: recompute in full.

    None whenever anything the shortcut relies on does not hold (see ``REWRITE_CHECK_EVERY_SECONDS``):
    the full recomputation then either publishes or says what is wrong.
    """
    if last is None or last.tree_size == 0 or not last.frontier or not last.head_hash:
        return None
    checked = session.scalar(select(func.max(AuditCheckpoint.published_at)).where(AuditCheckpoint.rewrite_checked))
    if checked is None or (now - checked).total_seconds() >= REWRITE_CHECK_EVERY_SECONDS:
        return None
    if anchored is not None and (anchored.seq != last.seq or anchored.head_hash != last.head_hash
                                 or _trusted_dict(anchored) != checkpoint_dict(last)):
        return None
    try:
        frontier = merkle.Frontier.from_text(last.tree_size, last.frontier)
    except ValueError:
        frontier = None
    if frontier is None or frontier.root().hex() != last.root_hash:
        log.warning("checkpoint #%d: its stored frontier does not fold to its signed root; recomputing the "
                    "root from every entry", last.seq)
        return None
    head = last.head_hash
    rows = session.execute(select(AuditEntry.seq, AuditEntry.prev_hash, AuditEntry.entry_hash)
                           .where(AuditEntry.seq >= last.tree_size).order_by(AuditEntry.seq))
    expected = last.tree_size
    for seq, prev_hash, entry_hash in rows:
        if seq != expected:
            return None
        if seq == last.tree_size:
            if entry_hash != head:
                return None
        else:
            if prev_hash != head:
                return None
            frontier.append(merkle.entry_leaf(entry_hash))
            head = entry_hash
        expected += 1
    if expected == last.tree_size:  # the entry the last checkpoint ended at is gone
        return None
    return frontier, head


def _record_clock_step(session: Session, last: AuditCheckpoint | None, now: datetime, clock: Clock) -> None:
    """Put a clock that went backwards on the audit record (RELIABILITY scenario 22).

    Looks at the entries since the last checkpoint (and the one before them), then at the clock
    itself: a time more than ``CLOCK_STEP_TOLERANCE_SECONDS`` before the one preceding it is a step
    back. Each step is reported by the first checkpoint after it, once: the entries it looked at are
    covered from then on, and the alarm entry carries the current time.
    """
    start = last.tree_size if last is not None and last.tree_size > 0 else 1
    times: list[tuple[str, datetime]] = [
        (f"audit entry #{seq}", at) for seq, at in session.execute(
            select(AuditEntry.seq, AuditEntry.at).where(AuditEntry.seq >= start).order_by(AuditEntry.seq))]
    times.append(("the clock", now))
    steps = [(later, earlier, (earlier_at - later_at).total_seconds())
             for (earlier, earlier_at), (later, later_at) in itertools.pairwise(times)
             if (earlier_at - later_at).total_seconds() > CLOCK_STEP_TOLERANCE_SECONDS]
    if not steps:
        return
    what, before, behind = steps[0]
    message = (f"clock went backwards: {what} is {behind:.0f} s earlier than {before}"
               + (f" ({len(steps)} steps back since the last checkpoint)" if len(steps) > 1 else "")
               + "; the log stays ordered by seq; check the time source (NTP)")
    log.error(message)
    append(session, AuditEvent(actor="system", action="audit.clock_went_back", decision="alarm",
                               object_type="audit_log", object_id=what.removeprefix("audit entry #"),
                               reason=message, details={"seconds_behind": round(behind, 3), "steps": len(steps)}),
           clock=clock)


def rewrite_problem(session: Session, anchored: TrustedCheckpoint, tree: merkle.MerkleTree,
                    last: AuditCheckpoint | None, public_key: Ed25519PublicKey) -> str:
    """Why the log (``tree``, newest stored checkpoint ``last``) does not extend ``anchored``, or "".

    In order: the anchored copy itself is not genuine; the log has fewer entries than it covered
    (removed entries, or an older database restored); no RFC 9162 consistency proof leads from its
    root to the log's; the database lacks checkpoints published since, or holds a different one.
    """
    when = anchored.published_at.astimezone(UTC).isoformat(timespec="seconds")
    published = f"checkpoint #{anchored.seq} published {when} outside the database"
    if anchored.key_id == key_id(public_key) and _check_signature(anchored, public_key):
        return f"the anchored copy of checkpoint #{anchored.seq} does not carry a valid signature"
    if tree.size < anchored.tree_size:
        return (f"the log has {tree.size} entries, but {published} covered {anchored.tree_size} "
                "(entries were removed, or an older database was restored)")
    proof = tree.consistency_proof(anchored.tree_size, tree.size)
    if not merkle.verify_consistency(anchored.tree_size, tree.size, bytes.fromhex(anchored.root_hash),
                                     tree.root(), proof):
        return (f"the log's first {anchored.tree_size} entries are not the ones {published} signed "
                "(the RFC 9162 consistency proof fails: entries were changed, or an older database was "
                "restored and written to since)")
    newest = last.seq if last is not None else 0
    if newest < anchored.seq:
        return (f"the database's newest checkpoint is #{newest}, but {published} "
                "(an older database was restored)")
    stored = session.get(AuditCheckpoint, anchored.seq)
    if stored is None or checkpoint_dict(stored) != _trusted_dict(anchored):
        return f"the database's checkpoint #{anchored.seq} differs from the {published}"
    return ""


@dataclass(frozen=True)
class LogVerifyResult:
    """Outcome of ``verify_log``. At most one of ``first_bad_seq`` / ``first_bad_checkpoint`` is set."""

    entries_checked: int
    head_hash: str
    checkpoints_checked: int
    first_bad_seq: int | None = None
    first_bad_checkpoint: int | None = None
    problem: str = ""
    latest_tree_size: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.first_bad_seq is None and self.first_bad_checkpoint is None


@dataclass(frozen=True)
class TrustedCheckpoint:
    """A checkpoint kept outside the database (from a bundle, a mail, ``audit checkpoint`` output)."""

    seq: int
    tree_size: int
    root_hash: str
    published_at: datetime
    key_id: str
    signature: str
    head_hash: str | None = None
    """``entry_hash`` of entry ``tree_size``, where the anchor keeps it (not signed, not in bundles)."""

    @classmethod
    def from_json(cls, data: Any, *, where: str = "checkpoint") -> TrustedCheckpoint:
        try:
            head = data.get("head_hash")
            return cls(seq=int(data["seq"]), tree_size=int(data["tree_size"]), root_hash=str(data["root_hash"]),
                       published_at=datetime.fromisoformat(str(data["published_at"])),
                       key_id=str(data["key_id"]), signature=str(data["signature"]),
                       head_hash=str(head) if head is not None else None)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{where} is not a callvault checkpoint (seq, tree_size, root_hash, "
                               f"published_at, key_id, signature): {exc}") from exc


def _check_signature(cp: AuditCheckpoint | TrustedCheckpoint, public_key: Ed25519PublicKey) -> str:
    trusted_id = key_id(public_key)
    if cp.key_id != trusted_id:
        return f"signed by key {cp.key_id}, not the trusted key {trusted_id}"
    message = checkpoint_message(seq=cp.seq, tree_size=cp.tree_size, root_hash=cp.root_hash,
                                 published_at=cp.published_at, key=cp.key_id)
    if not signature_valid(public_key, cp.signature, message):
        return "its signature does not match its contents (seq, size, root, time or key was altered)"
    return ""


def verify_log(
    session: Session, *, public_key: Ed25519PublicKey | None, trusted: Sequence[TrustedCheckpoint] = (),
    anchored: TrustedCheckpoint | None = None,
) -> LogVerifyResult:
    """Verify chain, tree, checkpoint signatures and consistency; see the module docstring.

    ``anchored`` (the checkpoint kept outside the database, ``callvault.audit.anchor``) must still be in
    the log unchanged: a log truncated together with its newest checkpoints verifies on its own, but
    not against the anchor, which covers entries that are gone."""
    tree = merkle.MerkleTree()

    def add_leaf(entry: EntryFields) -> None:
        tree.append(merkle.entry_leaf(entry.entry_hash))

    chain = verify_chain(session, on_entry=add_leaf)
    entries, head = chain.entries_checked, chain.head_hash
    if not chain.intact:
        return LogVerifyResult(entries, head, checkpoints_checked=0, first_bad_seq=chain.first_bad_seq,
                               problem=chain.problem)
    checkpoints = list_checkpoints(session)
    if checkpoints and public_key is None:
        raise ConfigurationError("the log has signed checkpoints but no public key to check them with; "
                                 "give --public-key FILE (from `callvault audit public-key`)")
    checked = 0
    prev: AuditCheckpoint | None = None
    for cp in checkpoints:
        expected = (prev.seq + 1) if prev else 1
        if cp.seq != expected:
            return LogVerifyResult(entries, head, checkpoints_checked=checked, first_bad_checkpoint=expected,
                                   problem=f"checkpoint {expected} is missing (the next one is {cp.seq})")
        bad = _check_checkpoint(cp, prev, tree, public_key)
        if bad:
            return LogVerifyResult(entries, head, checkpoints_checked=checked, first_bad_checkpoint=cp.seq,
                                   problem=f"checkpoint {cp.seq} {bad}")
        prev = cp
        checked += 1
    notes: list[str] = []
    for item in trusted:
        bad = _check_trusted(item, tree, public_key, checkpoints)
        if bad:
            return LogVerifyResult(entries, head, checkpoints_checked=checked, first_bad_checkpoint=item.seq,
                                   problem=f"saved checkpoint {item.seq} {bad}")
        notes.append(f"saved checkpoint {item.seq} (size {item.tree_size}) is consistent with the log")
    if anchored is not None:
        bad = _check_trusted(anchored, tree, public_key, checkpoints)
        if bad:
            return LogVerifyResult(entries, head, checkpoints_checked=checked, first_bad_checkpoint=anchored.seq,
                                   problem=f"the checkpoint anchored outside the database (#{anchored.seq}, "
                                           f"{anchored.tree_size} entries) {bad}")
        notes.append(f"the anchored checkpoint {anchored.seq} (size {anchored.tree_size}) is consistent with the log")
    latest = prev.tree_size if prev else 0
    if tree.size > latest:
        notes.append(f"{tree.size - latest} entries after the latest checkpoint are not signed yet")
    return LogVerifyResult(entries, head, checkpoints_checked=checked, latest_tree_size=latest, notes=notes)


def _check_checkpoint(cp: AuditCheckpoint, prev: AuditCheckpoint | None, tree: merkle.MerkleTree,
                      public_key: Ed25519PublicKey | None) -> str:
    assert public_key is not None
    bad = _check_signature(cp, public_key)
    if bad:
        return bad
    if prev is not None and cp.tree_size < prev.tree_size:
        return f"covers {cp.tree_size} entries, fewer than checkpoint {prev.seq} ({prev.tree_size})"
    if prev is not None and cp.published_at < prev.published_at:
        return f"is dated before checkpoint {prev.seq}"
    if cp.tree_size > tree.size:
        return (f"covers {cp.tree_size} entries but the log has only {tree.size}: "
                f"entries #{tree.size + 1}..#{cp.tree_size} were removed")
    if tree.root(cp.tree_size).hex() != cp.root_hash:
        since = prev.tree_size if prev else 0
        return (f"does not match the entries it signed: entries #{since + 1}..#{cp.tree_size} were rewritten "
                f"after checkpoint {cp.seq} was published")
    if prev is not None:
        proof = tree.consistency_proof(prev.tree_size, cp.tree_size)
        if not merkle.verify_consistency(prev.tree_size, cp.tree_size, bytes.fromhex(prev.root_hash),
                                         bytes.fromhex(cp.root_hash), proof):
            return f"is not consistent with checkpoint {prev.seq}"
    return ""


def _check_trusted(item: TrustedCheckpoint, tree: merkle.MerkleTree, public_key: Ed25519PublicKey | None,
                   stored: Sequence[AuditCheckpoint]) -> str:
    if public_key is None:
        return "cannot be checked without a public key"
    bad = _check_signature(item, public_key)
    if bad:
        return bad
    if item.tree_size > tree.size:
        return (f"covers {item.tree_size} entries but the log has only {tree.size}: "
                f"entries #{tree.size + 1}..#{item.tree_size} were removed")
    if tree.root(item.tree_size).hex() != item.root_hash:
        return f"does not match the log: entries among #1..#{item.tree_size} were rewritten after it was saved"
    same = next((c for c in stored if c.seq == item.seq), None)
    if same is None or checkpoint_dict(same) != _trusted_dict(item):
        return "is missing from the database or differs from the stored copy"
    return ""


def _trusted_dict(item: TrustedCheckpoint) -> dict[str, Any]:
    return {"seq": item.seq, "tree_size": item.tree_size, "root_hash": item.root_hash,
            "published_at": item.published_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "key_id": item.key_id, "signature": item.signature}


def inclusion_proof(session: Session, entry_seq: int) -> dict[str, Any]:
    """An RFC 9162 inclusion proof of one entry against the latest checkpoint that covers it."""
    cp = latest_checkpoint(session)
    if cp is None:
        raise NotFound("no checkpoint has been published yet; run `callvault audit checkpoint`")
    if not 1 <= entry_seq <= cp.tree_size:
        raise NotFound(f"entry #{entry_seq} is not covered by the latest checkpoint {cp.seq} "
                       f"(entries #1..#{cp.tree_size}); publish a new checkpoint first")
    entry = session.get(AuditEntry, entry_seq)
    if entry is None:
        raise NotFound(f"entry #{entry_seq} does not exist")
    tree = load_tree(session, size=cp.tree_size)
    proof = tree.inclusion_proof(entry_seq - 1, cp.tree_size)
    return {
        "entry": as_dict(entry),
        "leaf_index": entry_seq - 1,
        "leaf_hash": merkle.entry_leaf(entry.entry_hash).hex(),
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash,
        "audit_path": [p.hex() for p in proof],
        "checkpoint": checkpoint_dict(cp),
    }


def seq_range(session: Session, start: datetime | None, end: datetime | None) -> tuple[int, int] | None:
    """The contiguous seq range from the first entry at/after ``start`` to the last before ``end``."""
    first_q = select(func.min(AuditEntry.seq))
    last_q = select(func.max(AuditEntry.seq))
    if start is not None:
        first_q = first_q.where(AuditEntry.at >= start)
        last_q = last_q.where(AuditEntry.at >= start)
    if end is not None:
        first_q = first_q.where(AuditEntry.at < end)
        last_q = last_q.where(AuditEntry.at < end)
    first, last = session.scalar(first_q), session.scalar(last_q)
    if first is None or last is None:
        return None
    return int(first), int(last)


def export_bundle(session: Session, *, public_key: Ed25519PublicKey, first_seq: int, last_seq: int,
                  clock: Clock = system_clock) -> dict[str, Any]:
    """A self-contained bundle: the entries, every checkpoint up to the latest, consistency proofs
    between consecutive checkpoints, and an inclusion proof of each entry in the latest checkpoint.

    The latest checkpoint must cover ``last_seq`` (the CLI publishes one first when it does not).
    """
    cp = latest_checkpoint(session)
    if cp is None or cp.tree_size < last_seq:
        raise NotFound(f"no checkpoint covers entry #{last_seq} yet; publish one with `callvault audit checkpoint`")
    checkpoints = list_checkpoints(session, up_to_seq=cp.seq)
    tree = load_tree(session, size=cp.tree_size)
    consistency = []
    for older, newer in itertools.pairwise(checkpoints):
        proof = tree.consistency_proof(older.tree_size, newer.tree_size)
        consistency.append({"from_checkpoint": older.seq, "to_checkpoint": newer.seq,
                            "proof": [p.hex() for p in proof]})
    entries = [as_dict(e) for e in iter_entry_rows(session, first_seq=first_seq, last_seq=last_seq)]
    inclusion = {str(e["seq"]): [p.hex() for p in tree.inclusion_proof(e["seq"] - 1, cp.tree_size)]
                 for e in entries}
    return {
        "format": BUNDLE_FORMAT,
        "created_at": clock.now().astimezone(UTC).isoformat(timespec="seconds"),
        "hashing": {
            "entry_hash": "sha256(prev_hash as ASCII hex || canonical JSON of the entry fields)",
            "canonical_json": "json.dumps(fields, sort_keys=True, separators=(',', ':'), ensure_ascii=False)",
            "leaf": "sha256(0x00 || bytes.fromhex(entry_hash))",
            "node": "sha256(0x01 || left || right)  (RFC 9162 section 2.1)",
        },
        "public_key": {"algorithm": "ed25519", "key_id": key_id(public_key),
                       "raw_hex": raw_public_key(public_key).hex(), "pem": public_key_pem(public_key)},
        "range": {"first_seq": first_seq, "last_seq": last_seq},
        "entries": entries,
        "checkpoints": [checkpoint_dict(c) for c in checkpoints],
        "consistency_proofs": consistency,
        "anchor_checkpoint": cp.seq,
        "inclusion_proofs": inclusion,
    }


def dump_bundle(bundle: dict[str, Any]) -> str:
    return json.dumps(bundle, indent=1, sort_keys=True, ensure_ascii=False, default=str) + "\n"
