"""Access-request jobs: lapse and expiry records, and reminders for requests waiting too long."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callvault.access import service
from callvault.jobs.registry import job

if TYPE_CHECKING:
    from callvault.runtime import Runtime


@job("access.expiries", every_seconds=300)
def record_expiries(runtime: Runtime) -> int:
    """Audit grants that ended and lapse requests nobody decided."""
    with runtime.db.unit_of_work() as session:
        return service.record_expiries(session, clock=runtime.clock)


@job("access.reminders", every_seconds=3600)
def remind(runtime: Runtime) -> int:
    """Flag access requests waiting longer than a day for their approvers."""
    with runtime.db.unit_of_work() as session:
        return len(service.remind_waiting(session, clock=runtime.clock))


@job("access.emergency_reviews", every_seconds=3600)
def emergency_reviews(runtime: Runtime) -> int:
    """Report emergency declarations whose review is overdue (``emergency_access.review_within_days``)."""
    from callvault.access import emergency
    from callvault.policy import service as policy_service

    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
        return emergency.report_overdue_reviews(session, policy=policy, clock=runtime.clock)
