"""The documented backup/restore drill (docs/reliability.md) on SQLite: database + blobs from a backup,
the key directory as it is now. Kept recordings come back bit-exact; a recording destroyed after the
backup stays unreadable; the audit chain verifies."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from callvault.core.errors import NotFound
from callvault.recordings.models import RecordingState
from callvault.retention.sweep import sweep
from callvault.runtime import build_runtime
from tests.conftest import POLICY_A, fresh_database
from tests.reliability.harness import assert_chain_intact
from tests.support.retention import T, World, make_world


@pytest.fixture()
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.config.getoption("--db") != "sqlite":
        pytest.skip("the file-level drill runs on SQLite (PostgreSQL: pg_dump/pg_restore, same order)")
    (tmp_path / "db").mkdir()
    with fresh_database("sqlite", tmp_path / "db") as url:
        w = make_world(tmp_path / "data", url, POLICY_A, "a")
        try:
            yield w
        finally:
            w.close()


def test_restoring_database_and_blobs_beside_the_current_keys_never_resurrects_a_destroyed_recording(
        world: World, tmp_path: Path) -> None:
    old = world.ingest(seed=1)
    kept = world.ingest(started=T + timedelta(days=150), seed=2)
    kept_audio = world.audio(kept)
    db_file = Path(world.settings.database_url.removeprefix("sqlite:///"))
    blobs = Path(world.settings.storage_url)
    backup = tmp_path / "backup"
    backup.mkdir()
    # 1. back up: the database (online, consistent), then the blobs. The key dir is backed up separately.
    with sqlite3.connect(db_file) as src, sqlite3.connect(backup / "callvault.db") as dst:
        src.backup(dst)
    shutil.copytree(blobs, backup / "blobs")
    # 2. the retention sweep destroys `old` after the backup was taken.
    world.at(T + timedelta(days=200))
    sweep(db=world.runtime.db, store=world.runtime.store, keyring=world.runtime.keyring, clock=world.clock)
    assert world.intact_or_fully_destroyed(old) == "destroyed"
    # 3. disaster, then restore: stop, database first, then blobs; keys stay as they are now.
    world.runtime.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_file) + suffix).unlink(missing_ok=True)
    shutil.copyfile(backup / "callvault.db", db_file)
    shutil.rmtree(blobs)
    shutil.copytree(backup / "blobs", blobs)
    world.runtime = build_runtime(world.settings, clock=world.clock)
    assert world.row(old).state == RecordingState.AVAILABLE and world.has_key(old)  # the backup's rows are back
    with pytest.raises(NotFound, match="destroyed"):
        world.audio(old)  # ... but the key-destruction list in the current key dir refuses its key
    assert world.audio(kept) == kept_audio
    entries = assert_chain_intact(world.runtime.db)
    # 4. re-run the sweep: it finishes the destruction the restore undid.
    sweep(db=world.runtime.db, store=world.runtime.store, keyring=world.runtime.keyring, clock=world.clock)
    assert world.intact_or_fully_destroyed(old) == "destroyed"
    assert world.intact_or_fully_destroyed(kept) == "intact"
    print(f"[reliability] backup/restore drill: 2 recordings, 1 destroyed after the backup stays unreadable, "
          f"1 kept plays bit-exact, audit chain of {entries} entries intact")
