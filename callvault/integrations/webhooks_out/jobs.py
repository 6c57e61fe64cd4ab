"""Outgoing webhooks' background work: posting the outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callvault.integrations.webhooks_out.service import deliver_due
from callvault.jobs.registry import job

if TYPE_CHECKING:
    from callvault.runtime import Runtime


@job("webhooks.deliver", every_seconds=10)
def deliver(runtime: Runtime) -> int:
    """Post due webhook deliveries, retrying failures with exponential backoff."""
    return deliver_due(runtime.db, runtime.keyring, clock=runtime.clock)
