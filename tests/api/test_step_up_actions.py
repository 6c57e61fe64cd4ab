"""Step-up before the actions that make credentials or change who reaches what (RELIABILITY 17, pen-test
finding): resetting someone's MFA or password, issuing an enrolment code, creating an API token, loading a
policy. A hijacked web session or a stolen interactive token signed in hours ago is refused until its holder
types a fresh one-time code; the CLI (the server operator's) asks for none. Approving a caller's request is
covered with the subject-request tests (``test_subject_requests``, ``test_subject_request_erasure``)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.identity import service as identity
from callvault.identity.models import ApiToken, User
from tests.api.test_auth_web import _csrf, web_sign_in
from tests.conftest import POLICY_A
from tests.support.env import CallvaultEnv, LiveServer


def _audit(env: CallvaultEnv, action: str) -> list[tuple[str, str]]:
    with env.runtime.db.unit_of_work() as session:
        return [(e.actor, e.decision) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq))]


def _browser(server: LiveServer, username: str) -> httpx.Client:
    client = httpx.Client(base_url=server.base_url, timeout=30, headers={"Accept": "text/html"})
    web_sign_in(client, server.env, username)
    return client


def _tokens_of(env: CallvaultEnv, username: str) -> int:
    with env.runtime.db.unit_of_work() as session:
        user = session.scalar(select(User).where(User.username == username))
        return len(list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id))))  # type: ignore


@pytest.mark.parametrize("action", ["mfa-reset", "password-reset", "enrolment-code"])
def test_the_api_refuses_a_credential_change_without_a_fresh_code_and_does_it_with_one(
        live: LiveServer, action: str) -> None:
    with live.client("alice") as alice:
        assert alice.get("/api/v1/me").status_code == 200
    with live.client("admin") as admin:
        refused = admin.post(f"/api/v1/users/alice/{action}")
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "step_up_required"
        assert "one-time code" in refused.json()["message"] and "/auth/step-up" in refused.json()["message"]
        with live.client("alice") as alice:
            assert alice.get("/api/v1/me").status_code == 200, "nothing happened to alice"
        live.step_up(admin, "admin")
        done = admin.post(f"/api/v1/users/alice/{action}")
        assert done.status_code == 200, done.text


def test_a_scoped_admin_token_never_changes_credentials_even_after_a_step_up(live: LiveServer) -> None:
    with live.env.runtime.db.unit_of_work() as session:
        admin = identity.get_user(session, "admin")
        issued = identity.issue_token(session, user=admin, ttl_seconds=3600, name="bot", scopes=("admin",),
                                      clock=live.env.runtime.clock)
    with live.client(headers={"Authorization": f"Bearer {issued.token}"}) as bot:
        refused = bot.post("/api/v1/users/alice/mfa-reset")
        assert refused.status_code == 403 and refused.json()["error"] == "step_up_required", refused.text
        assert "nobody to type" in refused.json()["message"]


def test_the_users_page_asks_for_the_code_before_a_reset_and_counts_a_wrong_one(live: LiveServer) -> None:
    with live.client("alice") as alice:
        assert alice.get("/api/v1/me").status_code == 200
    browser = _browser(live, "admin")
    page = browser.get("/admin/users")
    assert page.text.count('name="step_up_code"') >= 3, "the credential actions ask for the code in place"
    csrf = _csrf(page.text)

    missing = browser.post("/admin/users/alice/mfa-reset", data={"csrf_token": csrf})
    assert missing.status_code == 403 and "needs your one-time code" in missing.text
    wrong = browser.post("/admin/users/alice/mfa-reset", data={"csrf_token": csrf, "step_up_code": "000000"})
    assert wrong.status_code == 403 and "wrong, already used" in wrong.text
    assert ("admin", "deny") in _audit(live.env, "auth.step_up")
    assert _audit(live.env, "auth.mfa_reset") == []
    with live.client("alice") as alice:
        assert alice.get("/api/v1/me").status_code == 200, "a refused reset left alice signed in"

    done = browser.post("/admin/users/alice/mfa-reset", data={"csrf_token": csrf,
                                                              "step_up_code": live.env.otp("admin")})
    assert done.status_code == 303, done.text
    assert "MFA was reset for alice" in browser.get(done.headers["location"]).text
    # Within CALLVAULT_STEP_UP_SECONDS the session needs no second code, and the page no longer asks.
    assert 'name="step_up_code"' not in browser.get("/admin/users").text
    issued = browser.post("/admin/users/bob/password-reset", data={"csrf_token": csrf})
    assert issued.status_code == 200 and 'id="account-code"' in issued.text
    browser.close()


def test_the_users_page_creates_a_token_only_with_a_fresh_code(live: LiveServer) -> None:
    browser = _browser(live, "admin")
    csrf = _csrf(browser.get("/admin/users").text)
    form = {"csrf_token": csrf, "user": "admin", "scope": "recordings:read", "days": "30", "name": "reader"}
    before = _tokens_of(live.env, "admin")
    refused = browser.post("/admin/tokens", data=form)
    assert refused.status_code == 403 and "creating an API token needs your one-time code" in refused.text
    assert 'value="reader"' in refused.text, "what was typed is kept"
    assert _tokens_of(live.env, "admin") == before and _audit(live.env, "auth.token_created") == []
    made = browser.post("/admin/tokens", data={**form, "step_up_code": live.env.otp("admin")})
    assert made.status_code == 200 and 'id="secret-once"' in made.text, made.text
    assert _tokens_of(live.env, "admin") == before + 1
    browser.close()


def test_the_policy_page_loads_a_policy_only_with_a_fresh_code(live: LiveServer) -> None:
    text = Path(POLICY_A).read_text()
    newer = re.sub(r'^version: .*$', 'version: "2099.1"', text, count=1, flags=re.M)
    newer = re.sub(r"^effective_from: .*$", "effective_from: 2099-01-01", newer, count=1, flags=re.M)
    browser = _browser(live, "admin")
    csrf = _csrf(browser.get("/admin/policy").text)
    form = {"csrf_token": csrf, "text": newer, "source": "policy.yaml"}
    refused = browser.post("/admin/policy/load", data=form)
    assert refused.status_code == 403 and "loading a policy needs your one-time code" in refused.text
    assert 'action="/admin/policy/load"' in refused.text, "the checked file comes back with its Load button"
    assert [a for a, _ in _audit(live.env, "policy.loaded")] == ["cli:root"], "nothing was loaded"
    loaded = browser.post("/admin/policy/load", data={**form, "step_up_code": live.env.otp("admin")})
    assert loaded.status_code == 303 and "done=loaded" in loaded.headers["location"], loaded.text
    assert [a for a, _ in _audit(live.env, "policy.loaded")] == ["cli:root", "admin"]
    browser.close()
