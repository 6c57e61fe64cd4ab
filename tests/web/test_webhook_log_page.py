"""The webhook delivery log in a real browser (Debian's chromium via Playwright) and over the API:
administrators see each delivery's state, tries and the receiver's answer; others are refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from callvault.integrations.crm import service as crm
from callvault.integrations.crm.generic import GenericConnector
from callvault.integrations.webhooks_out import service as webhooks
from callvault.policy import service as policy_service
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.browser import new_page, require_browser, sign_in
from tests.support.crm import generic_event
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.webhook_receiver import Receiver, ReceiverServer

require_browser()



@pytest.fixture(scope="module")
def deliveries(env: CallvaultEnv, server: LiveServer) -> Iterator[None]:
    """Two webhooks: one to a live receiver (delivered), one to a closed port (waiting to retry)."""
    rt = env.runtime
    receiver = Receiver()
    with ReceiverServer(receiver) as live:
        with ReceiverServer(Receiver()) as gone:
            dead_url = gone.url
        with rt.db.unit_of_work() as session:
            receiver.secret = webhooks.add_subscription(session, keyring=rt.keyring, name="siem", url=live.url,
                                                        events=["recording.saved"], actor="test").secret.encode()
            webhooks.add_subscription(session, keyring=rt.keyring, name="crm-down", url=dead_url,
                                      events=["recording.saved"], actor="test")
        with server.client("admin") as admin:
            assert upload(admin, wav_bytes(0.5, seed=9), metadata()).status_code == 201
        webhooks.deliver_due(rt.db, rt.keyring, clock=rt.clock)
        assert len(receiver.received) == 1 and receiver.received[0].signature_ok
        [closed] = GenericConnector().parse(generic_event("evt-page-1", "ticket.closed", "CRM-PAGE-7",
                                                          "2026-11-20T15:00:00+00:00"))
        with rt.db.unit_of_work() as session:
            crm.apply_events(session, policy=policy_service.current_policy(session), connector="generic",
                             events=[closed])
        yield



def test_an_administrator_reads_the_delivery_log_and_others_are_refused(
        browser: Any, server: LiveServer, env: CallvaultEnv, deliveries: None) -> None:
    page = new_page(browser, server.base_url, timeout_ms=10_000)
    sign_in(page, env, "it")
    page.goto("/admin/users")
    page.get_by_role("link", name="Webhooks").click()
    assert page.get_by_role("heading", name="Outgoing webhooks").is_visible()
    log = page.get_by_role("table", name="deliveries")
    delivered = log.locator("tr", has_text="siem")
    assert "delivered" in delivered.inner_text() and "HTTP 204" in delivered.inner_text()
    waiting = log.locator("tr", has_text="crm-down")
    assert "pending" in waiting.inner_text() and "ConnectError" in waiting.inner_text()
    crm_events = page.get_by_role("table", name="CRM events").inner_text()
    assert "CRM-PAGE-7" in crm_events and "noop" in crm_events
    page.get_by_role("link", name="failed", exact=True).click()
    assert "No deliveries in state failed" in page.inner_text("main")
    page.context.close()

    other = browser.new_context(base_url=server.base_url)
    boss = other.new_page()
    sign_in(boss, env, "lead")
    boss.goto("/admin/webhooks")
    assert "does not administer" in boss.get_by_role("alert").inner_text()
    other.close()


def test_the_delivery_log_api_is_for_administrators(server: LiveServer, deliveries: None) -> None:
    with server.client("it") as it, server.client("alice") as alice:
        rows = it.get("/api/v1/webhooks/deliveries").json()
        assert {(r["webhook"], r["state"]) for r in rows} >= {("siem", "delivered"), ("crm-down", "pending")}
        assert all("payload" not in r for r in rows)
        assert it.get("/api/v1/webhooks/deliveries", params={"state": "delivered"}).json()[0]["last_status"] == 204
        refused = alice.get("/api/v1/webhooks/deliveries")
    assert refused.status_code == 403 and "may not read the webhook delivery log" in refused.json()["message"]
