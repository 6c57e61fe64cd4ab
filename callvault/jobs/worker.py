"""The worker loop behind ``callvault worker``: runs each registered job on its interval.

No schedule state is kept anywhere but in this process's memory of "when did I last run X", which
is harmless to lose: jobs are idempotent and claim their work from the database, so two workers
(or a restarted one) at worst run a job twice with nothing to do the second time.
Stops cleanly on SIGTERM/SIGINT after the job in progress.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType

from callvault.core.errors import CallvaultError
from callvault.jobs.registry import Job, all_jobs
from callvault.runtime import Runtime

log = logging.getLogger("callvault.worker")


def run_once(runtime: Runtime, jobs: Iterable[Job]) -> dict[str, int]:
    """Run each job once; a failing job is logged and does not stop the others."""
    results: dict[str, int] = {}
    for item in jobs:
        started = time.monotonic()
        try:
            results[item.name] = item.run(runtime)
            log.info("job %s handled %d item(s) in %.2fs", item.name, results[item.name],
                     time.monotonic() - started)
        except CallvaultError as exc:
            log.error("job %s failed: %s", item.name, exc.message)
            results[item.name] = -1
        except Exception:
            log.exception("job %s crashed", item.name)
            results[item.name] = -1
    return results


def run_forever(runtime: Runtime, *, only: set[str] | None = None, tick_seconds: float = 1.0) -> None:
    """Loop until SIGTERM/SIGINT, running each job when its interval has passed."""
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current job, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    jobs = [j for j in all_jobs().values() if only is None or j.name in only]
    next_due = {j.name: 0.0 for j in jobs}
    while not stop.is_set():
        now = time.monotonic()
        due = [j for j in jobs if next_due[j.name] <= now]
        if due:
            run_once(runtime, due)
            for j in due:
                next_due[j.name] = time.monotonic() + j.interval_seconds
        stop.wait(tick_seconds)
