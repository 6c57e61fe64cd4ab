"""Shared by the catalog benchmarks: a throw-away callvault with N synthetic recordings, fast.

Rows are bulk-inserted straight into the catalog (COPY on PostgreSQL, executemany on SQLite) —
search and decision speed do not depend on the audio, so no blobs are written.
"""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from callvault.cli.commands import initialise
from callvault.core.settings import load_settings
from callvault.recordings.models import Recording
from callvault.runtime import Runtime, build_runtime

POLICY = Path(__file__).resolve().parents[1] / "examples" / "policies" / "policy-a.yaml"
AGENTS = [(f"agent{i:03d}", str(2000 + i)) for i in range(90)]
EPOCH = datetime(2026, 6, 1, tzinfo=UTC)


def _rows(count: int, seed: int = 7) -> Iterator[dict[str, object]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    for i in range(count):
        agent, ext = AGENTS[rng.randrange(len(AGENTS))]
        started = EPOCH + timedelta(seconds=rng.randrange(0, 180 * 86400))
        rec_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        yield {
            "id": rec_id, "call_id": f"bulk-{i}", "state": "available",
            "direction": "inbound" if rng.random() < 0.7 else "outbound",
            "started_at": started, "ended_at": started + timedelta(seconds=rng.randrange(30, 1800)),
            "extension": ext, "agent": agent, "team": "customer_support",
            "remote_number": f"+1416555{rng.randrange(0, 10000):04d}", "local_number": "+14165911668",
            "consent": {"announcement_played_at": started.isoformat(), "announcement_version": "1"},
            "consent_state": "announcement",
            "quarantined": False, "case_ref": None, "crm_ref": None, "audio_format": "wav", "sample_rate": 8000,
            "channels": 2, "duration_seconds": 300.0, "size_bytes": 0, "sha256": None,
            "blob_key": f"{rec_id[:2]}/{rec_id[2:4]}/{rec_id}.cva", "ingested_by": "bench", "created_at": now,
        }


def bulk_insert(runtime: Runtime, count: int) -> float:
    """Insert ``count`` catalog rows; returns seconds taken."""
    start = time.perf_counter()
    batch: list[dict[str, object]] = []
    with runtime.db.unit_of_work() as session:
        for row in _rows(count):
            batch.append(row)
            if len(batch) == 20_000:
                session.execute(insert(Recording), batch)
                batch = []
        if batch:
            session.execute(insert(Recording), batch)
    return time.perf_counter() - start


@contextmanager
def fresh_runtime(database_url: str | None, directory: str | None = None) -> Iterator[tuple[Runtime, Path]]:
    """An initialised callvault (demo policy, an ``admin``) in a temp dir (made under ``directory``, else
    the system's); yields (runtime, the temp dir)."""
    with tempfile.TemporaryDirectory(prefix="callvault-bench-", dir=directory) as tmp:
        env = {"CALLVAULT_DATABASE_URL": database_url} if database_url else {}
        settings = load_settings(Path(tmp) / "data", env=env)
        initialise(settings, policy_file=POLICY, admin_user="admin", admin_password="bench-password-123")
        runtime = build_runtime(settings)
        try:
            yield runtime, Path(tmp)
        finally:
            runtime.close()


@contextmanager
def catalog(count: int, database_url: str | None) -> Iterator[tuple[Runtime, float]]:
    """An initialised callvault with ``count`` rows; yields (runtime, seconds the insert took)."""
    with fresh_runtime(database_url) as (runtime, _tmp):
        seconds = bulk_insert(runtime, count)
        # Fresh statistics, as the worker's database.optimize job keeps them in production.
        with runtime.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE recordings" if runtime.db.dialect == "postgresql" else "ANALYZE")
            conn.commit()
        yield runtime, seconds
