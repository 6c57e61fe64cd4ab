"""Bounded power-loss runs on the lossy FUSE file system; the long form is tests/soak/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import POLICY_A, fresh_database
from tests.reliability.powerloss import power_loss_ingest
from tests.support import lossyfs
from tests.support.retention import World, make_world

UNAVAILABLE = lossyfs.available()


@pytest.fixture()
def lossy_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[World, lossyfs.LossyMount]]:
    """A world whose data directory (and SQLite database) lives on the lossy file system."""
    if UNAVAILABLE:
        pytest.skip(UNAVAILABLE)
    (tmp_path / "db").mkdir()
    with lossyfs.lossy_mount(tmp_path / "disk", tmp_path / "mnt") as fs, \
            fresh_database(request.config.getoption("--db"), tmp_path / "mnt") as url:
        world = make_world(tmp_path / "mnt" / "data", url, POLICY_A, "a")
        try:
            yield world, fs
        finally:
            world.close()


def test_no_acknowledged_recording_is_lost_when_the_power_fails_during_ingest(
        lossy_world: tuple[World, lossyfs.LossyMount], tmp_path: Path) -> None:
    world, fs = lossy_world
    (tmp_path / "work").mkdir()
    tally = power_loss_ingest(world, fs, tmp_path / "work", trials=9, seed=21)
    tally.report()
    assert tally.counts["acknowledged"] > 0 and tally.counts["unsynced_writes_at_cut"] > 0
    assert min(tally.counts[f"cut_{mode}"] for mode in ("crash", "torn-seq", "torn-op")) == 3


def test_the_lossy_file_system_really_loses_unsynced_writes(tmp_path: Path) -> None:
    """The harness is only as good as its disk: unsynced data must vanish and synced data stay."""
    if UNAVAILABLE:
        pytest.skip(UNAVAILABLE)
    import os

    with lossyfs.lossy_mount(tmp_path / "disk", tmp_path / "mnt") as fs:
        (tmp_path / "mnt" / "unsynced").write_bytes(b"u" * 9000)
        fd = os.open(tmp_path / "mnt" / "synced", os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"s" * 9000)
        os.fsync(fd)
        os.close(fd)
        assert (tmp_path / "mnt" / "unsynced").read_bytes() == b"u" * 9000  # readers see the cache
        fs.cut_power("crash")
        assert (tmp_path / "disk" / "unsynced").read_bytes() == b""
        assert (tmp_path / "disk" / "synced").read_bytes() == b"s" * 9000
        fs.start()
