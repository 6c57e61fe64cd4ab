"""Catalog upkeep: fresh planner statistics so searches keep using the right index."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callvault.jobs.registry import job

if TYPE_CHECKING:
    from callvault.runtime import Runtime


@job("recordings.analyze", every_seconds=6 * 3600)
def analyze(runtime: Runtime) -> int:
    """Refresh query-planner statistics (SQLite has no autovacuum/autoanalyze; PostgreSQL does).

    Without them SQLite walks the time index for "calls from this number" instead of the number
    index: bench/search.py measured ~300 ms against ~1 ms on 200,000 recordings.
    """
    if runtime.db.dialect != "sqlite":
        return 0
    with runtime.db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    return 1
