"""Audit log benchmark: append and verify N entries (default 1,000,000) through the real code paths.

    python -m bench.audit [--count N] [--batch 10000] [--checkpoints 10] [--minute 3000] [--db-url URL]

Append: ``audit.append_many`` in transactions of ``--batch`` entries (the chain hash, the canonical
JSON and the database insert), plus a signed checkpoint every N/--checkpoints entries (timed apart).
Verify: ``checkpoints.verify_log``: read every entry back, recompute its hash and link, build the
Merkle tree, check each checkpoint's signature, root and consistency with the one before.
Checkpoint: at the end, one checkpoint recomputed from every entry (``full``, what the hourly check
and ``audit checkpoint`` do) against one that extends the previous checkpoint by ``--minute``
entries (what the worker publishes every minute), both timed on the full log.
Baseline: raw SHA-256 chaining over the same canonical bytes (sha256(prev_hex || canonical)), measured
in the same run, so the ratios say what the database, JSON and tree cost on top of the hashing itself.
Default database: a fresh SQLite file in a temporary directory (PostgreSQL: --db-url postgresql://...).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from callvault.audit import checkpoints
from callvault.audit import service as audit
from callvault.audit.signing import Signer, create_signing_key, load_signer
from callvault.core.db import Database
from callvault.core.migrate import upgrade_to_head


def _event(i: int) -> audit.AuditEvent:
    # A typical entry: a purpose-checked play with a Range header, as the playback endpoint writes it.
    return audit.AuditEvent(
        actor=f"user{i % 50:02d}", actor_role="support_lead", action="recording.play", decision="allow",
        object_type="recording", object_id=f"{i:08x}-5f1e-4c3a-9d2b-{i * 7919 % 10**12:012d}",
        purpose="spot_check", reason="spot_check is allowed for support_lead", clauses=("A6", "A13"),
        source_ip="10.20.0.5", details={"range": f"bytes={i % 4096 * 65536}-"},
    )


def run(count: int, batch: int, n_checkpoints: int, db_url: str | None, workdir: Path, minute: int = 3000) -> None:
    url = db_url or f"sqlite:///{workdir / 'bench-audit.db'}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    upgrade_to_head(url)
    db = Database(url)
    key = workdir / "audit-signing.pem"
    create_signing_key(key)
    signer = load_signer(key)
    every = max(count // max(n_checkpoints, 1), 1)

    append_s = checkpoint_s = 0.0
    done = 0
    next_cp = every
    while done < count:
        n = min(batch, count - done)
        events = [_event(i) for i in range(done, done + n)]  # building inputs is not the log's cost
        started = time.perf_counter()
        with db.unit_of_work() as session:
            audit.append_many(session, events)
        append_s += time.perf_counter() - started
        done += n
        if done >= next_cp or done == count:
            started = time.perf_counter()
            with db.unit_of_work() as session:
                checkpoints.publish_checkpoint(session, signer=signer)
            checkpoint_s += time.perf_counter() - started
            next_cp += every
        print(f"\rappended {done:,}/{count:,}", end="", flush=True)
    print()

    if db.dialect == "postgresql":
        # A table filled in a minute has no planner statistics yet (autovacuum analyzes it a little
        # later), and without them PostgreSQL scans the whole table for "entries since seq N".
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE audit_entries"))
    full_s, minute_s = _time_checkpoints(db, signer, minute)

    started = time.perf_counter()
    with db.unit_of_work() as session:
        result = checkpoints.verify_log(session, public_key=signer.public_key)
    verify_s = time.perf_counter() - started
    assert result.intact, result.problem

    raw_s = 0.0
    with db.unit_of_work() as session:
        prev = audit.GENESIS_HASH
        chunk: list[bytes] = []
        for row in audit.iter_entry_rows(session, batch=20_000):
            chunk.append(audit.canonical_bytes(row))
            if len(chunk) == 20_000:
                started = time.perf_counter()
                for data in chunk:
                    prev = hashlib.sha256(prev.encode() + data).hexdigest()
                raw_s += time.perf_counter() - started
                chunk = []
        started = time.perf_counter()
        for data in chunk:
            prev = hashlib.sha256(prev.encode() + data).hexdigest()
        raw_s += time.perf_counter() - started
    assert prev == result.head_hash, "the baseline must hash exactly what the log hashed"
    db.dispose()

    raw_rate = count / raw_s
    append_rate = count / append_s
    verify_rate = count / verify_s
    print(f"database: {url.split('://', 1)[0]}; entries: {count:,}; checkpoints: {result.checkpoints_checked}")
    print(f"append:      {append_rate:12,.0f} entries/s  ({append_s:.1f} s; + {checkpoint_s:.1f} s signing "
          f"{result.checkpoints_checked} checkpoints)")
    print(f"verify:      {verify_rate:12,.0f} entries/s  ({verify_s:.1f} s: chain, Merkle tree, signatures, "
          "consistency)")
    print(f"raw SHA-256: {raw_rate:12,.0f} entries/s  ({raw_s:.2f} s chaining the same canonical bytes)")
    print(f"ratio to raw SHA-256 chaining: append {raw_rate / append_rate:.1f}x slower, "
          f"verify {raw_rate / verify_rate:.1f}x slower")
    print(f"checkpoint:  {minute_s * 1000:12,.1f} ms extending the last one by {minute:,} entries; "
          f"{full_s * 1000:,.1f} ms recomputed from all {count + minute:,} (full / incremental "
          f"{full_s / minute_s:,.0f}x)")


def _time_checkpoints(db: Database, signer: Signer, minute: int) -> tuple[float, float]:
    """Seconds for a full checkpoint of the whole log, then for one extending it by ``minute`` entries."""
    with db.unit_of_work() as session:
        audit.append_many(session, [_event(i) for i in range(minute)])
    started = time.perf_counter()
    with db.unit_of_work() as session:
        cp = checkpoints.publish_checkpoint(session, signer=signer, full=True)
        assert cp is not None and cp.rewrite_checked
    full_s = time.perf_counter() - started
    with db.unit_of_work() as session:
        audit.append_many(session, [_event(i) for i in range(minute)])
    started = time.perf_counter()
    with db.unit_of_work() as session:
        cp = checkpoints.publish_checkpoint(session, signer=signer)
        assert cp is not None and not cp.rewrite_checked, "the minutely checkpoint did not extend the last one"
    return full_s, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--db-url", default=None)
    parser.add_argument("--minute", type=int, default=3000,
                        help="entries a minutely checkpoint covers in the checkpoint timing (default 3,000: 50/s)")
    args = parser.parse_args()
    if args.count < 1 or args.batch < 1:
        parser.error("--count and --batch must be at least 1")
    with tempfile.TemporaryDirectory(prefix="cv-bench-audit-") as tmp:
        run(args.count, args.batch, args.checkpoints, args.db_url, Path(tmp), args.minute)


if __name__ == "__main__":
    main()
