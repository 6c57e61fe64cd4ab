"""``emit``: queue an event for every subscription that wants it, in the caller's transaction.

The outbox row exists exactly when the change that caused it was committed (a rolled-back ingest
emits nothing; a crash after commit loses nothing), and no queue lives in process memory. Payloads
carry identifiers, states and dates only: never audio, transcripts, notes or phone numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.core.clock import Clock, system_clock
from callvault.core.ids import new_id
from callvault.integrations.webhooks_out.models import DeliveryState, WebhookDelivery, WebhookSubscription

EVENT_TYPES: Final = {
    "recording.saved": "a recording was stored and is available",
    "recording.failed": "a call or upload could not be stored (nothing was kept)",
    "recording.gap": "a live recording was stored with audio missing (lost packets)",
    "recording.quarantined": "a recording arrived without consent evidence and was quarantined (A5, B2)",
    "recording.destroyed": "a recording was destroyed (retention, personal call, quarantine)",
    "subject_request.due_soon": "a caller's request for their recordings is coming due",
    "subject_request.overdue": "a caller's request for their recordings is past its due date",
    "misuse.reported": "a misuse report was raised (by a person or a detection rule, B12)",
}


def wants(subscription: WebhookSubscription, event_type: str) -> bool:
    return subscription.enabled and ("*" in subscription.events or event_type in subscription.events)


def emit(session: Session, event_type: str, data: Mapping[str, Any], *, clock: Clock = system_clock) -> int:
    """Queue ``event_type`` with ``data`` for each subscription that wants it; returns how many rows."""
    return emit_many(session, event_type, [data], clock=clock)


def emit_many(session: Session, event_type: str, items: Sequence[Mapping[str, Any]], *,
              clock: Clock = system_clock) -> int:
    """``emit`` for several events of one type (a retention sweep's batch): one look-up of the subscriptions."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    if not items:
        return 0
    subs = [s for s in session.scalars(select(WebhookSubscription).where(WebhookSubscription.enabled.is_(True)))
            if wants(s, event_type)]
    if not subs:
        return 0
    now = clock.now()
    rows = []
    for data in items:
        event_id = new_id()
        body = json.dumps({"id": event_id, "type": event_type, "occurred_at": now.isoformat(), "data": dict(data)},
                          sort_keys=True, separators=(",", ":"), default=str)
        rows += [WebhookDelivery(
            id=new_id(), subscription_id=sub.id, subscription_name=sub.name, event_id=event_id, event_type=event_type,
            payload=body, state=DeliveryState.PENDING, attempts=0, created_at=now, next_attempt_at=now, last_error="")
            for sub in subs]
    session.add_all(rows)
    return len(rows)
