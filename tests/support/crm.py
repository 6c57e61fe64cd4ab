"""CRM connector helpers: policy files with the CRM switched on, Zendesk fixtures, signed deliveries."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from callvault.integrations import signing
from callvault.integrations.crm import zendesk

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "zendesk"


def policy_with_crm(source: Path, target: Path, **switches: bool) -> Path:
    """A copy of ``source`` whose ``integrations.crm`` turns on ``switches`` (all off by default)."""
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    doc["integrations"] = {"crm": switches}
    target.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return target


def zendesk_body(name: str, **values: str) -> bytes:
    """A recorded-shape Zendesk payload from tests/fixtures/zendesk with ``{{KEY}}`` filled in."""
    text = (FIXTURES / f"{name}.json").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key.upper() + "}}", value)
    assert "{{" not in text, f"unfilled placeholder in {name}: {text}"
    data = json.loads(text)
    if "ticket" in values:  # Zendesk event ids are unique per event: one per test ticket here
        data["id"] = f"{data['id']}-{values['ticket']}"
    return json.dumps(data).encode()


def zendesk_headers(secret: str, body: bytes, *, sent_at: datetime | None = None) -> dict[str, str]:
    stamp = (sent_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"Content-Type": "application/json", "User-Agent": "Zendesk Webhook",
            "X-Zendesk-Webhook-Id": "01GK8E6BKWMJZD2T8Y5AXJQMG5",
            zendesk.TIMESTAMP_HEADER: stamp, zendesk.SIGNATURE_HEADER: zendesk.sign(secret.encode(), stamp, body)}


def generic_headers(secret: str, body: bytes, *, age_seconds: int = 0) -> dict[str, str]:
    stamp = str(int(time.time()) - age_seconds)
    return {"Content-Type": "application/json", "X-Callvault-Timestamp": stamp,
            "X-Callvault-Signature": signing.sign(secret.encode(), stamp, body)}


def generic_event(event_id: str, kind: str, ticket: str, at: str, **extra: Any) -> bytes:
    return json.dumps({"event_id": event_id, "type": kind, "ticket_ref": ticket, "occurred_at": at,
                       **extra}).encode()


def post(client: httpx.Client, connector: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return client.post(f"/api/v1/integrations/crm/{connector}/events", content=body, headers=headers)
