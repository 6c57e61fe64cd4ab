"""The background workers that ``callvault serve`` runs beside the web server on a single node.

Why: a new install is one machine, and a product whose mail, transcripts, checkpoints, samples and
misuse detection only happen when somebody also remembers ``callvault worker`` looks broken (issue 27).
So ``serve`` supervises ``callvault worker`` children (``core.supervisor``): the same job code as a
worker node, in processes of its own so a transcription never takes the web server's interpreter.

The queues: one child runs every job except transcription; ``streams`` more children run only
transcription, one model each with one CPU thread (``CALLVAULT_ASR_THREADS``, default 1), because on
this kind of CPU one stream per core transcribes more than one model with several threads
(docs/transcription.md). Several nodes stay safe: every job claims its work from the database (a
conditional UPDATE, or ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so workers on two nodes, or a
``serve`` beside ``callvault worker`` nodes, never handle one item twice. Scale-out deployments run
``serve --no-workers`` and their own worker nodes (deploy/).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from callvault.core.errors import ConfigurationError
from callvault.core.supervisor import ChildSupervisor
from callvault.jobs.registry import all_jobs

TRANSCRIPTION_PREFIX = "transcription."
STREAMS_VARIABLE = "CALLVAULT_TRANSCRIPTION_STREAMS"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def transcription_streams(env: Mapping[str, str], requested: int | None = None) -> int:
    """How many transcription children to run: ``requested``, else ``CALLVAULT_TRANSCRIPTION_STREAMS``,
    else one per usable core. 0 runs none (transcription then waits for a ``callvault worker``)."""
    if requested is not None:
        return requested
    raw = env.get(STREAMS_VARIABLE, "").strip()
    if not raw:
        return usable_cores()
    if not raw.isdigit():
        raise ConfigurationError(f"{STREAMS_VARIABLE} must be a whole number (0 or more), not {raw!r}")
    return int(raw)


def worker_queues(streams: int) -> list[tuple[str, list[str]]]:
    """(name, job names) per child: the general queue, then one per transcription stream."""
    names = sorted(all_jobs())
    transcription = [n for n in names if n.startswith(TRANSCRIPTION_PREFIX)]
    general = [n for n in names if n not in transcription]
    return [("background worker", general),
            *((f"transcription worker {i + 1}", transcription) for i in range(streams))]


def start_workers(data_dir: Path, *, streams: int, env: Mapping[str, str] | None = None) -> list[ChildSupervisor]:
    """Start the supervised worker children (see the module docstring); the caller stops them."""
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("CALLVAULT_ASR_THREADS", "1")
    supervisors = []
    for name, jobs in worker_queues(streams):
        if not jobs:
            continue
        args = ["worker", "--data-dir", str(data_dir), *(a for j in jobs for a in ("--job", j))]
        supervisor = ChildSupervisor(args, name=name, env=child_env, final_codes=(2, 3))
        supervisor.start()
        supervisors.append(supervisor)
    return supervisors


def stop_workers(supervisors: list[ChildSupervisor]) -> None:
    """SIGTERM every child at once, then wait for each (SIGKILL after its timeout)."""
    for supervisor in supervisors:
        supervisor.terminate()
    for supervisor in supervisors:
        supervisor.stop()
