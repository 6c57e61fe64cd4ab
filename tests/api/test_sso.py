"""Single sign-on against a real OpenID Connect provider on loopback (oidc-provider-mock, RS256 ID
tokens, JWKS): the whole authorization-code flow through the real server, followed by hand like a
browser; role mapping; tokens that must be refused; the TOTP step when the provider proves no MFA."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.core.clock import system_clock
from callvault.core.settings import OidcSettings
from callvault.identity import oidc
from callvault.identity import service as identity
from callvault.identity.models import User
from callvault.policy import service as policy_service
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer
from tests.support.oidc_provider import Provider, running_provider

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CLIENT_ID = "callvault-test"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


def _sso_settings(provider: Provider, **changes: object) -> OidcSettings:
    base = OidcSettings(issuer=provider.issuer, client_id=CLIENT_ID, client_secret="test-client-secret",
                        role_map=(("cv-leads", "support_lead"), ("cv-agents", "specialist"),
                                  ("cv-execs", "executive")),
                        mfa_amr=("mfa", "otp"))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sso_server(env: CallvaultEnv, provider: Provider) -> Iterator[LiveServer]:
    env.runtime.settings = dataclasses.replace(env.settings, oidc=_sso_settings(provider))
    live = LiveServer(env)
    live.start()
    yield live
    live.stop()


@pytest.fixture()
def configure(env: CallvaultEnv, provider: Provider) -> Iterator[Callable[..., None]]:
    """Change the SSO settings for one test (the app reads them per request), then put them back."""
    before = env.runtime.settings

    def apply(**changes: object) -> None:
        env.runtime.settings = dataclasses.replace(before, oidc=_sso_settings(provider, **changes))

    yield apply
    env.runtime.settings = before


def _start(browser: httpx.Client) -> str:
    resp = browser.get("/login/sso")
    assert resp.status_code == 303, resp.text
    return resp.headers["location"]


def sso_sign_in(browser: httpx.Client, provider: Provider, sub: str) -> httpx.Response:
    """The browser's trip: our /login/sso → the provider's page (sign in as ``sub``) → our callback."""
    callback = provider.approve(_start(browser), sub)
    return browser.get(callback)


def _add_user(env: CallvaultEnv, username: str, role: str = "specialist") -> None:
    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        user = identity.create_user(session, actor="test", policy=policy, username=username, role=role,
                                    password=PASSWORD, extension=None, team="customer_support")
        identity.acknowledge_policy(session, user=user, policy=policy)


def link(env: CallvaultEnv, provider: Provider, username: str, sub: str) -> None:
    """What an administrator does with ``callvault users sso-link USERNAME --subject SUB`` (audited, via admin)."""
    with env.runtime.db.unit_of_work() as session:
        oidc.link(session, user=identity.get_user(session, username), issuer=provider.issuer, subject=sub,
                  via="admin", actor="cli", actor_role="admin")


def _audit(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))
        session.expunge_all()
        return rows


def test_the_login_page_offers_sso_when_configured(sso_server: LiveServer) -> None:
    with sso_server.client() as browser:
        page = browser.get("/")
    assert 'href="/login/sso"' in page.text and "Sign in with SSO" in page.text


def test_code_flow_with_pkce_signs_an_existing_account_in(sso_server: LiveServer, provider: Provider,
                                                          env: CallvaultEnv) -> None:
    provider.set_user("idp-lead", {"preferred_username": "lead", "groups": ["cv-leads"], "amr": ["pwd", "mfa"]})
    link(env, provider, "lead", "idp-lead")
    with sso_server.client() as browser:
        authorize = _start(browser)
        sent = dict(httpx.URL(authorize).params)
        assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
        assert sent["nonce"] and sent["state"] and sent["client_id"] == CLIENT_ID
        done = browser.get(provider.approve(authorize, "idp-lead"))
        assert done.status_code == 200, done.text
        # PKCE: the verifier sent with the code hashes to the challenge sent with the authorization request.
        exchange = provider.token_requests[-1]
        assert exchange["grant_type"] == "authorization_code" and "client_secret" not in exchange
        digest = hashlib.sha256(exchange["code_verifier"].encode()).digest()
        assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == sent["code_challenge"]
        assert 'url=/"' in done.text  # straight in: the provider proved a second factor
        me = browser.get("/api/v1/me").json()
        assert (me["username"], me["role"]) == ("lead", "support_lead")
        assert "Recordings" in browser.get("/").text
    signed_in = [e for e in _audit(env, "auth.sign_in") if e.actor == "lead" and e.decision == "allow"]
    assert signed_in[-1].details["method"] == "oidc+idp-mfa"
    assert any(e.details["username"] == "lead" and e.details["via"] == "admin" for e in _audit(env, "user.sso_linked"))


def test_a_state_is_used_once_and_only_in_the_browser_that_started_it(sso_server: LiveServer,
                                                                       provider: Provider, env: CallvaultEnv) -> None:
    provider.set_user("idp-exec", {"preferred_username": "exec", "groups": ["cv-execs"], "amr": ["mfa"]})
    link(env, provider, "exec", "idp-exec")
    with sso_server.client() as browser, sso_server.client() as attacker:
        callback = provider.approve(_start(browser), "idp-exec")
        stolen = attacker.get(callback)  # a login-CSRF: someone else's code pushed into this browser
        assert stolen.status_code == 401 and "not started in this browser" in stolen.text
        assert browser.get(callback).status_code == 200
        assert browser.get(callback).status_code == 401  # replay of the same answer


def test_claims_change_the_role_and_the_change_is_audited(sso_server: LiveServer, provider: Provider,
                                                          env: CallvaultEnv) -> None:
    _add_user(env, "carol", role="specialist")
    provider.set_user("idp-carol", {"preferred_username": "carol", "groups": ["staff", "cv-leads"], "amr": ["mfa"]})
    link(env, provider, "carol", "idp-carol")
    with sso_server.client() as browser:
        assert sso_sign_in(browser, provider, "idp-carol").status_code == 200
        assert browser.get("/api/v1/me").json()["role"] == "support_lead"
    change = [e for e in _audit(env, "user.role_changed") if e.details["username"] == "carol"]
    assert change and change[-1].details["from"] == "specialist" and change[-1].details["to"] == "support_lead"
    # The subject is linked now: a renamed IdP account still reaches carol, with the role its groups give.
    provider.set_user("idp-carol", {"preferred_username": "carol.renamed", "groups": ["cv-agents"], "amr": ["mfa"]})
    with sso_server.client() as browser:
        assert sso_sign_in(browser, provider, "idp-carol").status_code == 200
        me = browser.get("/api/v1/me").json()
    assert (me["username"], me["role"]) == ("carol", "specialist")


def test_groups_that_map_to_no_role_are_refused(sso_server: LiveServer, provider: Provider,
                                                env: CallvaultEnv) -> None:
    provider.set_user("idp-bob", {"preferred_username": "bob", "groups": ["marketing"], "amr": ["mfa"]})
    with sso_server.client() as browser:
        resp = sso_sign_in(browser, provider, "idp-bob")
        assert resp.status_code == 401 and "maps to a role" in resp.text
        assert browser.get("/api/v1/me").status_code == 401
    refused = [e for e in _audit(env, "auth.sign_in") if e.decision == "deny" and e.details.get("method") == "oidc"]
    assert "maps to a role" in refused[-1].reason


def test_an_unknown_account_is_refused_unless_just_in_time_is_on(
        sso_server: LiveServer, provider: Provider, env: CallvaultEnv, configure: Callable[..., None]) -> None:
    provider.set_user("idp-zed", {"preferred_username": "zed", "groups": ["cv-agents"], "amr": ["pwd"]})
    with sso_server.client() as browser:
        resp = sso_sign_in(browser, provider, "idp-zed")
        assert resp.status_code == 401 and "not linked to a callvault account" in resp.text
    configure(provisioning="jit")
    with sso_server.client() as browser:
        resp = sso_sign_in(browser, provider, "idp-zed")
        # Created as a specialist; the policy wants MFA for that role and the provider proved none,
        # and a new account has no TOTP yet: MFA set-up comes first, nothing else is reachable.
        assert resp.status_code == 200 and 'url=/mfa/enrol"' in resp.text
        assert browser.get("/api/v1/me").status_code == 401
        assert "Set up two-step sign-in" in browser.get("/mfa/enrol").text
    created = [e for e in _audit(env, "user.created") if e.details.get("username") == "zed"]
    assert created and created[0].details["via"] == "oidc just-in-time"


def test_without_mfa_from_the_provider_our_totp_step_is_owed(sso_server: LiveServer, provider: Provider,
                                                              env: CallvaultEnv) -> None:
    provider.set_user("idp-alice", {"preferred_username": "alice", "groups": ["cv-agents"], "amr": ["pwd"]})
    link(env, provider, "alice", "idp-alice")
    with sso_server.client() as browser:
        resp = sso_sign_in(browser, provider, "idp-alice")
        assert resp.status_code == 200 and 'url=/mfa"' in resp.text
        assert browser.get("/api/v1/me").status_code == 401  # half signed in reaches nothing
        found = CSRF.search(browser.get("/mfa").text)
        assert found, "the one-time code form"
        wrong = browser.post("/mfa", data={"code": "000000", "csrf_token": found.group(1)})
        assert wrong.status_code == 401
        done = browser.post("/mfa", data={"code": env.otp("alice"), "csrf_token": found.group(1)})
        assert done.status_code == 303
        assert browser.get("/api/v1/me").json()["username"] == "alice"
    signed_in = [e for e in _audit(env, "auth.sign_in") if e.actor == "alice" and e.decision == "allow"]
    assert signed_in[-1].details["method"] == "oidc+totp"


@pytest.mark.parametrize(("claims", "why"), [
    ({"aud": "another-app"}, "another application"),
    ({"iss": "https://idp.evil.example"}, "not the configured provider"),
    ({"nonce": "from-an-earlier-sign-in"}, "nonce mismatch"),
    ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
])
def test_tokens_that_do_not_answer_this_sign_in_are_refused(sso_server: LiveServer, provider: Provider,
                                                            env: CallvaultEnv, claims: dict[str, object],
                                                            why: str) -> None:
    provider.set_user("idp-bad", {"preferred_username": "exec", "groups": ["cv-execs"], "amr": ["mfa"], **claims})
    with sso_server.client() as browser:
        resp = sso_sign_in(browser, provider, "idp-bad")
        assert resp.status_code == 401 and why in resp.text
        assert "cv_session" not in browser.cookies
        assert browser.get("/api/v1/me").status_code == 401
    assert why in _audit(env, "auth.sign_in")[-1].reason


def test_a_token_signed_with_another_key_is_refused(provider: Provider) -> None:
    client = oidc.ProviderClient(_sso_settings(provider))
    published = client.keys()
    published_kid = str(next(iter(published)).kid)
    forged_key = RSAKey.generate_key(2048, parameters={"kid": published_kid})
    now = int(time.time())
    forged = jwt.encode({"alg": "RS256", "kid": forged_key.kid},
                        {"iss": provider.issuer, "aud": CLIENT_ID, "sub": "x", "exp": now + 300, "iat": now,
                         "nonce": "n"}, forged_key)
    with pytest.raises(oidc.SsoRefused, match="signature"):
        oidc.validate_id_token(forged, client=client, nonce="n", now=system_clock.now())
    unsigned = jwt.encode({"alg": "HS256"}, {"iss": provider.issuer, "aud": CLIENT_ID, "sub": "x",
                                             "exp": now + 300, "nonce": "n"},
                          OctKey.generate_key(256))
    with pytest.raises(oidc.SsoRefused, match="signature"):
        oidc.validate_id_token(unsigned, client=client, nonce="n", now=system_clock.now())


def test_a_deactivated_account_cannot_use_sso(sso_server: LiveServer, provider: Provider, env: CallvaultEnv) -> None:
    _add_user(env, "dora")
    with env.runtime.db.unit_of_work() as session:
        session.scalar(select(User).where(User.username == "dora")).active = False  # type: ignore[union-attr]
    provider.set_user("idp-dora", {"preferred_username": "dora", "groups": ["cv-agents"], "amr": ["mfa"]})
    link(env, provider, "dora", "idp-dora")
    with sso_server.client() as browser:
        resp = sso_sign_in(browser, provider, "idp-dora")
    assert resp.status_code == 401 and "deactivated" in resp.text


def test_the_flow_may_start_on_one_node_and_finish_on_another(sso_server: LiveServer, provider: Provider,
                                                              env: CallvaultEnv) -> None:
    """State, nonce and PKCE verifier live in the database: a second node (its own app, its own
    provider client) finishes a sign-in the first one started."""
    other = LiveServer(env)
    other.start()
    try:
        provider.set_user("idp-exec", {"preferred_username": "exec", "groups": ["cv-execs"], "amr": ["mfa"]})
        link(env, provider, "exec", "idp-exec")
        with sso_server.client() as browser:
            callback = provider.approve(_start(browser), "idp-exec")
            on_other = callback.replace(sso_server.base_url, other.base_url)
            assert on_other != callback
            assert browser.get(on_other).status_code == 200  # cookies are per host, not per port
            assert browser.get(other.base_url + "/api/v1/me").json()["username"] == "exec"
            assert browser.get("/api/v1/me").json()["username"] == "exec"  # and node one knows the session
    finally:
        other.stop()
