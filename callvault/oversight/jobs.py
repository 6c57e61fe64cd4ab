"""Oversight's background work: misuse detection and policy review reminders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callvault.jobs.registry import job
from callvault.notify.service import SmtpSettings
from callvault.oversight import policy_lifecycle
from callvault.oversight import service as oversight
from callvault.oversight.detection import run_detection
from callvault.policy import service as policy_service

if TYPE_CHECKING:
    from callvault.runtime import Runtime


@job("oversight.detect_misuse", every_seconds=600)
def detect_misuse(runtime: Runtime) -> int:
    """Run the misuse detection rules over yesterday's and today's audit entries; raise reports."""
    domain = SmtpSettings.from_env(runtime.settings.env).mail_domain
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
        return len(run_detection(session, policy=policy, mail_domain=domain, clock=runtime.clock))


@job("oversight.policy_review_reminders", every_seconds=6 * 3600)
def policy_review_reminders(runtime: Runtime) -> int:
    """Mail the administrators when the policy's review is due within 30 days, and when it is overdue."""
    domain = SmtpSettings.from_env(runtime.settings.env).mail_domain
    with runtime.db.unit_of_work() as session:
        return policy_lifecycle.send_review_reminders(session, mail_domain=domain, clock=runtime.clock)


@job("oversight.overdue_misuse_reports", every_seconds=3600)
def overdue_misuse_reports(runtime: Runtime) -> int:
    """Mail the recipients once when a misuse or breach report passes ``misuse.report_deadline_days``."""
    domain = SmtpSettings.from_env(runtime.settings.env).mail_domain
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
        return oversight.mail_overdue(session, policy=policy, mail_domain=domain, clock=runtime.clock)
