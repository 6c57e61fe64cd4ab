"""Zendesk Support: its ticket event webhooks, mapped to callvault's ticket events.

Built from Zendesk's public webhook documentation (event-subscribed webhooks, "Ticket events"):
a body ``{"type": "zen:event-type:ticket.<what>", "id", "time", "subject": "zen:ticket:<id>",
"detail": {"id", "status", "tags", "requester_id", "actor_id", "subject", "description", …},
"event": {…}}``, signed with the webhook's signing secret as
``X-Zendesk-Webhook-Signature: base64(HMAC-SHA-256(secret, X-Zendesk-Webhook-Signature-Timestamp + body))``
(no separator; the timestamp is ISO 8601 UTC).

Mapping (docs/integrations.md has the Zendesk set-up):

* ``ticket.created`` tagged ``callvault_access_request`` → an access request by the ticket's requester;
  the description carries ``recordings:``, ``purpose:``, optional ``actions:``/``days:`` lines, the
  rest is the justification (the subject when empty).
* ``ticket.tags_changed`` adding ``callvault_approved`` / ``callvault_rejected`` → approved / rejected
  by the agent who changed the tags (``detail.actor_id``).
* ``ticket.status_changed`` to ``SOLVED`` or ``CLOSED`` → the ticket is finished (its grants end) and
  its issue resolved (A9); from ``SOLVED`` back to an open status → reopened.

Anything else is acknowledged and ignored. Zendesk ids are numbers; callvault uses them as text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from callvault.core.clock import Clock
from callvault.core.errors import AuthenticationFailed, FieldProblem, InvalidInput
from callvault.integrations import signing
from callvault.integrations.crm.connector import AccessAsk, Connector, EventKind, TicketEvent

SIGNATURE_HEADER: Final = "x-zendesk-webhook-signature"
TIMESTAMP_HEADER: Final = "x-zendesk-webhook-signature-timestamp"
ACCESS_TAG: Final = "callvault_access_request"
APPROVED_TAG: Final = "callvault_approved"
REJECTED_TAG: Final = "callvault_rejected"
FINISHED: Final = frozenset({"SOLVED", "CLOSED"})
OPEN_AGAIN: Final = frozenset({"NEW", "OPEN", "PENDING", "HOLD"})
_PREFIX: Final = "zen:event-type:ticket."


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """What Zendesk puts in ``X-Zendesk-Webhook-Signature`` (for tests and for checking a set-up)."""
    return base64.b64encode(hmac.new(secret, timestamp.encode() + body, hashlib.sha256).digest()).decode()


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput("invalid Zendesk event:", [FieldProblem(field, message)])


def _text(value: Any, field: str, *, required: bool = True) -> str:
    if value is None or value == "":
        if required:
            raise _bad(field, "is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _bad(field, "must be a string or a number")
    text = str(value).strip()
    if len(text) > 200:
        raise _bad(field, "is longer than 200 characters")
    return text


def _when(value: Any, field: str) -> datetime:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise _bad(field, "must be an ISO 8601 time like 2024-04-17T17:18:10Z") from None
    if when.tzinfo is None:
        raise _bad(field, "must include a UTC offset or Z")
    return when


def _lines(description: str) -> tuple[dict[str, str], str]:
    """``key: value`` lines the access-request form fills in, and the free text around them."""
    fields: dict[str, str] = {}
    rest: list[str] = []
    for line in description.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("recordings", "purpose", "actions", "days"):
            fields[key.strip().lower()] = value.strip()
        else:
            rest.append(line)
    return fields, "\n".join(rest).strip()


def _split(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.replace(";", ",").split(",") if p.strip())


def _access_ask(detail: Mapping[str, Any]) -> AccessAsk:
    description = detail.get("description")
    if not isinstance(description, str) or not description.strip():
        raise _bad("detail.description", "an access-request ticket must say recordings: and purpose: "
                                         "in its description")
    fields, free = _lines(description)
    problems = []
    recordings = _split(fields.get("recordings", ""))
    if not recordings:
        problems.append(FieldProblem("detail.description", "add a line 'recordings: <id>, <id>'"))
    if not fields.get("purpose"):
        problems.append(FieldProblem("detail.description", "add a line 'purpose: <purpose id from the policy>'"))
    days = fields.get("days", "7")
    if not days.isdigit():
        problems.append(FieldProblem("detail.description", "'days:' must be a whole number of days"))
    if problems:
        raise InvalidInput("invalid Zendesk access request:", problems)
    subject = detail.get("subject") if isinstance(detail.get("subject"), str) else ""
    return AccessAsk(
        requester=_text(detail.get("requester_id"), "detail.requester_id"), recording_ids=recordings,
        purpose=fields["purpose"], justification=(free or str(subject or "")).strip()[:2000],
        actions=_split(fields.get("actions", "")) or ("play", "transcript"), grant_days=int(days))


def _tags(value: Any) -> set[str]:
    return {str(t).strip().lower() for t in value} if isinstance(value, list) else set()


class ZendeskConnector(Connector):
    name = "zendesk"
    secret_env = "CALLVAULT_CRM_ZENDESK_SECRET"  # noqa: S105 (a variable name)

    def authenticate(self, secret: bytes, headers: Mapping[str, str], body: bytes, clock: Clock) -> str:
        stamp, given = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
        if not stamp or not given:
            raise AuthenticationFailed("send the X-Zendesk-Webhook-Signature and "
                                       "X-Zendesk-Webhook-Signature-Timestamp headers")
        if not hmac.compare_digest(sign(secret, stamp, body), given.strip()):
            raise AuthenticationFailed("the signature does not match the body and timestamp "
                                       "(check the webhook's signing secret)")
        try:
            sent_at = _when(stamp, "timestamp")
        except InvalidInput:
            raise AuthenticationFailed("X-Zendesk-Webhook-Signature-Timestamp is not an ISO 8601 time") from None
        signing.check_fresh(sent_at, clock)
        try:
            return base64.b64decode(given.strip(), validate=True).hex()
        except binascii.Error:  # cannot happen once the comparison passed
            raise AuthenticationFailed("the signature is not base64") from None

    def parse(self, body: bytes) -> list[TicketEvent]:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad("body", f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise _bad("body", "must be a JSON object")
        kind = data.get("type")
        if not isinstance(kind, str):
            raise _bad("type", "is missing")
        if not kind.startswith(_PREFIX):
            return []
        what = kind.removeprefix(_PREFIX)
        detail = data.get("detail")
        if not isinstance(detail, dict):
            raise _bad("detail", "must be an object")
        event = data.get("event") if isinstance(data.get("event"), dict) else {}
        assert isinstance(event, dict)
        event_id, ref = _text(data.get("id"), "id"), _text(detail.get("id"), "detail.id")
        at = _when(data.get("time"), "time")
        actor = _text(detail.get("actor_id"), "detail.actor_id", required=False) or None
        tags = _tags(detail.get("tags"))
        if what == "created":
            if ACCESS_TAG not in tags:
                return []
            return [TicketEvent(event_id, EventKind.CREATED, ref, at, actor=actor, access=_access_ask(detail))]
        if what == "tags_changed":
            added = _tags(event.get("tags_added")) if "tags_added" in event else tags
            for tag, verdict in ((APPROVED_TAG, EventKind.APPROVED), (REJECTED_TAG, EventKind.REJECTED)):
                if tag in added:
                    if actor is None:
                        raise _bad("detail.actor_id", "is needed to know who decided")
                    return [TicketEvent(event_id, verdict, ref, at, actor=actor,
                                        note=f"{verdict} on Zendesk ticket {ref}")]
            return []
        if what == "status_changed":
            current = str(event.get("current") or detail.get("status") or "").upper()
            previous = str(event.get("previous") or "").upper()
            if current in FINISHED and previous not in FINISHED:
                return [TicketEvent(f"{event_id}#closed", EventKind.CLOSED, ref, at, actor=actor),
                        TicketEvent(f"{event_id}#resolved", EventKind.RESOLVED, ref, at, actor=actor)]
            if previous in FINISHED and current in OPEN_AGAIN:
                return [TicketEvent(event_id, EventKind.REOPENED, ref, at, actor=actor)]
        return []
