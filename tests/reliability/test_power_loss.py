"""Bounded power-loss runs on the lossy FUSE file system; the long form is tests/soak/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.powerloss import power_loss_ingest, world_on_lossy_disk
from tests.support import lossyfs
from tests.support.retention import World

UNAVAILABLE = lossyfs.available()


@pytest.fixture(name="lossy_world")
def _lossy_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[World, lossyfs.LossyMount]]:
    with world_on_lossy_disk(request, tmp_path) as pair:
        yield pair


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
