"""Subscriptions (add, list, remove) and the sender that works through the outbox.

Sender contract (like the mail outbox): ``deliver_due`` claims rows (``BATCH`` per transaction) with a
conditional ``UPDATE … WHERE state = 'pending'`` that must change exactly one row each, commits the
claim, posts, then records the outcomes. A 2xx answer is delivered; anything else (or no answer within ``TIMEOUT``) is
tried again after an exponential backoff (``BACKOFF_BASE`` * 2^(tries-1), capped at ``BACKOFF_CAP``)
until ``MAX_ATTEMPTS``, then the row is ``failed``. A worker killed mid-post leaves the row in
``sending``; after ``STALE_SENDING`` it is tried again, so a receiver may see an event twice and
must de-duplicate on the ``id`` in the body (documented).

Every try re-signs the body with the current time, so a retry is never refused as stale.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import CallvaultError, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.integrations import signing
from callvault.integrations.webhooks_out.emit import EVENT_TYPES
from callvault.integrations.webhooks_out.models import DeliveryState, WebhookDelivery, WebhookSubscription
from callvault.storage.keys import Keyring, WrappedKey

log = logging.getLogger("callvault.webhooks")

MAX_ATTEMPTS: Final = 8
BACKOFF_BASE: Final = timedelta(seconds=30)
BACKOFF_CAP: Final = timedelta(hours=6)
STALE_SENDING: Final = timedelta(minutes=5)
TIMEOUT: Final = 10.0
BATCH: Final = 20
"""Deliveries claimed per transaction; BATCH * TIMEOUT stays well inside STALE_SENDING."""
EVENT_HEADER: Final = "X-Callvault-Event"
DELIVERY_HEADER: Final = "X-Callvault-Delivery"


@dataclass(frozen=True)
class NewSubscription:
    subscription: WebhookSubscription
    secret: str
    """Shown once: the receiver verifies signatures with it; callvault keeps it only wrapped."""


def _binding(subscription_id: str) -> str:
    return f"webhook:{subscription_id}"


def _check(name: str, url: str, events: list[str]) -> list[str]:
    problems = []
    if not (0 < len(name) <= 64) or not name.replace("-", "").replace("_", "").isalnum():
        problems.append(FieldProblem("name", "1-64 letters, digits, - or _"))
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(url) > 500:
        problems.append(FieldProblem("url", "an http(s) URL of at most 500 characters (use https outside a "
                                            "private network: the body is signed, not encrypted)"))
    chosen = list(dict.fromkeys(e.strip() for e in events if e.strip())) or ["*"]
    unknown = [e for e in chosen if e != "*" and e not in EVENT_TYPES]
    if unknown:
        problems.append(FieldProblem("events", f"unknown {', '.join(unknown)}; choose from "
                                               f"{', '.join(EVENT_TYPES)} or *"))
    if problems:
        raise InvalidInput("cannot add the webhook:", problems)
    return chosen


def add_subscription(session: Session, *, keyring: Keyring, name: str, url: str, events: list[str], actor: str,
                     clock: Clock = system_clock) -> NewSubscription:
    """A new subscription with a fresh random secret (returned once; stored wrapped)."""
    chosen = _check(name.strip(), url.strip(), events)
    if session.scalar(select(WebhookSubscription).where(WebhookSubscription.name == name.strip())) is not None:
        raise Conflict(f"a webhook named {name.strip()!r} already exists")
    key = secrets.token_bytes(32)
    sub_id = new_id()
    wrapped = keyring.wrap(key, recording_id=_binding(sub_id))
    sub = WebhookSubscription(id=sub_id, name=name.strip(), url=url.strip(), events=chosen, kek_id=wrapped.kek_id,
                              wrapped_secret=wrapped.wrapped, enabled=True, created_at=clock.now(),
                              created_by=actor)
    session.add(sub)
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor=actor, action="webhook.added", object_type="webhook", object_id=sub.id,
        details={"name": sub.name, "url": sub.url, "events": chosen}), clock=clock)
    return NewSubscription(sub, _secret_text(key))


def _secret_text(key: bytes) -> str:
    return "whsec_" + key.hex()


def secret_of(sub: WebhookSubscription, keyring: Keyring) -> bytes:
    """The signing secret as the receiver holds it (the text shown at creation, as UTF-8 bytes)."""
    return _unwrap_secret(keyring, WrappedKey(kek_id=sub.kek_id, wrapped=sub.wrapped_secret), sub.id)


def _unwrap_secret(keyring: Keyring, wrapped: WrappedKey, subscription_id: str) -> bytes:
    return _secret_text(keyring.unwrap(wrapped, recording_id=_binding(subscription_id))).encode()


def get_subscription(session: Session, name: str) -> WebhookSubscription:
    sub = session.scalar(select(WebhookSubscription).where(WebhookSubscription.name == name))
    if sub is None:
        raise NotFound(f"no webhook named {name!r} (see `callvault webhooks list`)")
    return sub


def list_subscriptions(session: Session) -> list[WebhookSubscription]:
    return list(session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.name)))


def remove_subscription(session: Session, *, name: str, actor: str, clock: Clock = system_clock) -> int:
    """Remove a subscription; its undelivered events are cancelled (kept in the log). Returns how many."""
    sub = get_subscription(session, name)
    result = session.execute(update(WebhookDelivery).where(
        WebhookDelivery.subscription_id == sub.id,
        WebhookDelivery.state.in_([DeliveryState.PENDING, DeliveryState.SENDING])).values(
        state=DeliveryState.CANCELLED, last_error="the webhook was removed"))
    cancelled = int(getattr(result, "rowcount", 0) or 0)
    session.delete(sub)
    audit.append(session, audit.AuditEvent(
        actor=actor, action="webhook.removed", object_type="webhook", object_id=sub.id,
        details={"name": sub.name, "cancelled": cancelled}), clock=clock)
    return cancelled


TEST_EVENT: Final = "webhook.test"
"""The event an administrator sends on purpose to check a receiver; never emitted by anything else."""


def send_test(session: Session, *, name: str, actor: str, actor_role: str = "", source_ip: str | None = None,
              clock: Clock = system_clock) -> WebhookDelivery:
    """Queue one ``webhook.test`` event for the subscription ``name`` only, whatever events it wants.

    Why through the outbox rather than a post from the page: the test then travels exactly the way real
    events do (same claim, signature, retries and delivery log), so a delivered test proves the real path.
    The body carries no data but who asked; audited ``webhook.tested``."""
    sub = get_subscription(session, name)
    now = clock.now()
    event_id = new_id()
    body = json.dumps({"id": event_id, "type": TEST_EVENT, "occurred_at": now.isoformat(),
                       "data": {"requested_by": actor}}, sort_keys=True, separators=(",", ":"))
    row = WebhookDelivery(id=new_id(), subscription_id=sub.id, subscription_name=sub.name, event_id=event_id,
                          event_type=TEST_EVENT, payload=body, state=DeliveryState.PENDING, attempts=0,
                          created_at=now, next_attempt_at=now, last_error="")
    session.add(row)
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="webhook.tested", object_type="webhook", object_id=sub.id,
        source_ip=source_ip, details={"name": sub.name, "event_id": event_id}), clock=clock)
    return row


def deliveries(session: Session, *, name: str | None = None, state: str | None = None,
               limit: int = 200) -> list[WebhookDelivery]:
    """The delivery log, newest first."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit)
    if name:
        query = query.where(WebhookDelivery.subscription_name == name)
    if state:
        query = query.where(WebhookDelivery.state == state)
    return list(session.scalars(query))


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed try."""
    wait: timedelta = BACKOFF_BASE * 2 ** max(attempts - 1, 0)
    return min(wait, BACKOFF_CAP)


# ------------------------------------------------------------------------------------------ sender
@dataclass(frozen=True)
class _Claimed:
    row: WebhookDelivery
    url: str
    wrapped: WrappedKey


def _claim(db: Database, *, clock: Clock, size: int) -> list[_Claimed]:
    """Claim up to ``size`` due deliveries for this worker; committed before anything is posted."""
    now = clock.now()
    claimed: list[_Claimed] = []
    with db.unit_of_work() as session:
        # Rows stuck in "sending" (a worker died mid-post) become due again; attempts shows it.
        session.execute(update(WebhookDelivery).where(
            WebhookDelivery.state == DeliveryState.SENDING, WebhookDelivery.claimed_at < now - STALE_SENDING)
            .values(state=DeliveryState.PENDING, last_error="worker stopped while posting; may have been delivered"))
        candidates = list(session.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.state == DeliveryState.PENDING,
                                             WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(size * 2)))
        taken: list[str] = []
        for delivery_id in candidates:
            if len(taken) >= size:
                break
            result = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == DeliveryState.PENDING)
                .values(state=DeliveryState.SENDING, claimed_at=now, attempts=WebhookDelivery.attempts + 1))
            if getattr(result, "rowcount", 0) == 1:  # else another worker took it
                taken.append(delivery_id)
        if not taken:
            return []
        rows = list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(taken))
                                    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)))
        subs = {sub.id: sub for sub in session.scalars(select(WebhookSubscription).where(
            WebhookSubscription.id.in_({r.subscription_id for r in rows})))}
        for row in rows:
            sub = subs.get(row.subscription_id)
            if sub is None:
                row.state, row.last_error = DeliveryState.CANCELLED, "the webhook was removed"
                continue
            claimed.append(_Claimed(row, sub.url, WrappedKey(kek_id=sub.kek_id, wrapped=sub.wrapped_secret)))
        session.flush()
        for item in claimed:
            session.expunge(item.row)
    return claimed


def _post(client: httpx.Client, url: str, row: WebhookDelivery, secret: bytes,
          clock: Clock) -> tuple[int | None, str | None]:
    """(HTTP status, error text or None when delivered)."""
    body = row.payload.encode()
    stamp = str(int(clock.now().timestamp()))
    headers = {"Content-Type": "application/json", "User-Agent": "callvault-webhooks/1",
               EVENT_HEADER: row.event_type, DELIVERY_HEADER: row.id,
               signing.TIMESTAMP_HEADER: stamp, signing.SIGNATURE_HEADER: signing.sign(secret, stamp, body)}
    try:
        resp = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:2000]
    if 200 <= resp.status_code < 300:
        return resp.status_code, None
    return resp.status_code, f"HTTP {resp.status_code}: {resp.text[:300]}"


def _record(db: Database, outcomes: list[tuple[WebhookDelivery, int | None, str | None]], *, clock: Clock) -> None:
    """Write a batch's outcomes in one transaction: delivered, back to pending with a backoff, or failed."""
    now = clock.now()
    with db.unit_of_work() as session:
        for row, status, error in outcomes:
            values: dict[str, object] = {"last_status": status}
            if error is None:
                values.update(state=DeliveryState.DELIVERED, delivered_at=now, last_error="")
            elif row.attempts >= MAX_ATTEMPTS:
                values.update(state=DeliveryState.FAILED, last_error=error)
            else:
                values.update(state=DeliveryState.PENDING, last_error=error,
                              next_attempt_at=now + backoff(row.attempts))
            session.execute(update(WebhookDelivery).where(
                WebhookDelivery.id == row.id, WebhookDelivery.state == DeliveryState.SENDING).values(**values))
            if error is not None and row.attempts >= MAX_ATTEMPTS:
                audit.append(session, audit.AuditEvent(
                    actor="system", action="webhook.gave_up", decision="info", object_type="webhook_delivery",
                    object_id=row.id, reason=error[:300],
                    details={"webhook": row.subscription_name, "event_type": row.event_type,
                             "attempts": row.attempts}), clock=clock)


def deliver_due(db: Database, keyring: Keyring, *, clock: Clock = system_clock, limit: int = 200,
                transport: httpx.BaseTransport | None = None) -> int:
    """Post due deliveries, ``BATCH`` claims at a time; returns how many were delivered.

    A batch is claimed in one transaction and its outcomes recorded in one, so a worker killed
    mid-batch leaves its rows in ``sending`` (re-tried after ``STALE_SENDING``, attempts counting
    the earlier try): at least once, never silently twice.
    """
    delivered = handled = 0
    started = time.monotonic()
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False, transport=transport) as client:
        while handled < limit and time.monotonic() - started < 120:
            batch = _claim(db, clock=clock, size=min(BATCH, limit - handled))
            if not batch:
                break
            secrets_by_sub: dict[str, bytes | CallvaultError] = {}
            outcomes: list[tuple[WebhookDelivery, int | None, str | None]] = []
            for item in batch:
                sub_id = item.row.subscription_id
                if sub_id not in secrets_by_sub:
                    try:
                        secrets_by_sub[sub_id] = _unwrap_secret(keyring, item.wrapped, sub_id)
                    except CallvaultError as exc:  # a missing/retired KEK: recorded on the row, retried later
                        secrets_by_sub[sub_id] = exc
                secret = secrets_by_sub[sub_id]
                if isinstance(secret, CallvaultError):
                    outcomes.append((item.row, None, f"cannot unwrap the signing secret: {secret}"))
                    continue
                status, error = _post(client, item.url, item.row, secret, clock)
                if error is not None:
                    log.warning("webhook %s (%s) to %s failed (try %d): %s", item.row.id, item.row.event_type,
                                item.url, item.row.attempts, error)
                outcomes.append((item.row, status, error))
                delivered += error is None
            _record(db, outcomes, clock=clock)
            handled += len(batch)
    return delivered
