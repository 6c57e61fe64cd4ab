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


@dataclass
class RewrapReport:
    current_kek: str
    rewrapped: dict[str, int] = field(default_factory=lambda: {"data_keys": 0, "mfa_credentials": 0,
                                                               "webhook_subscriptions": 0})
    already_current: dict[str, int] = field(default_factory=lambda: {"data_keys": 0, "mfa_credentials": 0,
                                                                     "webhook_subscriptions": 0})
    destroyed_skipped: int = 0
    batches: int = 0


def usage(session: Session, kek_id: str) -> dict[str, int]:
    """How many wrapped secrets still name ``kek_id``, per table."""
    return {
        "data_keys": session.scalar(select(func.count()).select_from(DataKey).where(DataKey.kek_id == kek_id)) or 0,
        "mfa_credentials": session.scalar(
            select(func.count()).select_from(MfaCredential).where(MfaCredential.kek_id == kek_id)) or 0,
        "webhook_subscriptions": session.scalar(
            select(func.count()).select_from(WebhookSubscription).where(WebhookSubscription.kek_id == kek_id)) or 0,
    }


def kek_usage(session: Session) -> dict[str, int]:
    """Every KEK id named by a wrapped secret, with how many secrets name it."""
    counts: dict[str, int] = {}
    for model in (DataKey, MfaCredential, WebhookSubscription):
        for kek_id, n in session.execute(select(model.kek_id, func.count()).group_by(model.kek_id)):
            counts[kek_id] = counts.get(kek_id, 0) + n
    return counts


def rewrap_all(db: Database, keyring: Keyring, *, actor: str, batch_size: int = DEFAULT_BATCH,
               clock: Clock = system_clock, on_batch: Callable[[RewrapReport], None] | None = None) -> RewrapReport:
    """Rewrap every data key and MFA secret to the current KEK; see the module contract."""
    keyring.refresh()  # the rotation was most likely done by another process
    report = RewrapReport(current_kek=keyring.current_id)
    _rewrap_table(db, keyring, report, "data_keys", actor=actor, batch_size=batch_size, clock=clock,
                  on_batch=on_batch)
    _rewrap_table(db, keyring, report, "mfa_credentials", actor=actor, batch_size=batch_size, clock=clock,
                  on_batch=on_batch)
    _rewrap_webhook_secrets(db, keyring, report, actor=actor, clock=clock)
    return report


def _rewrap_webhook_secrets(db: Database, keyring: Keyring, report: RewrapReport, *, actor: str, clock: Clock) -> None:
    """A handful of rows: one transaction, one audit entry if anything moved."""
    with db.unit_of_work() as session:
        current = keyring.current_id
        moved: dict[str, int] = {}
        for sub in session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id).with_for_update()):
            if sub.kek_id == current:
                report.already_current["webhook_subscriptions"] += 1
                continue
            old = WrappedKey(kek_id=sub.kek_id, wrapped=sub.wrapped_secret)
            new = keyring.rewrap(old, f"webhook:{sub.id}")
            sub.kek_id, sub.wrapped_secret = new.kek_id, new.wrapped
            moved[old.kek_id] = moved.get(old.kek_id, 0) + 1
        if moved:
            report.rewrapped["webhook_subscriptions"] += sum(moved.values())
            audit.append(session, audit.AuditEvent(
                actor=actor, action="keys.rewrapped", object_type="kek", object_id=current,
                reason=f"rotation: {sum(moved.values())} webhook secrets rewrapped to the current key-encryption key",
                details={"table": "webhook_subscriptions", "from": moved, "to": current}), clock=clock)
            report.batches += 1


def _rewrap_table(db: Database, keyring: Keyring, report: RewrapReport, table: str, *, actor: str,
                  batch_size: int, clock: Clock, on_batch: Callable[[RewrapReport], None] | None) -> None:
    after = ""
    while True:
        with db.unit_of_work() as session:
            keyring.refresh()
            current = keyring.current_id
            if table == "data_keys":
                keys = list(session.scalars(
                    select(DataKey).where(DataKey.recording_id > after).order_by(DataKey.recording_id)
                    .limit(batch_size).with_for_update()))
                rows: list[tuple[str, str, object]] = [(k.recording_id, k.recording_id, k) for k in keys]
            else:
                creds = list(session.scalars(
                    select(MfaCredential).where(MfaCredential.user_id > after).order_by(MfaCredential.user_id)
                    .limit(batch_size).with_for_update()))
                rows = [(c.user_id, f"mfa:{c.user_id}", c) for c in creds]
            if not rows:
                return
            moved: dict[str, int] = {}
            for pk, binding, row in rows:
                after = pk
                if isinstance(row, DataKey):
                    old = WrappedKey(kek_id=row.kek_id, wrapped=row.wrapped_key)
                else:
                    assert isinstance(row, MfaCredential)
                    old = WrappedKey(kek_id=row.kek_id, wrapped=row.wrapped_secret)
                if old.kek_id == current:
                    report.already_current[table] += 1
                    continue
                try:
                    new = keyring.rewrap(old, binding)
                except NotFound:  # on the key-destruction list: the retention pass deletes it
                    report.destroyed_skipped += 1
                    continue
                if isinstance(row, DataKey):
                    row.kek_id, row.wrapped_key = new.kek_id, new.wrapped
                else:
                    assert isinstance(row, MfaCredential)
                    row.kek_id, row.wrapped_secret = new.kek_id, new.wrapped
                moved[old.kek_id] = moved.get(old.kek_id, 0) + 1
            if moved:
                report.rewrapped[table] += sum(moved.values())
                audit.append(session, audit.AuditEvent(
                    actor=actor, action="keys.rewrapped", object_type="kek", object_id=current,
                    reason=f"rotation: {sum(moved.values())} {table.replace('_', ' ')} rewrapped to the current "
                           "key-encryption key",
                    details={"table": table, "from": moved, "to": current}), clock=clock)
            report.batches += 1
        if on_batch is not None:
            on_batch(report)
