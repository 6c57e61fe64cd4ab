"""The signature scheme shared by every signed webhook callvault sends or receives.

``X-Callvault-Timestamp`` is whole seconds since 1970 (UTC) and ``X-Callvault-Signature`` is
``sha256=`` + hex HMAC-SHA-256, under a shared secret, of the timestamp, a ``.`` and the raw body.
Signing the timestamp with the body stops a captured delivery being replayed later; the receiver
refuses timestamps further than ``REPLAY_WINDOW`` from its clock and remembers the signatures it
accepted inside the window (``remember``) so the same delivery is not accepted twice.

Kept free of any domain import so the CRM-notes webhook (``transcription.webhook``), the CRM
connectors and the outgoing webhooks all verify the same way.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import delete
from sqlalchemy.orm import Session

from callvault.core.clock import Clock
from callvault.core.errors import AuthenticationFailed, ConfigurationError
from callvault.core.settings import env_or_file
from callvault.transcription.models import CrmWebhookDelivery  # the table is the notes webhook's (0010)

TIMESTAMP_HEADER: Final = "x-callvault-timestamp"
SIGNATURE_HEADER: Final = "x-callvault-signature"
REPLAY_WINDOW: Final = timedelta(minutes=5)


MIN_SECRET_CHARS: Final = 16


def load_shared_secret(env: Mapping[str, str], env_name: str, what: str) -> bytes:
    """A shared secret from ``env_name`` (or ``env_name``_FILE); ConfigurationError (503 at the edge)
    naming the setting while it is unset or shorter than ``MIN_SECRET_CHARS``."""
    secret = env_or_file(env, env_name)
    if not secret or len(secret.strip()) < MIN_SECRET_CHARS:
        raise ConfigurationError(f"{what} is not configured: set {env_name} (or {env_name}_FILE) to a secret of "
                                 f"at least {MIN_SECRET_CHARS} characters")
    return secret.strip().encode()


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Callvault-Signature`` value for ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def check_fresh(sent_at: datetime, clock: Clock, *, window: timedelta = REPLAY_WINDOW) -> None:
    """AuthenticationFailed when ``sent_at`` is further than ``window`` from the server's clock."""
    if abs((clock.now() - sent_at).total_seconds()) > window.total_seconds():
        minutes = int(window.total_seconds() // 60)
        raise AuthenticationFailed(f"the delivery's timestamp is more than {minutes} minutes from the server's clock "
                                   "(expired, or the clocks disagree)")


def verify(secret: bytes, *, timestamp: str | None, signature: str | None, body: bytes, clock: Clock) -> str:
    """The signature's hex digest if the delivery is authentic and fresh; AuthenticationFailed otherwise."""
    if not timestamp or not signature:
        raise AuthenticationFailed("send the X-Callvault-Timestamp and X-Callvault-Signature headers")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise AuthenticationFailed("X-Callvault-Timestamp must be whole seconds since 1970 (UTC)")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip().lower()):
        raise AuthenticationFailed("the signature does not match the body and timestamp")
    check_fresh(datetime.fromtimestamp(int(timestamp), UTC), clock)
    return signature.strip().lower().removeprefix("sha256=")


def remember(session: Session, *, digest: str, reference: str, clock: Clock) -> None:
    """Record an accepted signature (hex, 64 chars); AuthenticationFailed if it was accepted before.

    Uses the ``crm_webhook_deliveries`` table of the CRM-notes webhook. Rows older than twice the
    replay window are pruned: past the window the timestamp check refuses a replay anyway. Two nodes
    racing on the same delivery both insert; the loser fails on the primary key at commit, which the
    edge reports as a replay.
    """
    if session.get(CrmWebhookDelivery, digest) is not None:
        raise AuthenticationFailed("this delivery was already received (replay refused)")
    now = clock.now()
    session.execute(delete(CrmWebhookDelivery).where(CrmWebhookDelivery.received_at < now - 2 * REPLAY_WINDOW))
    session.add(CrmWebhookDelivery(signature=digest, note_id=reference[:100], received_at=now))
