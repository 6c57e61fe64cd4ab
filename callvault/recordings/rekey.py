"""Key rotation: rewrapping every secret held under an old key-encryption key, then retiring it.

What the keyring wraps (``keyring.wrap(`` across callvault): each recording's data key
(``data_keys``, bound to the recording id) and each user's TOTP secret (``mfa_credentials``, bound
to ``mfa:<user id>``) and each outgoing webhook's signing secret (``webhook_subscriptions``, bound to
``webhook:<subscription id>``). Transcripts and CRM notes are sealed under keys *derived* from the data key,
so they follow their recording's data key and need nothing of their own.

Contracts:
- ``rewrap_all`` is online, idempotent and resumable: it pages through rows by primary key, locks
  each batch (``FOR UPDATE`` on PostgreSQL), rewraps those not already under the current KEK and
  commits batch by batch, with one audit entry per batch. A killed run loses at most its open batch;
  rerunning it finishes the job. A data key already on the key-destruction list is left alone (the
  next retention pass deletes it).
- ``usage`` counts what still names a KEK; ``callvault keys retire`` refuses while it is not zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import NotFound
from callvault.identity.models import MfaCredential
from callvault.integrations.webhooks_out.models import WebhookSubscription
from callvault.recordings.models import DataKey
from callvault.storage.keys import Keyring, WrappedKey

DEFAULT_BATCH = 500


@dataclass(frozen=True)
class WrappedSecrets:
    """One table of keyring-wrapped secrets: its primary key, the wrapped column and the binding
    (associated data) each secret was wrapped with."""

    table: str
    model: Any
    pk: str
    wrapped: str
    binding: Callable[[str], str]


SECRETS = (
    WrappedSecrets("data_keys", DataKey, "recording_id", "wrapped_key", lambda pk: pk),
    WrappedSecrets("mfa_credentials", MfaCredential, "user_id", "wrapped_secret", lambda pk: f"mfa:{pk}"),
    WrappedSecrets("webhook_subscriptions", WebhookSubscription, "id", "wrapped_secret", lambda pk: f"webhook:{pk}"),
)
"""Everything the keyring wraps; a new kind of wrapped secret is added here and nowhere else."""


def _per_table() -> dict[str, int]:
    return {spec.table: 0 for spec in SECRETS}


@dataclass
class RewrapReport:
    current_kek: str
    rewrapped: dict[str, int] = field(default_factory=_per_table)
    already_current: dict[str, int] = field(default_factory=_per_table)
    destroyed_skipped: int = 0
    batches: int = 0


def usage(session: Session, kek_id: str) -> dict[str, int]:
    """How many wrapped secrets still name ``kek_id``, per table."""
    return {spec.table: session.scalar(select(func.count()).select_from(spec.model)
                                       .where(spec.model.kek_id == kek_id)) or 0 for spec in SECRETS}


def kek_usage(session: Session) -> dict[str, int]:
    """Every KEK id named by a wrapped secret, with how many secrets name it."""
    counts: dict[str, int] = {}
    for spec in SECRETS:
        for kek_id, n in session.execute(select(spec.model.kek_id, func.count()).group_by(spec.model.kek_id)):
            counts[kek_id] = counts.get(kek_id, 0) + n
    return counts


def rewrap_all(db: Database, keyring: Keyring, *, actor: str, batch_size: int = DEFAULT_BATCH,
               clock: Clock = system_clock, on_batch: Callable[[RewrapReport], None] | None = None) -> RewrapReport:
    """Rewrap every wrapped secret (``SECRETS``) to the current KEK; see the module contract."""
    keyring.refresh()  # the rotation was most likely done by another process
    report = RewrapReport(current_kek=keyring.current_id)
    for spec in SECRETS:
        _rewrap_table(db, keyring, report, spec, actor=actor, batch_size=batch_size, clock=clock, on_batch=on_batch)
    return report


def _rewrap_table(db: Database, keyring: Keyring, report: RewrapReport, spec: WrappedSecrets, *, actor: str,
                  batch_size: int, clock: Clock, on_batch: Callable[[RewrapReport], None] | None) -> None:
    after = ""
    pk_column = getattr(spec.model, spec.pk)
    while True:
        with db.unit_of_work() as session:
            keyring.refresh()
            current = keyring.current_id
            rows = list(session.scalars(select(spec.model).where(pk_column > after).order_by(pk_column)
                                        .limit(batch_size).with_for_update()))
            if not rows:
                return
            moved: dict[str, int] = {}
            for row in rows:
                after = getattr(row, spec.pk)
                old = WrappedKey(kek_id=row.kek_id, wrapped=getattr(row, spec.wrapped))
                if old.kek_id == current:
                    report.already_current[spec.table] += 1
                    continue
                try:
                    new = keyring.rewrap(old, spec.binding(after))
                except NotFound:  # on the key-destruction list: the retention pass deletes it
                    report.destroyed_skipped += 1
                    continue
                row.kek_id = new.kek_id
                setattr(row, spec.wrapped, new.wrapped)
                moved[old.kek_id] = moved.get(old.kek_id, 0) + 1
            if moved:
                report.rewrapped[spec.table] += sum(moved.values())
                audit.append(session, audit.AuditEvent(
                    actor=actor, action="keys.rewrapped", object_type="kek", object_id=current,
                    reason=f"rotation: {sum(moved.values())} {spec.table.replace('_', ' ')} rewrapped to the "
                           "current key-encryption key",
                    details={"table": spec.table, "from": moved, "to": current}), clock=clock)
            report.batches += 1
        if on_batch is not None:
            on_batch(report)
