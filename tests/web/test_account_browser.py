"""Changing one's own password on the /account page in a real browser (issue 24 point 7): a mistake is
shown next to the form, a good change keeps this browser signed in and ends the account's other tokens."""

from __future__ import annotations

from typing import Any

from tests.support.browser import new_page, require_browser, sign_in
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer

require_browser()


def test_a_person_changes_their_password_on_the_account_page(browser: Any, server: LiveServer,
                                                              env: CallvaultEnv) -> None:
    with server.client() as client:
        other_token = server.sign_in(client, "exec")
    page = new_page(browser, server.base_url, timeout_ms=15_000)
    sign_in(page, env, "exec")
    page.goto("/account")
    page.locator("#current_password").fill("not-my-password-at-all")
    page.locator("#otp").fill(env.otp("exec"))
    page.locator("#new_password").fill("purple-otter-meadow-lamp")
    page.locator("#confirm_password").fill("purple-otter-meadow-lamp")
    page.get_by_role("button", name="Change password").click()
    assert "is not your current password" in page.locator("#password-problems").inner_text()
    page.locator("#current_password").fill(PASSWORD)
    page.locator("#otp").fill(env.otp("exec"))
    page.locator("#new_password").fill("purple-otter-meadow-lamp")
    page.locator("#confirm_password").fill("purple-otter-meadow-lamp")
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url("**/account?done=password-changed")
    assert page.locator("#password-changed").is_visible()
    page.goto("/recordings")
    assert page.get_by_role("heading", name="Sign in").count() == 0  # this browser stays signed in
    with server.client() as client:
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {other_token}"}).status_code == 401
    page.context.close()
