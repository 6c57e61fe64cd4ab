"""Capture's background work: removing what crashed ingests left behind."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from callvault.capture.ingest import reap_stale_ingests
from callvault.jobs.registry import job

if TYPE_CHECKING:
    from callvault.runtime import Runtime


@job("capture.reap_stale_ingests", every_seconds=300)
def reap(runtime: Runtime) -> int:
    """Remove partial ingests (pending rows, their blobs, half-written temporaries) older than the threshold."""
    removed = reap_stale_ingests(db=runtime.db, store=runtime.store,
                                 older_than=timedelta(seconds=runtime.settings.stale_ingest_seconds),
                                 clock=runtime.clock)
    # Temporaries of blob writes a killed process left (LocalBlobStore's .tmp/*.part; S3 has none).
    cleanup = getattr(runtime.store, "cleanup_temp", None)
    temps = cleanup(runtime.settings.stale_ingest_seconds) if cleanup is not None else 0
    return len(removed) + temps


@job("capture.apply_deferred_controls", every_seconds=60)
def apply_deferred_controls(runtime: Runtime) -> int:
    """Apply stop/pause/personal events a legal hold held back, once no hold covers the recording."""
    from callvault.capture.control import apply_deferred

    return apply_deferred(db=runtime.db, store=runtime.store, keyring=runtime.keyring, clock=runtime.clock)


@job("capture.reconcile_call_records", every_seconds=3600)
def reconcile_call_records(runtime: Runtime) -> int:
    """Reconcile the PBX's call records named in CALLVAULT_RECONCILE_CDR (capture.scheduled_reconcile)."""
    from callvault.capture.scheduled_reconcile import run

    return run(runtime)
