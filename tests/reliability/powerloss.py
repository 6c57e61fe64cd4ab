"""Power loss during ingest (RELIABILITY.md scenario 2): the data directory (and the SQLite database)
on a file system that forgets unsynced writes, the ingest killed at a random point, then the power cut
(``crash``: every unsynced write lost; ``torn-seq``/``torn-op``: a random part of them written).

After each cut the file system is mounted again (the reboot), ``callvault check --repair`` runs, and
the ingest invariants of the SIGKILL harness must hold: every acknowledged recording present and
bit-exact, nothing pending, no orphan blob or temporary, the audit chain intact.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from callvault.runtime import build_runtime
from tests.reliability.crash import _write_jobs, repair_and_check_ingest
from tests.reliability.harness import Killer, Tally, assert_chain_intact
from tests.support import lossyfs
from tests.support.lossyfs import LossyMount
from tests.support.retention import World, make_world

MODES = ("crash", "torn-seq", "torn-op")


@contextmanager
def world_on_lossy_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[World, LossyMount]]:
    """A world whose data directory (and SQLite database) lives on the lossy file system."""
    from tests.conftest import POLICY_A, fresh_database

    if reason := lossyfs.available():
        pytest.skip(reason)
    with lossyfs.lossy_mount(tmp_path / "disk", tmp_path / "mnt") as fs, \
            fresh_database(request.config.getoption("--db"), tmp_path / "mnt") as url:
        world = make_world(tmp_path / "mnt" / "data", url, POLICY_A, "a")
        try:
            yield world, fs
        finally:
            world.close()


def power_loss_ingest(world: World, fs: LossyMount, work: Path, *, trials: int, seed: int) -> Tally:
    tally = Tally("power loss during ingest (unsynced writes lost or torn)")
    killer = Killer(world.settings.data_dir, world.settings.database_url, seed=seed)
    sources: dict[str, bytes] = {}
    acked: dict[str, str] = {}
    try:
        for trial in range(trials):
            jobs = _write_jobs(world, work, trial, sources)
            world.runtime.close()  # the test process holds nothing open on the disk that loses power
            lines, killed = killer.run("ingest", str(jobs))
            acked.update({line.split()[1]: line.split()[2] for line in lines if line.startswith("ACK ")})
            mode = MODES[trial % len(MODES)]
            persisted, unsynced = fs.cut_power(mode, seed * 1000 + trial)
            fs.start()  # the reboot
            world.runtime = build_runtime(world.settings, clock=world.clock)
            found = repair_and_check_ingest(world, sources, acked)
            tally.trials += 1
            tally.killed += killed
            tally.finished += not killed
            tally.counts[f"cut_{mode}"] += 1
            tally.counts["unsynced_writes_at_cut"] += unsynced
            tally.counts["torn_writes_persisted"] += persisted
            tally.counts["reaped"] += found["reaped"]
        tally.counts["acknowledged"] = len(acked)
        tally.counts["available"] = found["available"]
        tally.counts["audit_entries"] = assert_chain_intact(world.runtime.db)
    finally:
        killer.close()
    return tally
