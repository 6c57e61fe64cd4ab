"""Audit's background work: publishing signed checkpoints at a fixed interval."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callvault.audit.anchor import CheckpointAnchor, publish_anchored
from callvault.audit.signing import load_signer, signing_key_path
from callvault.jobs.registry import job
from callvault.notify.service import SmtpSettings

if TYPE_CHECKING:
    from callvault.runtime import Runtime

CHECKPOINT_EVERY_SECONDS = 60
"""RELIABILITY: checkpoint interval <= 60 s. Affordable because a checkpoint reads only the entries
added since the last one (``checkpoints.REWRITE_CHECK_EVERY_SECONDS``: the hourly full recomputation)."""
MAX_QUIET_SECONDS = 24 * 3600
"""Even with no new entries, a fresh checkpoint a day shows the log was there, unchanged."""


@job("audit.checkpoint", every_seconds=CHECKPOINT_EVERY_SECONDS)
def checkpoint(runtime: Runtime) -> int:
    """Sign and store the current Merkle tree head when the log grew (or daily when it did not).

    Refused, with an alarm, when the log no longer extends the checkpoint anchored outside the
    database (``callvault.audit.anchor``): the job then fails with "history rewritten: ...". Refused too
    when the entries to sign do not verify (a deleted row, a row edited without re-hashing): the tamper
    alarm is raised (``callvault.audit.alarm``) and the job fails until an administrator acknowledges it.
    """
    signer = load_signer(signing_key_path(runtime.settings.key_dir, runtime.settings.env))
    cp = publish_anchored(runtime.db, signer=signer, anchor=CheckpointAnchor(runtime.settings.anchor_dir),
                          clock=runtime.clock, actor="worker", only_if_grown=True,
                          max_quiet_seconds=MAX_QUIET_SECONDS,
                          mail_domain=SmtpSettings.from_env(runtime.settings.env).mail_domain)
    return 0 if cp is None else 1
