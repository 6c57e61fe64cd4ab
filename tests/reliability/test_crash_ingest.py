"""Bounded crash-consistency runs (SIGKILL at random points); the long form is tests/soak/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.crash import crash_ingest, crash_mail, crash_restore_sweep, crash_sweep
from tests.support.retention import World, world_for
from tests.support.smtp import smtp_server


@pytest.fixture()
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "a")


def test_every_acknowledged_recording_survives_kill_9_during_ingest(world: World, tmp_path: Path) -> None:
    tally = crash_ingest(world, tmp_path, trials=20, seed=11)
    tally.report()
    assert tally.killed >= 8 and tally.counts["acknowledged"] > 0


def test_every_acknowledged_recording_survives_kill_9_during_bulk_ingest(world: World, tmp_path: Path) -> None:
    """``ingest_many`` shares transactions and writes blobs on several threads; a kill anywhere in it
    still leaves each recording complete (and acknowledged only then) or gone after the repair pass."""
    tally = crash_ingest(world, tmp_path, trials=12, seed=14, mode="ingest_many")
    tally.report()
    assert tally.killed >= 5 and tally.counts["acknowledged"] > 0


def test_a_retention_sweep_killed_anywhere_leaves_each_recording_intact_or_fully_destroyed(world: World) -> None:
    tally = crash_sweep(world, trials=10, seed=12)
    tally.report()
    assert tally.killed >= 4


def test_a_mail_sender_killed_mid_send_loses_no_mail_and_records_every_duplicate(world: World) -> None:
    with smtp_server() as sink:
        tally = crash_mail(world, sink, trials=10, seed=13)
    tally.report()
    assert tally.killed >= 4


def test_a_sweep_killed_after_a_restore_of_an_older_backup_leaves_every_erased_call_erased(
        world: World, tmp_path: Path) -> None:
    """Issue 24 finding 4 under kill -9: restored rows, search terms and blobs of erased calls are destroyed
    again by the sweep that follows the restore, however often it is killed."""
    tally = crash_restore_sweep(world, tmp_path, trials=4, seed=15)
    tally.report()
    assert tally.killed >= 2 and tally.counts["search_terms_restored"] == 12
