"""Quality review jobs: the scheduled random sample (B8) and the training clips' retention and consent sweep (A6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from callvault.jobs.registry import job
from callvault.policy import service as policy_service
from callvault.quality import sampling, training

if TYPE_CHECKING:
    from callvault.runtime import Runtime


@job("quality.sample", every_seconds=3600)
def sample_due(runtime: Runtime) -> int:
    """Draw the last complete period's random review sample, once per policy and period."""
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            drawn = sampling.run_due(session, policy=policy, clock=runtime.clock)
            return 0 if drawn is None else len(drawn.selected)
    except IntegrityError:  # another worker node drew the same period first (unique schedule_key)
        return 0


@job("quality.clips", every_seconds=600)
def sweep_clips(runtime: Runtime) -> int:
    """Destroy training clips past their retention or whose employee withdrew consent."""
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
        keys = training.sweep(session, policy=policy, keyring=runtime.keyring, clock=runtime.clock)
    training.delete_blobs(runtime.store, keys)
    return len(keys)
