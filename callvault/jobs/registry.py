"""The worker's job registry. Job bodies live in each domain's ``jobs.py`` and register here.

A job is a function ``(runtime) -> int`` (how many items it handled) that is safe to run on any
number of worker nodes at once: it claims work from database state (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, a conditional UPDATE that must change one row elsewhere) and is idempotent, so a
worker killed at any moment loses nothing and a rerun repeats nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callvault.runtime import Runtime

JobFn = Callable[["Runtime"], int]


@dataclass(frozen=True)
class Job:
    """A named periodic job."""

    name: str
    interval_seconds: float
    run: JobFn
    description: str = ""


_JOBS: dict[str, Job] = {}


def job(name: str, *, every_seconds: float, description: str = "") -> Callable[[JobFn], JobFn]:
    """Decorator: register ``fn`` as the periodic job ``name``."""

    def register(fn: JobFn) -> JobFn:
        summary = description or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        _JOBS[name] = Job(name=name, interval_seconds=every_seconds, run=fn, description=summary)
        return fn

    return register


def all_jobs() -> dict[str, Job]:
    """Every registered job, importing the domain modules that define them."""
    import callvault.jobs.builtin  # noqa: F401  (imports each domain's jobs module)

    return dict(_JOBS)
