"""Subject requests' background work: reminders before the due date, overdue flags, purging unconfirmed
requests.

Reminder points are working days before the due date, from ``CALLVAULT_SUBJECT_REMINDER_DAYS``
(comma-separated, default ``3,1``); each point is mailed once per request to the team (the roles that
may use ``subject_access``). A request past its due time is flagged overdue once (audit + mail).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from callvault.core.errors import ConfigurationError
from callvault.jobs.registry import job
from callvault.notify.service import SmtpSettings
from callvault.policy import service as policy_service
from callvault.subject_requests import service

if TYPE_CHECKING:
    from callvault.runtime import Runtime

DEFAULT_POINTS = (3, 1)


def reminder_points(env: Mapping[str, str]) -> tuple[int, ...]:
    text = env.get("CALLVAULT_SUBJECT_REMINDER_DAYS", "").strip()
    if not text:
        return DEFAULT_POINTS
    try:
        points = tuple(sorted({int(part) for part in text.split(",") if part.strip()}, reverse=True))
    except ValueError:
        raise ConfigurationError(f"CALLVAULT_SUBJECT_REMINDER_DAYS must be whole numbers like 3,1, not {text!r}"
                                 ) from None
    if any(p < 0 or p > 60 for p in points):
        raise ConfigurationError("CALLVAULT_SUBJECT_REMINDER_DAYS: each point is 0-60 working days before due")
    return points


@job("subject_requests.reminders", every_seconds=900)
def reminders(runtime: Runtime) -> int:
    """Remind the team of subject requests coming due, flag overdue ones, purge unconfirmed ones."""
    env = runtime.settings.env
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
        if not policy.subject_requests.enabled:
            return 0
        handled = service.remind(session, policy=policy, points=reminder_points(env),
                                 mail_domain=SmtpSettings.from_env(env).mail_domain, clock=runtime.clock)
        handled += service.purge_unverified(session, clock=runtime.clock)
    return handled
