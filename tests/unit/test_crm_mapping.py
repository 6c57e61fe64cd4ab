"""The connectors' mappings, pure: Zendesk's recorded-shape payloads and the generic JSON become the
right ticket events; signatures are checked exactly as the CRMs compute them; the policy's CRM
switches are off unless named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from callvault.core.clock import FixedClock
from callvault.core.errors import AuthenticationFailed, InvalidInput
from callvault.integrations.crm.connector import EventKind
from callvault.integrations.crm.generic import GenericConnector
from callvault.integrations.crm.zendesk import ZendeskConnector, sign
from callvault.policy.loader import parse_policy_text
from tests.conftest import POLICY_A
from tests.support.crm import generic_event, generic_headers, zendesk_body, zendesk_headers

IDS = {"ticket": "35436", "requester": "1508849302", "approver": "1508849303", "recording": "rec-1"}
ZD = ZendeskConnector()


def test_a_tagged_zendesk_ticket_becomes_an_access_request_with_its_description_fields() -> None:
    [event] = ZD.parse(zendesk_body("ticket_created_access_request", **IDS))
    assert event.kind == EventKind.CREATED and event.ticket_ref == "35436"
    assert event.occurred_at == datetime(2026, 11, 20, 14, 10, tzinfo=UTC)
    assert event.access is not None
    assert event.access.requester == "1508849302" and event.access.recording_ids == ("rec-1",)
    assert event.access.purpose == "self_review" and event.access.actions == ("play",)
    assert event.access.grant_days == 3
    assert event.access.justification == "I need to hear my call with the customer again before I call them back."


def test_zendesk_tags_and_statuses_map_to_decisions_closing_resolution_and_reopening() -> None:
    [approved] = ZD.parse(zendesk_body("ticket_tags_changed_approved", **IDS))
    assert approved.kind == EventKind.APPROVED and approved.actor == "1508849303"
    closed, resolved = ZD.parse(zendesk_body("ticket_status_changed_solved", **IDS))
    assert (closed.kind, resolved.kind) == (EventKind.CLOSED, EventKind.RESOLVED)
    assert closed.event_id != resolved.event_id and closed.event_id.endswith("#closed")
    [reopened] = ZD.parse(zendesk_body("ticket_status_changed_reopened", **IDS))
    assert reopened.kind == EventKind.REOPENED
    assert ZD.parse(zendesk_body("ticket_comment_added", **IDS)) == []
    untagged = json.loads(zendesk_body("ticket_created_access_request", **IDS))
    untagged["detail"]["tags"] = ["billing"]
    assert ZD.parse(json.dumps(untagged).encode()) == []  # an ordinary ticket: nothing to do
    user_event = json.dumps({"type": "zen:event-type:user.active_changed", "id": "x", "detail": {}}).encode()
    assert ZD.parse(user_event) == []


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.pop("time"), "time"),
    (lambda d: d["detail"].pop("id"), "detail.id"),
    (lambda d: d["detail"].update(description="purpose: self_review"), "detail.description"),
    (lambda d: d.update(detail="35436"), "detail"),
])
def test_a_zendesk_payload_missing_what_callvault_needs_names_the_field(change: object, field: str) -> None:
    data = json.loads(zendesk_body("ticket_created_access_request", **IDS))
    change(data)  # type: ignore[operator]
    with pytest.raises(InvalidInput) as caught:
        ZD.parse(json.dumps(data).encode())
    assert field in [p.location for p in caught.value.problems]


def test_zendesk_signatures_are_checked_as_zendesk_computes_them() -> None:
    secret = b"dGhpcyBpcyBhIHNpZ25pbmcgc2VjcmV0"
    now = datetime(2026, 11, 20, 14, 10, 30, tzinfo=UTC)
    body = zendesk_body("ticket_created_access_request", **IDS)
    headers = {k.lower(): v for k, v in zendesk_headers(secret.decode(), body, sent_at=now).items()}
    # base64(HMAC-SHA256(secret, timestamp + body)), no separator (Zendesk's documented scheme)
    assert headers["x-zendesk-webhook-signature"] == sign(secret, "2026-11-20T14:10:30Z", body)
    digest = ZD.authenticate(secret, headers, body, FixedClock(now + timedelta(minutes=4)))
    assert len(digest) == 64 and int(digest, 16) >= 0
    with pytest.raises(AuthenticationFailed, match="more than 5 minutes"):
        ZD.authenticate(secret, headers, body, FixedClock(now + timedelta(minutes=6)))
    with pytest.raises(AuthenticationFailed, match="does not match"):
        ZD.authenticate(secret, headers, body + b" ", FixedClock(now))
    with pytest.raises(AuthenticationFailed, match="send the X-Zendesk-Webhook-Signature"):
        ZD.authenticate(secret, {}, body, FixedClock(now))


def test_the_generic_format_round_trips_and_checks_its_signature() -> None:
    body = generic_event("e-1", "ticket.approved", "CRM-1", "2026-11-20T14:05:00+01:00", actor="u-9", note="ok")
    [event] = GenericConnector().parse(body)
    assert (event.kind, event.actor, event.note) == (EventKind.APPROVED, "u-9", "ok")
    assert event.occurred_at == datetime(2026, 11, 20, 13, 5, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="needs actor"):
        GenericConnector().parse(generic_event("e-2", "ticket.rejected", "CRM-1", "2026-11-20T14:05:00Z"))
    with pytest.raises(InvalidInput):
        GenericConnector().parse(generic_event("e-3", "ticket.exploded", "CRM-1", "2026-11-20T14:05:00Z"))
    headers = {k.lower(): v for k, v in generic_headers("s" * 20, body).items()}
    assert len(GenericConnector().authenticate(b"s" * 20, headers, body, FixedClock(datetime.now(UTC)))) == 64


def test_the_policy_lets_the_crm_do_nothing_unless_it_says_so() -> None:
    text = POLICY_A.read_text(encoding="utf-8")
    rules = parse_policy_text(text).integrations.crm
    assert not (rules.file_access_requests or rules.relay_approvals or rules.resolve_cases)

    def with_crm(crm: dict[str, bool]) -> str:
        doc = yaml.safe_load(text)
        doc["integrations"] = {"crm": crm}
        return yaml.safe_dump(doc)

    assert not parse_policy_text(with_crm({})).integrations.crm.resolve_cases  # off unless named
    on = parse_policy_text(with_crm({"resolve_cases": True})).integrations.crm
    assert on.resolve_cases and not on.relay_approvals
    with pytest.raises(Exception, match="grant_everything"):
        parse_policy_text(with_crm({"grant_everything": True}))
