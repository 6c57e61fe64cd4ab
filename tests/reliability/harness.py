"""The SIGKILL harness shared by the bounded tests (tests/reliability) and the long form (tests/soak).

``Killer.run(mode, arg)`` starts ``tests.reliability.child`` (the next child is started ahead, so
its imports overlap the checks of the current trial), waits for ``READY``, says ``GO`` and sends
SIGKILL after a random delay drawn from ``[0, 1.3 x the longest complete run seen so far]``, so
kills land anywhere in the work and some runs finish. It returns the lines the child printed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from callvault.audit import service as audit
from callvault.core.db import Database

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Tally:
    """What a run tried and what survived, printed at the end of each suite."""

    name: str
    trials: int = 0
    killed: int = 0
    finished: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def report(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        line = (f"[reliability] {self.name}: {self.trials} trials, {self.killed} killed mid-run, "
                f"{self.finished} ran to completion; {extra}; all invariants held")
        print(line)
        return line


class Killer:
    def __init__(self, data_dir: Path, db_url: str, *, seed: int) -> None:
        self.data_dir, self.db_url = data_dir, db_url
        self.rng = random.Random(seed)
        self.estimate: float | None = None
        """How long a whole run takes on this machine now: measured by the first run, which is never cut
        (a guessed constant left every kill of a batch landing before its end on a busy machine), then
        raised after each kill and reset by each run that finishes."""
        self._ready: dict[tuple[str, str], subprocess.Popen[str]] = {}

    def _spawn(self, mode: str, arg: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.child", mode, str(self.data_dir), self.db_url, arg],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"})
        return proc

    def prepare(self, mode: str, arg: str) -> None:
        """Start a child for a later ``run(mode, arg)`` now (its imports overlap other work)."""
        if (mode, arg) not in self._ready:
            self._ready[(mode, arg)] = self._spawn(mode, arg)

    def run(self, mode: str, arg: str, *, kill: bool = True) -> tuple[list[str], bool]:
        """Run one child; returns (stdout lines, killed?)."""
        proc = self._ready.pop((mode, arg), None) or self._spawn(mode, arg)
        assert proc.stdin is not None and proc.stdout is not None
        first = proc.stdout.readline().strip()
        if first != "READY":
            proc.kill()
            raise AssertionError(f"child did not start: {first!r} {proc.stderr.read() if proc.stderr else ''}")
        started = time.monotonic()
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        killed = False
        if kill and self.estimate is not None:
            delay = self.rng.uniform(0, self.estimate * 1.3)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
        out, errors = proc.communicate(timeout=120)
        if killed and self.estimate is not None:  # drift up until some runs finish: kills spread over the run
            self.estimate *= 1.15
        else:
            self.estimate = time.monotonic() - started
            assert proc.returncode == 0, f"child failed (rc {proc.returncode}):\n{errors[-3000:]}"
        return [line for line in out.splitlines() if line], killed

    def close(self) -> None:
        for proc in self._ready.values():
            proc.kill()
            proc.communicate()
        self._ready.clear()


def assert_chain_intact(db: Database) -> int:
    with db.unit_of_work() as session:
        result = audit.verify_chain(session)
        assert result.intact, f"audit chain broken: {result}"
        return result.entries_checked
