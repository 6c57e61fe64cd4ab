"""Finding W3: the policy's sign-in rules (MFA) belong to the role, so a token or web session made under one
role must not carry on under another. A role change ends every web session and API token of the person
(audited), the administrator is told they must sign in again, and the next sign-in follows the new role's
rules. Other profile changes (extension, team) leave the person signed in."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.core.settings import OidcSettings
from tests.api.test_auth_web import _csrf, web_sign_in
from tests.api.test_sso import CLIENT_ID, link, sso_sign_in
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer, integration_user
from tests.support.oidc_provider import Provider, running_provider

PLAY = {"purpose": "complaint_investigation"}


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


@pytest.fixture(scope="module")
def sso_server(env: CallvaultEnv, provider: Provider) -> Iterator[LiveServer]:
    """Single sign-on whose ``cv-execs`` group maps to the executive role."""
    before = env.runtime.settings
    env.runtime.settings = dataclasses.replace(before, oidc=OidcSettings(
        issuer=provider.issuer, client_id=CLIENT_ID, client_secret="test-client-secret",
        role_map=(("cv-execs", "executive"),), mfa_amr=("mfa",)))
    live = LiveServer(env)
    live.start()
    yield live
    live.stop()
    env.runtime.settings = before


def _password_only_token(server: LiveServer, username: str) -> dict[str, Any]:
    with server.client() as anonymous:
        resp = anonymous.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _as(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=30, headers={"Authorization": f"Bearer {token}"})


def _change_profile(admin: httpx.Client, username: str, **fields: str) -> httpx.Response:
    csrf = _csrf(admin.get("/admin/users").text)
    return admin.post(f"/admin/users/{username}/profile", data={"csrf_token": csrf, **fields})


def _audit(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))
        for row in rows:
            session.expunge(row)
    return rows


def test_a_role_change_ends_the_persons_tokens_and_sessions_so_the_new_roles_mfa_applies(live: LiveServer) -> None:
    env = live.env
    with live.client("admin") as uploader:
        created = upload(uploader, wav_bytes(2.0, seed=7), metadata(call_id="w3-role-change"))
        assert created.status_code == 201, created.text
        rec_id = created.json()["id"]
    with env.runtime.db.unit_of_work() as session:
        integration_user(session, "tel", env.runtime.clock)  # policy A: telephony_integration needs no MFA
    issued = _password_only_token(live, "tel")
    assert issued["scope"] == "*" and not issued["mfa_enrolment_required"]
    with _as(live, issued["access_token"]) as tel, httpx.Client(base_url=live.base_url, timeout=30) as tel_browser:
        assert tel.post("/api/v1/me/acknowledge-policy").status_code == 204
        login = tel_browser.post("/login", data={"username": "tel", "password": PASSWORD,
                                                 "csrf_token": _csrf(tel_browser.get("/").text)})
        assert login.status_code == 303 and login.headers["location"] == "/"
        assert tel_browser.get("/api/v1/me").status_code == 200
        assert tel.get(f"/api/v1/recordings/{rec_id}/audio", params=PLAY).status_code in (403, 404)  # no content yet

        with httpx.Client(base_url=live.base_url, timeout=30, headers={"Accept": "text/html"}) as admin:
            web_sign_in(admin, env, "admin")
            changed = _change_profile(admin, "tel", role="executive", extension="", team="")
            assert changed.status_code == 303, changed.text
            banner = admin.get(changed.headers["location"]).text
        assert "tel's role is now executive" in banner and "must sign in again" in banner

        # The old token and the old web session are gone: no audio under the new role on password alone.
        assert tel.get(f"/api/v1/recordings/{rec_id}/audio", params=PLAY).status_code == 401
        assert tel.get("/api/v1/me").status_code == 401
        assert tel_browser.get("/api/v1/me").status_code == 401
    # Signing in again follows the executive's rules: the password alone only reaches MFA set-up.
    again = _password_only_token(live, "tel")
    assert again["mfa_enrolment_required"] and again["scope"] == "mfa:enrol"
    with _as(live, again["access_token"]) as enrolling:
        assert enrolling.get(f"/api/v1/recordings/{rec_id}/audio", params=PLAY).status_code in (401, 403)
    [revoked] = [e for e in _audit(env, "auth.credentials_revoked") if e.details["username"] == "tel"]
    assert revoked.actor == "admin" and revoked.details["reason"] == "role changed"
    assert revoked.details["ended"] == 2
    [updated] = [e for e in _audit(env, "user.updated") if e.details["username"] == "tel"]
    assert updated.details["changes"]["role"] == ["telephony_integration", "executive"]


def test_changing_only_the_extension_or_team_leaves_the_person_signed_in(live: LiveServer) -> None:
    env = live.env
    with live.client("alice") as alice, httpx.Client(base_url=live.base_url, timeout=30,
                                                     headers={"Accept": "text/html"}) as admin:
        web_sign_in(admin, env, "admin")
        changed = _change_profile(admin, "alice", role="specialist", extension="2009", team="customer_support")
        assert changed.status_code == 303, changed.text
        assert "alice's role, extension and team are saved" in admin.get(changed.headers["location"]).text
        me = alice.get("/api/v1/me")
        assert me.status_code == 200 and me.json()["extension"] == "2009"
    assert not [e for e in _audit(env, "auth.credentials_revoked") if e.details["username"] == "alice"]


def test_a_role_change_from_the_identity_providers_claims_ends_the_older_tokens(
        sso_server: LiveServer, provider: Provider, env: CallvaultEnv) -> None:
    with env.runtime.db.unit_of_work() as session:
        integration_user(session, "tel-sso", env.runtime.clock)
    old = _password_only_token(sso_server, "tel-sso")["access_token"]
    provider.set_user("idp-tel", {"preferred_username": "tel-sso", "groups": ["cv-execs"], "amr": ["mfa"]})
    link(env, provider, "tel-sso", "idp-tel")
    with sso_server.client() as browser:
        assert sso_sign_in(browser, provider, "idp-tel").status_code == 200
        assert browser.get("/api/v1/me").json()["role"] == "executive"  # this sign-in, under the new rules
    with _as(sso_server, old) as tel:
        assert tel.get("/api/v1/me").status_code == 401
    [revoked] = [e for e in _audit(env, "auth.credentials_revoked") if e.details["username"] == "tel-sso"]
    assert (revoked.actor, revoked.details["reason"], revoked.details["to"]) == ("sso", "role changed", "executive")
