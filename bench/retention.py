"""Retention sweep throughput against a raw DELETE of the same rows, measured in the same run.

    .venv/bin/python bench/retention.py [--count 100000] [--batch-size 500] [--blobs] [--postgres [URL]]

Creates ``count`` expired recordings directly in bulk (catalog row + wrapped-key row each; with
``--blobs``, a tiny encrypted-size blob file each, so blob deletion is measured too), then runs the
real sweep (``callvault.retention.sweep``: claim a batch, append the key fingerprints to the
key-destruction list with fsync, delete the key rows, write destruction records and the key log,
one audit entry, commit; delete blobs; mark rows destroyed; commit) and prints recordings/s.

Reference: the same number of key rows for other recordings, deleted with a bare
``DELETE FROM data_keys WHERE recording_id IN (…)`` per batch of the same size, one commit each:
the least work crypto-shredding can do in that database. Ratio = sweep rate / reference rate.
Target: >= 1,000 recordings/s on the local store.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, insert, select

from callvault.cli.commands import initialise
from callvault.core.clock import FixedClock
from callvault.core.settings import load_settings
from callvault.policy import service as policy_service
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.retention.service import retention_basis
from callvault.retention.sweep import sweep
from callvault.runtime import Runtime, build_runtime

POLICY = Path(__file__).resolve().parents[1] / "examples" / "policies" / "policy-a.yaml"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STARTED = NOW - timedelta(days=400)
INSERT_CHUNK = 5000


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"cv_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def populate(runtime: Runtime, count: int, *, prefix: str, blobs: bool, kek_id: str, basis: str) -> list[str]:
    """``count`` available, expired recordings with key rows (and tiny blobs); returns their ids."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for start in range(0, count, INSERT_CHUNK):
        chunk = ids[start:start + INSERT_CHUNK]
        rec_rows = [{
            "id": rid, "call_id": f"{prefix}-{start + i}", "state": RecordingState.AVAILABLE, "direction": "inbound",
            "started_at": STARTED, "ended_at": STARTED + timedelta(minutes=5), "extension": "2001",
            "agent": "alice", "team": "customer_support", "remote_number": "+14165550100",
            "local_number": "+14165911668",
            "consent": {"announcement_played_at": STARTED.isoformat(), "announcement_version": "1"},
            "consent_state": "announcement", "quarantined": False, "case_ref": None, "crm_ref": None,
            "audio_format": "wav", "sample_rate": 8000, "channels": 2, "duration_seconds": 300.0,
            "size_bytes": 64, "sha256": "0" * 64, "blob_key": f"{rid[:2]}/{rid[2:4]}/{rid}.cva",
            "ingested_by": "bench", "created_at": STARTED, "destroy_after": STARTED + timedelta(days=181),
            "retention_rule": "max_age", "retention_basis": basis, "on_hold": False,
        } for i, rid in enumerate(chunk)]
        # Random stand-ins for wrapped keys (never unwrapped: the sweep only lists and deletes them).
        key_rows = [{"recording_id": rid, "kek_id": kek_id, "wrapped_key": secrets.token_bytes(60), "chunk_size": 65536,
                     "ciphertext_size": 116, "created_at": STARTED} for rid in chunk]
        with runtime.db.unit_of_work() as session:
            session.execute(insert(Recording), rec_rows)
            session.execute(insert(DataKey), key_rows)
        if blobs:
            for row in rec_rows:
                with runtime.store.writer(str(row["blob_key"])) as sink:
                    sink.write(b"\0" * 116)
    return ids


def raw_delete_rate(runtime: Runtime, ids: list[str], batch_size: int) -> float:
    start = time.perf_counter()
    for offset in range(0, len(ids), batch_size):
        with runtime.db.unit_of_work() as session:
            session.execute(delete(DataKey).where(DataKey.recording_id.in_(ids[offset:offset + batch_size])))
    return len(ids) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--blobs", action="store_true", help="give every recording a tiny blob file to delete")
    parser.add_argument("--postgres", nargs="?", const="postgresql://postgres@127.0.0.1:5432/postgres", default=None,
                        help="run on a throw-away PostgreSQL database created through this admin URL")
    parser.add_argument("--work-dir", default=None, help="where the data dir goes (default: the system temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="callvault-bench-", dir=args.work_dir) as tmp:
        root = Path(tmp)
        if args.postgres:
            with postgres_database(args.postgres) as url:
                run(root, url, args)
        else:
            run(root, None, args)


def run(root: Path, database_url: str | None, args: argparse.Namespace) -> None:
    settings = load_settings(root / "data", env={"CALLVAULT_DATABASE_URL": database_url} if database_url else {})
    initialise(settings, policy_file=POLICY, admin_user="admin", admin_password="bench-password-123")
    runtime = build_runtime(settings, clock=FixedClock(NOW))
    with runtime.db.unit_of_work() as session:
        basis = retention_basis(policy_service.current_policy(session, clock=runtime.clock))
    kek = runtime.keyring.current_id
    t0 = time.perf_counter()
    populate(runtime, args.count, prefix="bench", blobs=args.blobs, kek_id=kek, basis=basis)
    setup = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = sweep(db=runtime.db, store=runtime.store, keyring=runtime.keyring, clock=runtime.clock,
                   batch_size=args.batch_size, actor="bench")
    elapsed = time.perf_counter() - t0
    assert result.destroyed == args.count, result
    with runtime.db.unit_of_work() as session:
        left = session.scalar(select(DataKey.recording_id).limit(1))
    assert left is None, "key rows left after the sweep"

    ref_ids = populate(runtime, args.count, prefix="ref", blobs=False, kek_id=kek, basis=basis)
    reference = raw_delete_rate(runtime, ref_ids, args.batch_size)
    runtime.close()

    rate = args.count / elapsed
    print(f"database:        {settings.database_url.split('://')[0].split('+')[0]}")
    print(f"recordings:      {args.count} expired ({'with' if args.blobs else 'without'} blob files), "
          f"batches of {args.batch_size}; set up in {setup:.1f} s")
    print(f"sweep:           {rate:,.0f} recordings/s ({elapsed:.1f} s): key listed + fsync, key row deleted, "
          "destruction record, blob deleted, row marked")
    print(f"raw DELETE:      {reference:,.0f} key rows/s (same count and batch size, one commit per batch, this run)")
    print(f"ratio:           {rate / reference:.2f} of a bare DELETE; target >= 1,000 recordings/s: "
          f"{'met' if rate >= 1000 else 'NOT met'}")
    print(f"cpu:             {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
