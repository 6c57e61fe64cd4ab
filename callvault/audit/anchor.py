"""The audit log's witness outside the database: the last checkpoint published, kept as a file.

Why: checkpoints live in the database they vouch for. Restore an older database backup (or roll the
log back by hand, signing key or not) and the database holds a shorter, self-consistent history
whose checkpoints all verify; nothing inside it can tell (RELIABILITY scenario 8, "rollback or split
view"). So every checkpoint, once committed, is also written to ``<anchor dir>/latest-checkpoint.json``
(``CALLVAULT_AUDIT_ANCHOR_DIR``), and the next one is published only if the log still extends it:
same or more entries, and an RFC 9162 consistency proof from the anchored root to the new root.
When it does not, nothing is published, an ``audit.history_rewritten`` entry with decision
``alarm`` is appended, a CRITICAL line is logged, and ``HistoryRewritten`` is raised (the CLI and
``worker --once`` exit 1). The comparison itself is ``checkpoints.rewrite_problem``.

The anchor file is only as independent as the place it is kept: by default it sits in the data
directory, which catches a restored or replaced database; on another host or a WORM share, it also
catches someone who controls the database server.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from callvault.audit import alarm
from callvault.audit import service as audit
from callvault.audit.checkpoints import HistoryRewritten, TrustedCheckpoint, checkpoint_dict, publish_checkpoint
from callvault.audit.signing import Signer
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import ConfigurationError
from callvault.storage._fs import write_atomic

log = logging.getLogger("callvault.audit")

ANCHOR_FILE = "latest-checkpoint.json"


class CheckpointAnchor:
    """The newest checkpoint this deployment published, in a file the database cannot roll back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / ANCHOR_FILE

    def latest(self) -> TrustedCheckpoint | None:
        """The anchored checkpoint, or None before the first one was published."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigurationError(f"the audit anchor {self.path} cannot be read: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"the audit anchor {self.path} is not JSON ({exc}); it was damaged or "
                                     "replaced: keep it for the investigation and move it aside") from exc
        return TrustedCheckpoint.from_json(data, where=str(self.path))

    def record(self, checkpoint: dict[str, Any]) -> None:
        """Keep ``checkpoint`` (``checkpoint_dict`` form) unless a newer one is already anchored.

        Written to a temporary file, fsynced and renamed over the old one, so a crash leaves the old
        or the new anchor, never half of one. Called only after the checkpoint is committed: an
        anchor ahead of the database would be a false alarm.
        """
        current = self.latest()
        if current is not None and current.seq >= checkpoint["seq"]:
            return  # another node anchored a newer one meanwhile
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, (json.dumps(checkpoint, indent=2, sort_keys=True) + "\n").encode(), mode=0o644)


def publish_anchored(
    db: Database, *, signer: Signer, anchor: CheckpointAnchor, clock: Clock = system_clock,
    actor: str = "system", only_if_grown: bool = False, max_quiet_seconds: float | None = None, full: bool = False,
    mail_domain: str = "localhost",
) -> dict[str, Any] | None:
    """Publish a checkpoint that must extend the anchored one, then anchor it; see the module docstring.

    Returns the checkpoint as anchored (``checkpoint_dict`` and ``head_hash``), or None when
    ``only_if_grown`` found nothing new. ``head_hash`` is the hash of the last entry covered, which
    the next checkpoint's entries must chain from (``checkpoints.REWRITE_CHECK_EVERY_SECONDS``);
    ``full`` recomputes the root from every entry whatever the time since the last full one.
    Entries that fail verification raise the tamper alarm (``callvault.audit.alarm``, mail addresses
    on ``mail_domain`` for accounts without one) and ``AuditTampered``; an open alarm, ``AlarmRaised``.
    """
    anchored = anchor.latest()
    try:
        with db.unit_of_work() as session:
            cp = publish_checkpoint(session, signer=signer, clock=clock, only_if_grown=only_if_grown,
                                    max_quiet_seconds=max_quiet_seconds, anchored=anchored, full=full)
            data = {**checkpoint_dict(cp), "head_hash": cp.head_hash} if cp is not None else None
    except HistoryRewritten as exc:
        raise_rewrite_alarm(db, exc, anchor=anchor, actor=actor, clock=clock)
        raise
    except alarm.AuditTampered as exc:
        alarm.raise_alarm(db, exc, actor=actor, mail_domain=mail_domain, clock=clock)
        raise
    if data is not None:
        anchor.record(data)
    return data


def raise_rewrite_alarm(db: Database, exc: HistoryRewritten, *, anchor: CheckpointAnchor, actor: str,
                        clock: Clock) -> None:
    """Put the refused checkpoint on the record: a CRITICAL log line and an audit entry (``alarm``)."""
    log.critical("%s (anchor %s)", exc.message, anchor.path)
    try:
        with db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=actor, action="audit.history_rewritten", decision="alarm", object_type="audit_log",
                object_id=str(exc.anchored_seq), reason=exc.message,
                details={"anchored_seq": exc.anchored_seq, "anchored_size": exc.anchored_size,
                         "log_size": exc.log_size, "anchor": str(anchor.path)}), clock=clock)
    except Exception:  # the log line above stands even if the database refuses
        log.exception("could not audit the history-rewritten alarm")
