"""Retention's background work: the sweep, on every worker (rows are claimed, never taken twice)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callvault.jobs.registry import job
from callvault.retention.sweep import sweep as run_sweep

if TYPE_CHECKING:
    from callvault.runtime import Runtime


@job("retention.sweep", every_seconds=3600)
def sweep(runtime: Runtime) -> int:
    """Destroy recordings whose retention date has come (crypto-shred, delete blob, keep a record)."""
    result = run_sweep(db=runtime.db, store=runtime.store, keyring=runtime.keyring, clock=runtime.clock,
                       actor="system")
    return result.destroyed + result.resumed + result.reapplied
