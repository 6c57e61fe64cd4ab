"""Disk full, I/O errors and a dead object store during ingest: refused, nothing partial kept."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.capture.ingest import reap_stale_ingests
from callvault.core.clock import system_clock
from callvault.recordings.models import Recording, RecordingState
from callvault.runtime import build_runtime
from callvault.storage import blobstore
from callvault.storage.s3 import S3BlobStore
from tests.support.retention import World, world_for


@pytest.fixture()
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "a")


class _FailingFile:
    """A file whose writes fail with ``err`` once ``after`` bytes went through."""

    def __init__(self, inner: Any, err: int, after: int) -> None:
        self._inner, self._err, self._left = inner, err, after

    def write(self, data: bytes) -> int:
        if len(data) > self._left:
            raise OSError(self._err, os.strerror(self._err))
        self._left -= len(data)
        return int(self._inner.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


def _nothing_partial(world: World, store: Any) -> None:
    with world.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(Recording)))
    assert all(r.state == RecordingState.AVAILABLE for r in rows), "a partial recording is visible"
    assert set(store.iter_keys()) == {r.blob_key for r in rows}
    if isinstance(store, blobstore.LocalBlobStore):
        assert not list((store.root / ".tmp").iterdir()), "a half-written temporary was left"


@pytest.mark.parametrize(("fault", "after"), [("ENOSPC", 0), ("ENOSPC", 40_000), ("EIO", 10_000)])
def test_a_full_or_failing_disk_refuses_the_ingest_and_leaves_nothing_partial(
        world: World, monkeypatch: pytest.MonkeyPatch, fault: str, after: int) -> None:
    real_fdopen = os.fdopen
    code = getattr(errno, fault)
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: _FailingFile(real_fdopen(fd, mode), code, after))
    with pytest.raises(OSError) as caught:
        world.ingest(call_id=f"disk-{fault}-{after}", seconds=4.0)
    _nothing_partial(world, world.runtime.store)
    monkeypatch.undo()
    rec_id = world.ingest(call_id=f"disk-{fault}-{after}", seconds=4.0)  # space freed: the retry is stored
    assert world.playable(rec_id)
    print(f"[reliability] {fault} after {after} bytes: refused with {type(caught.value).__name__}"
          f"({caught.value.errno}); nothing partial; retry stored")


def test_a_dead_object_store_refuses_the_ingest_and_the_reaper_clears_the_reservation(world: World) -> None:
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1))
    dead = S3BlobStore(client=client, bucket="nowhere")
    local = world.runtime.store
    world.runtime.store = dead
    try:
        with pytest.raises(Exception) as caught:
            world.ingest(call_id="s3-dead", seconds=1.0)
    finally:
        world.runtime.store = local
    with world.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(Recording).where(Recording.call_id == "s3-dead")))
    assert all(r.state == RecordingState.PENDING for r in rows), "a recording without its audio became visible"
    reap_stale_ingests(db=world.runtime.db, store=local, older_than=timedelta(0), clock=system_clock)
    _nothing_partial(world, local)
    print(f"[reliability] dead S3 endpoint: refused with {type(caught.value).__name__}; "
          f"{len(rows)} pending reservation(s) left for the reaper, which cleared them")


@pytest.mark.parametrize("which", ["file", "directory"])
def test_a_failed_fsync_stops_writes_raises_an_alarm_and_never_reports_success(
        world: World, monkeypatch: pytest.MonkeyPatch, which: str) -> None:
    """RELIABILITY.md scenario 3 (fsyncgate): fail-stop until restart, alarm, nothing acknowledged."""
    kept = world.ingest(call_id=f"before-{which}", seconds=2.0)
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
        if is_dir == (which == "directory") and calls["n"] == 0:
            calls["n"] += 1
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(blobstore.FlushFailed, match="fsync failed"):
        world.ingest(call_id=f"during-{which}", seconds=2.0)
    monkeypatch.undo()  # the disk "recovers": a retry in this process must still be refused
    with pytest.raises(blobstore.FlushFailed, match="restart this process") as refused:
        world.ingest(call_id=f"during-{which}", seconds=2.0)
    _nothing_partial(world, world.runtime.store)
    with world.runtime.db.unit_of_work() as session:
        alarms = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "storage.flush_failed")))
    assert [a.object_id for a in alarms] == [f"during-{which}"] * 2 and alarms[0].decision == "alarm"
    assert world.playable(kept), "a recording acknowledged before the failure was harmed"
    world.runtime.close()  # the operator restarts the process
    world.runtime = build_runtime(world.settings, clock=world.clock)
    assert world.playable(world.ingest(call_id=f"during-{which}", seconds=2.0))
    print(f"[reliability] fsync EIO on the {which}: refused, writes stopped ({str(refused.value)[:60]}...), "
          f"{len(alarms)} alarms audited, stored after restart")
