"""kill -9 at random points of a folder import: afterwards every file is imported exactly once, nothing lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from callvault.capture.imports import pbx
from callvault.capture.imports.models import ImportState
from callvault.capture.ingest import reap_stale_ingests
from callvault.recordings.models import Recording, RecordingState
from tests.capture_imports.support import at, ledger, name_time, recent, settings, stored, tone_wav, uniqueid
from tests.reliability.harness import assert_chain_intact
from tests.support.env import CallvaultEnv

REPO = Path(__file__).resolve().parents[2]
FILES = 30


def _trial(env: CallvaultEnv, root: Path, delay: float) -> bool:
    proc = subprocess.Popen([sys.executable, "-m", "tests.capture_imports.pbx_child", str(env.data_dir),
                             env.settings.database_url, str(root)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    proc.stdin.write("GO\n")
    proc.stdin.flush()
    try:
        proc.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        killed = True
    _, errors = proc.communicate(timeout=60)
    assert killed or proc.returncode == 0, errors[-2000:]
    return killed


def test_kill_9_during_folder_import_neither_duplicates_nor_loses(isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    env, root = isolated_env, tmp_path / "monitor"
    start = recent(ZoneInfo("America/Toronto"), 9)  # no CDR: the UNIQUEID's epoch is the call's start
    ids = [uniqueid(start + timedelta(seconds=i), i) for i in range(FILES)]
    for i, uid in enumerate(ids):
        tone_wav(root / f"{start:%Y/%m/%d}/in-2001-6135550123-{name_time(start)}-{uid}.wav",
                 freqs=(300 + 20 * i,), seconds=6, age=3600)
    rng, killed = random.Random(7), 0
    for _ in range(8):
        killed += _trial(env, root, rng.uniform(0.05, 0.6))
    assert killed >= 4, "the kills must land while importing, or this test proves nothing"

    # Recovery as the worker does it later: the reaper clears half-done ingests, stale claims are taken over.
    later = at(env.runtime, datetime.now(UTC) + timedelta(hours=2))
    reap_stale_ingests(db=env.runtime.db, store=env.runtime.store, older_than=timedelta(hours=1), clock=later.clock)
    conf = settings(quiet_seconds=1, retry_seconds=1)
    pbx.scan_folder(later, flavour="asterisk", root=root, cdr_file=None, settings=conf)
    pbx.import_ready(later, settings=conf, root=root)

    rows = ledger(env.runtime, root)
    assert len(rows) == FILES and {r.state for r in rows} == {ImportState.IMPORTED}, \
        [(r.rel_path, r.state, r.reason) for r in rows if r.state != ImportState.IMPORTED]
    for i, row in enumerate(sorted(rows, key=lambda r: r.rel_path)):
        [rec] = stored(env.runtime, f"asterisk:{ids[i]}")  # decrypts and checks the SHA-256
        assert row.recording_id == rec.row.id and row.source_deleted
    with env.runtime.db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Recording).where(
            Recording.state == RecordingState.PENDING)) == 0
    assert not list(root.rglob("*.wav")), "every imported plaintext source is gone"
    assert_chain_intact(env.runtime.db)
