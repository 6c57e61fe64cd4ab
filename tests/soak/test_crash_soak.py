"""Hundreds of SIGKILL trials per scenario (the bounded form runs dozens in CI): ingest, the HTTP server
during uploads, the retention sweep (also right after a restore of an older backup), the mail sender,
power cuts. ``-k`` picks one, e.g. ``-k "upload or restore"``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.crash import crash_ingest, crash_mail, crash_restore_sweep, crash_sweep
from tests.reliability.crash_upload import crash_upload
from tests.support.retention import World, world_for
from tests.support.smtp import smtp_server

TRIALS = int(os.environ.get("CALLVAULT_SOAK_TRIALS", "300"))
SEED = int(os.environ.get("CALLVAULT_SOAK_SEED", "1"))


@pytest.fixture()
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "a")


def test_soak_ingest_kills(world: World, tmp_path: Path) -> None:
    crash_ingest(world, tmp_path, trials=TRIALS, seed=SEED).report()


def test_soak_sweep_kills(world: World) -> None:
    crash_sweep(world, trials=TRIALS // 2, seed=SEED).report()


def test_soak_upload_kills(world: World) -> None:
    """The HTTP server killed mid-body (even trials) and mid-commit (odd trials)."""
    crash_upload(world, trials=TRIALS, seed=SEED).report()


def test_soak_restore_then_sweep_kills(world: World, tmp_path: Path) -> None:
    """A restore of an older backup, then a sweep killed at a random point: erased calls stay erased."""
    crash_restore_sweep(world, tmp_path, trials=TRIALS // 2, seed=SEED).report()


def test_soak_mail_kills(world: World) -> None:
    with smtp_server() as sink:
        crash_mail(world, sink, trials=TRIALS, seed=SEED).report()


def test_soak_power_loss(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """RELIABILITY.md's 100 power-loss runs: CALLVAULT_SOAK_TRIALS=100 (cuts rotate crash/torn-seq/torn-op)."""
    from tests.reliability.powerloss import power_loss_ingest, world_on_lossy_disk

    (tmp_path / "work").mkdir()
    with world_on_lossy_disk(request, tmp_path) as (world, fs):
        power_loss_ingest(world, fs, tmp_path / "work", trials=TRIALS, seed=SEED).report()
