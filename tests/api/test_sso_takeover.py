"""Issue 24, finding 1: single sign-on must neither take over local accounts nor change roles by itself.

The outside tester configured only the issuer, client id and secret, then signed in at the provider
as a subject whose ``preferred_username`` was ``lead``: callvault linked it to the local account
``lead`` and signed it in without lead's password or TOTP. A token for alice carrying
``roles=["executive"]`` made the specialist alice an executive. Now a link is made on purpose only (the
owner after a local sign-in, or an administrator), and roles follow claims only through the
administrator's map.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from callvault.audit.models import AuditEntry
from callvault.cli.main import app
from callvault.core.settings import OidcSettings
from callvault.identity.models import OidcIdentity, User
from tests.api.test_auth_web import web_sign_in
from tests.api.test_sso import CLIENT_ID, link, sso_sign_in
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.oidc_provider import Provider, running_provider

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


@pytest.fixture(scope="module")
def bare_sso(env: CallvaultEnv, provider: Provider) -> Iterator[LiveServer]:
    """SSO as the tester set it up: issuer, client id and secret, nothing else."""
    before = env.runtime.settings
    env.runtime.settings = dataclasses.replace(before, oidc=OidcSettings(
        issuer=provider.issuer, client_id=CLIENT_ID, client_secret="test-client-secret"))
    live = LiveServer(env)
    live.start()
    yield live
    live.stop()
    env.runtime.settings = before


def _audit(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))
        session.expunge_all()
        return rows


def _role(env: CallvaultEnv, username: str) -> str:
    with env.runtime.db.unit_of_work() as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        return user.role


def _links(env: CallvaultEnv, sub: str) -> list[str]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(OidcIdentity.user_id).where(OidcIdentity.subject == sub)))


def test_an_idp_account_named_like_a_local_account_cannot_take_it_over(
        bare_sso: LiveServer, provider: Provider, env: CallvaultEnv) -> None:
    provider.set_user("idp-mallory", {"preferred_username": "lead", "amr": ["mfa"]})
    with bare_sso.client() as browser:
        resp = sso_sign_in(browser, provider, "idp-mallory")
        assert resp.status_code == 401, resp.text
        assert "not linked to a callvault account" in resp.text and "Link single sign-on" in resp.text
        assert browser.get("/api/v1/me").status_code == 401
    assert _links(env, "idp-mallory") == []
    refused = [e for e in _audit(env, "auth.sign_in") if e.decision == "deny" and e.details.get("method") == "oidc"]
    assert "not linked" in refused[-1].reason


def test_just_in_time_provisioning_does_not_take_over_an_existing_name_either(
        bare_sso: LiveServer, provider: Provider, env: CallvaultEnv) -> None:
    before = env.runtime.settings
    assert before.oidc is not None
    env.runtime.settings = dataclasses.replace(before, oidc=dataclasses.replace(before.oidc, provisioning="jit"))
    try:
        provider.set_user("idp-mallory2", {"preferred_username": "lead", "groups": ["cv-leads"], "amr": ["mfa"]})
        with bare_sso.client() as browser:
            resp = sso_sign_in(browser, provider, "idp-mallory2")
            assert resp.status_code == 401 and "not linked to a callvault account" in resp.text
            assert browser.get("/api/v1/me").status_code == 401
    finally:
        env.runtime.settings = before
    assert _links(env, "idp-mallory2") == []


def test_role_claims_without_a_configured_map_never_change_a_role(
        bare_sso: LiveServer, provider: Provider, env: CallvaultEnv) -> None:
    link(env, provider, "alice", "idp-alice-x")
    provider.set_user("idp-alice-x", {"preferred_username": "alice", "roles": ["executive"], "amr": ["mfa"]})
    with bare_sso.client() as browser:
        assert sso_sign_in(browser, provider, "idp-alice-x").status_code == 200
        me = browser.get("/api/v1/me").json()
    assert (me["username"], me["role"]) == ("alice", "specialist")
    assert _role(env, "alice") == "specialist"
    assert not [e for e in _audit(env, "user.role_changed") if e.details.get("username") == "alice"]


def test_the_owner_links_their_account_after_a_local_sign_in_and_sso_then_reaches_it(
        bare_sso: LiveServer, provider: Provider, env: CallvaultEnv) -> None:
    provider.set_user("idp-bob", {"preferred_username": "robert", "amr": ["mfa"]})
    with bare_sso.client() as browser:
        assert sso_sign_in(browser, provider, "idp-bob").status_code == 401  # not linked yet
    with bare_sso.client() as browser:
        web_sign_in(browser, env, "bob")  # password and one-time code: bob proves he owns the account
        page = browser.get("/account")
        assert page.status_code == 200 and "No identity-provider account is linked" in page.text
        found = CSRF.search(page.text)
        assert found
        assert browser.post("/account/sso/link", data={"csrf_token": "forged"}).status_code == 403
        start = browser.post("/account/sso/link", data={"csrf_token": found.group(1)})
        assert start.status_code == 303, start.text
        done = browser.get(provider.approve(start.headers["location"], "idp-bob"))
        assert done.status_code == 200 and "Single sign-on linked" in done.text
        assert "idp-bob" in browser.get("/account").text
    with bare_sso.client() as browser:
        assert sso_sign_in(browser, provider, "idp-bob").status_code == 200
        assert browser.get("/api/v1/me").json()["username"] == "bob"
    linked = [e for e in _audit(env, "user.sso_linked") if e.details.get("username") == "bob"]
    assert [(e.actor, e.details["via"], e.details["subject"]) for e in linked] == [("bob", "owner", "idp-bob")]


def test_a_session_signed_in_through_sso_cannot_link_another_provider_account(
        bare_sso: LiveServer, provider: Provider, env: CallvaultEnv) -> None:
    link(env, provider, "exec", "idp-exec-x")
    provider.set_user("idp-exec-x", {"preferred_username": "exec", "amr": ["mfa"]})
    with bare_sso.client() as browser:
        assert sso_sign_in(browser, provider, "idp-exec-x").status_code == 200
        page = browser.get("/account")
        assert "sign in with your callvault password" in page.text and 'id="sso-link"' not in page.text
        found = CSRF.search(page.text)
        assert found
        resp = browser.post("/account/sso/link", data={"csrf_token": found.group(1)})
        assert resp.status_code == 403 and "password" in resp.text


def test_an_administrator_links_and_unlinks_with_the_cli(
        bare_sso: LiveServer, provider: Provider, env: CallvaultEnv) -> None:
    def cli(*args: str) -> str:
        result = CliRunner().invoke(app, ["users", *args, "--data-dir", str(env.data_dir)], env=env.cli_env)
        assert result.exit_code == 0, result.output
        return result.output

    provider.set_user("idp-it", {"preferred_username": "someone-else", "amr": ["mfa"]})
    cli("sso-link", "it", "--subject", "idp-it", "--issuer", provider.issuer)
    assert "idp-it" in cli("sso-links")
    with bare_sso.client() as browser:
        assert sso_sign_in(browser, provider, "idp-it").status_code == 200
        assert browser.get("/api/v1/me").json()["username"] == "it"
    taken = CliRunner().invoke(app, ["users", "sso-link", "newhire", "--subject", "idp-it", "--issuer",
                                     provider.issuer, "--data-dir", str(env.data_dir)], env=env.cli_env)
    assert taken.exit_code != 0 and "already linked to another callvault account" in taken.output
    assert "Traceback" not in taken.output
    cli("sso-unlink", "it")
    with bare_sso.client() as browser:
        assert sso_sign_in(browser, provider, "idp-it").status_code == 401
    assert [e.details["via"] for e in _audit(env, "user.sso_linked") if e.details.get("username") == "it"] == ["admin"]
    assert len([e for e in _audit(env, "user.sso_unlinked") if e.details.get("username") == "it"]) == 1
