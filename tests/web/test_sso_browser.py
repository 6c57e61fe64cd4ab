"""Single sign-on in a real browser: the "Sign in with SSO" button, the provider's page on another
site (``localhost`` vs callvault's ``127.0.0.1``, so SameSite cookie rules apply as in production),
and back to callvault signed in, on the home page."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from callvault.core.settings import OidcSettings
from tests.api.test_sso import link
from tests.support.browser import new_page, require_browser
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.oidc_provider import Provider, running_provider

require_browser()


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider(host_name="localhost") as running:
        yield running


@pytest.fixture(scope="module")
def sso_server(env: CallvaultEnv, provider: Provider) -> Iterator[LiveServer]:
    env.runtime.settings = dataclasses.replace(env.settings, oidc=OidcSettings(
        issuer=provider.issuer, client_id="callvault-browser", client_secret="browser-test-secret",
        role_map=(("cv-leads", "support_lead"),), mfa_amr=("mfa",)))
    live = LiveServer(env)
    live.start()
    yield live
    live.stop()



def test_the_sso_button_signs_a_person_in_through_the_provider(browser: Any, sso_server: LiveServer,
                                                               provider: Provider, env: CallvaultEnv) -> None:
    provider.set_user("idp-lead", {"preferred_username": "lead", "groups": ["cv-leads"], "amr": ["pwd", "mfa"]})
    link(env, provider, "lead", "idp-lead")  # linked on purpose beforehand (issue 24): never by the name claim
    page = new_page(browser, sso_server.base_url)
    page.goto("/")
    page.get_by_role("link", name="Sign in with SSO").click()
    page.wait_for_url(provider.issuer + "/oauth2/authorize**")
    page.get_by_placeholder("sub").fill("idp-lead")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(sso_server.base_url + "/")
    assert page.get_by_role("heading", name="What needs you now").is_visible()
    assert "lead" in page.locator(".account").inner_text()
    page.context.close()
