"""Notify's background work: sending the outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callvault.jobs.registry import job
from callvault.notify.service import SmtpSettings, send_due

if TYPE_CHECKING:
    from callvault.runtime import Runtime


@job("notify.send_mail", every_seconds=15)
def send_mail(runtime: Runtime) -> int:
    """Send due mails from the outbox over SMTP, retrying failures with backoff."""
    return send_due(runtime.db, SmtpSettings.from_env(runtime.settings.env), clock=runtime.clock,
                    keyring=runtime.keyring)
