"""Issue 26 point 1 (part B) in a real browser: an administrator adds and changes a user, creates a scoped
API token (its secret shown once) and revokes it, adds, tests and removes a webhook, checks and loads a new
policy version; an agent sees who reached their calls and why, and gives and withdraws training consent.
Each page is driven as the persona would, and each refusal is checked for a role that may not."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.integrations.webhooks_out import service as webhooks
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.browser import new_page, require_browser, sign_in
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.webhook_receiver import Receiver, ReceiverServer

require_browser()

SHOTS = os.environ.get("CALLVAULT_SCREENSHOTS")
POLICY_FILE = Path(__file__).resolve().parents[2] / "examples" / "policies" / "policy-a.yaml"


def _shot(page: Any, name: str, tmp: Path) -> None:
    target = Path(SHOTS) if SHOTS else tmp
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def _page(browser: Any, server: LiveServer, env: CallvaultEnv, who: str) -> Any:
    page = new_page(browser, server.base_url, timeout_ms=10_000)
    sign_in(page, env, who)
    return page


def _actions(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        for r in rows:
            session.expunge(r)
    return rows


def test_an_administrator_adds_a_user_changes_them_and_manages_an_integration_token(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    env.integration_token()  # the phone system's account (telephony_integration: no content, no MFA) exists
    page = _page(browser, server, env, "it")
    page.goto("/admin/users")
    form = page.get_by_role("form", name="add a user")
    form.get_by_label("Username").fill("carol")
    form.get_by_label("Role").select_option("specialist")
    form.get_by_label("Extension").fill("20x4")
    form.get_by_label("Initial password").fill("short")
    form.get_by_role("button", name="Add user").click()
    problems = page.locator("#add-problems").inner_text()
    assert "extension: must be 1-16 digits" in problems and "password" in problems
    assert page.get_by_role("form", name="add a user").get_by_label("Username").input_value() == "carol"
    form = page.get_by_role("form", name="add a user")
    form.get_by_label("Extension").fill("2004")
    form.get_by_label("Team").fill("customer_support")
    form.get_by_label("Initial password").fill("violet-harbour-kettle-drum")
    form.get_by_role("button", name="Add user").click()
    page.wait_for_url("**/admin/users?done=added*")
    assert "carol is added" in page.locator("#users-flash").inner_text()

    row = page.get_by_role("row").filter(has_text="carol")
    row.locator("summary").click()
    change = page.get_by_role("form", name="change carol")
    change.get_by_label("Extension").fill("2005")
    change.get_by_role("button", name="Save").click()
    page.wait_for_url("**/admin/users?done=changed*")
    assert "carol's role, extension and team are saved" in page.locator("#users-flash").inner_text()
    assert "2005 / customer_support" in page.get_by_role("row").filter(has_text="carol").inner_text()
    [changed] = [e for e in _actions(env, "user.updated") if e.details["username"] == "carol"]
    assert changed.actor == "it" and changed.details["changes"] == {"extension": ["2004", "2005"]}

    tokens = page.get_by_role("form", name="create a token")
    owners = tokens.get_by_label("Account", exact=True).locator("option").all_inner_texts()
    assert "pbx" in owners and "it" in owners and "exec" not in owners and "lead" not in owners, owners
    tokens.get_by_label("Account", exact=True).select_option("pbx")
    tokens.get_by_label("What uses it").fill("archive")
    tokens.get_by_role("checkbox", name=re.compile(r"^calls:control")).check()
    tokens.get_by_label("Your one-time code").fill(env.otp("it"))  # a new credential: a fresh code first
    tokens.get_by_role("button", name="Create token").click()
    assert "calls:control" in page.locator("#secret-flash").inner_text()
    secret = page.locator("#secret-once").inner_text().strip()
    _shot(page, "admin-token-created", tmp_path)
    with server.client() as client:
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.status_code == 200 and me.json()["username"] == "pbx"
    page.get_by_role("link", name="Back").click()
    page.get_by_role("button", name="Revoke archive of pbx").click()
    page.wait_for_url("**done=token-revoked*")
    assert "“archive” is revoked" in page.locator("#users-flash").inner_text()
    with server.client() as client:
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert any(e.actor == "it" for e in _actions(env, "auth.token_created"))

    # Outside tester: IT (administers, hears no call) posted the form for exec with download scopes and played
    # recordings as exec, with no second factor of exec's and every access logged as exec's. Refused now.
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    minted = page.request.post(f"{server.base_url}/admin/tokens", headers={"Origin": server.base_url}, form={
        "csrf_token": csrf, "user": "exec", "scope": "recordings:download", "days": "366", "name": "x"})
    assert minted.status == 422 and "exec" in minted.text() and "second factor" in minted.text()
    assert [(e.actor, e.decision) for e in _actions(env, "auth.token_created") if e.details.get("user") == "exec"
            ] == [("it", "deny")]
    _shot(page, "admin-users-forms", tmp_path)
    page.context.close()

    agent = _page(browser, server, env, "alice")
    assert agent.get_by_role("link", name="Admin").count() == 0
    token = agent.locator("input[name=csrf_token]").first.input_value()
    refused = agent.request.post(f"{server.base_url}/admin/tokens", headers={"Origin": server.base_url},
                                 form={"csrf_token": token, "user": "alice", "scope": "recordings:download",
                                       "days": "30"})
    assert refused.status == 403 and "does not administer" in refused.text()
    assert any(e.actor == "alice" and e.decision == "deny" for e in _actions(env, "admin.token_create"))
    agent.context.close()


def test_an_administrator_adds_tests_and_removes_a_webhook(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    receiver = Receiver()
    with ReceiverServer(receiver) as live:
        page = _page(browser, server, env, "it")
        page.goto("/admin/webhooks")
        form = page.get_by_role("form", name="add a webhook")
        form.get_by_label("Name").fill("siem-page")
        form.get_by_label("URL").fill("ftp://nowhere")
        form.get_by_role("button", name="Add webhook").click()
        assert "url:" in page.locator("#webhook-problems").inner_text()
        form = page.get_by_role("form", name="add a webhook")
        form.get_by_label("URL").fill(live.url)
        form.get_by_role("checkbox", name=re.compile(r"^recording\.saved")).check()
        form.get_by_role("button", name="Add webhook").click()
        receiver.secret = page.locator("#secret-once").inner_text().strip().encode()
        page.get_by_role("link", name="Back").click()
        page.get_by_role("button", name="Send a test siem-page").click()
        page.wait_for_url("**done=tested*")
        assert "webhook.test" in page.locator("#webhooks-flash").inner_text()
        webhooks.deliver_due(env.runtime.db, env.runtime.keyring, clock=env.runtime.clock)
        assert [r.signature_ok for r in receiver.received] == [True]
        page.reload()
        sent = page.get_by_role("table", name="deliveries").locator("tr", has_text="webhook.test")
        assert "delivered" in sent.inner_text() and "HTTP 204" in sent.inner_text()
        connectors = page.get_by_role("table", name="CRM connectors").inner_text()
        assert "generic" in connectors and "zendesk" in connectors
        _shot(page, "admin-webhooks", tmp_path)
        page.get_by_role("button", name="Remove siem-page").click()
        page.wait_for_url("**done=removed*")
        assert "siem-page is removed" in page.locator("#webhooks-flash").inner_text()
        assert page.get_by_role("table", name="subscriptions").count() == 0 or \
            "siem-page" not in page.get_by_role("table", name="subscriptions").inner_text()
        assert {e.action for e in _actions(env, "webhook.tested")} == {"webhook.tested"}
        page.context.close()


def test_an_administrator_checks_and_loads_a_new_policy_version(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    text = POLICY_FILE.read_text()
    # Effective far ahead, so it does not come into force (and ask everyone to acknowledge) during the tests.
    newer = re.sub(r'^version: .*$', 'version: "2099.1"', text, count=1, flags=re.M)
    newer = re.sub(r"^effective_from: .*$", "effective_from: 2099-01-01", newer, count=1, flags=re.M)
    broken = newer.replace("effective_from: 2099-01-01", "effective_from: someday", 1)
    broken_line = broken.splitlines().index("effective_from: someday") + 1

    page = _page(browser, server, env, "it")
    page.goto("/admin/policy")
    assert "Due for review on" in page.locator("#review-status").inner_text()
    page.get_by_label("Policy file (YAML)").set_input_files(
        files=[{"name": "policy.yaml", "mimeType": "text/yaml", "buffer": broken.encode()}])
    page.get_by_role("button", name="Check").click()
    problems = page.locator("#policy-problems").inner_text()
    assert f"line {broken_line}" in problems and "effective_from" in problems
    assert page.get_by_role("button", name=re.compile("^Load")).count() == 0
    page.get_by_label("Policy file (YAML)").set_input_files(
        files=[{"name": "policy.yaml", "mimeType": "text/yaml", "buffer": newer.encode()}])
    page.get_by_role("button", name="Check").click()
    assert "Valid: smartsimple-support@2099.1" in page.locator("#policy-check").inner_text()
    _shot(page, "admin-policy-check", tmp_path)
    page.get_by_label("Your one-time code").fill(env.otp("it"))  # the policy decides who hears what
    page.get_by_role("button", name="Load smartsimple-support@2099.1").click()
    page.wait_for_url("**done=loaded*")
    assert "Loaded smartsimple-support@2099.1" in page.locator("#policy-flash").inner_text()
    assert "effective_from" in page.locator("ul.diff").inner_text()
    [loaded] = [e for e in _actions(env, "policy.loaded") if e.object_id.endswith("@2099.1")]
    assert loaded.actor == "it"
    page.context.close()

    lead = _page(browser, server, env, "lead")
    lead.goto("/admin/policy")
    assert "does not administer" in lead.get_by_role("alert").inner_text()
    lead.context.close()


def test_an_agent_sees_who_reached_their_calls_and_manages_their_training_consent(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    with server.client("admin") as admin:
        created = upload(admin, wav_bytes(0.5, seed=26), metadata())
        assert created.status_code == 201
        recording_id = created.json()["id"]
    with server.client("lead") as lead:
        lead.get(f"/api/v1/recordings/{recording_id}/audio", params={"purpose": "spot_check"})

    page = _page(browser, server, env, "alice")
    page.get_by_role("link", name="My calls").click()
    listens = page.get_by_role("table", name="accesses to my calls")
    row = listens.locator("tr", has=page.locator(f"a[href='/recordings/{recording_id}']"))
    assert "lead" in row.inner_text() and "spot check" in row.inner_text() and "play" in row.inner_text()
    page.get_by_role("button", name="Give consent to training").click()
    page.wait_for_url("**done=given*")
    assert "Your consent to training is on file" in page.locator("#me-flash").inner_text()
    _shot(page, "my-calls", tmp_path)
    page.get_by_role("button", name="Withdraw to training").click()
    page.wait_for_url("**done=withdrawn*")
    assert "withdrawn, effective now" in page.locator("#me-flash").inner_text()
    assert [e.purpose for e in _actions(env, "consent.given")] == ["training"]
    assert [e.actor for e in _actions(env, "consent.revoked")] == ["alice"]
    assert page.get_by_role("link", name=re.compile("my scores|read them")).count() == 1
    page.context.close()
