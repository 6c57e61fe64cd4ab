"""Account lifecycle over real HTTP and the CLI (issue 24 point 7): an MFA reset, a deactivation or a
password change ends every bearer token and web session of the account at once; MFA set-up needs an
administrator's one-time enrolment code; administrators deactivate, reactivate and reset passwords."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pyotp
from sqlalchemy import select
from typer.testing import CliRunner

from callvault.audit.models import AuditEntry
from callvault.cli.main import app as cli_app
from callvault.core.clock import FixedClock
from callvault.identity import account_codes
from callvault.identity import service as identity
from callvault.identity.models import AccountCode
from tests.api.test_auth_web import _csrf, web_sign_in
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer


def cli(env: CallvaultEnv, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)
    return result.exit_code, result.output


def test_an_mfa_reset_on_the_cli_ends_the_users_bearer_tokens_at_once(live: LiveServer) -> None:
    with live.client("alice") as alice:
        assert alice.get("/api/v1/me").status_code == 200
        code, output = cli(live.env, "users", "mfa-reset", "alice")
        assert code == 0, output
        assert alice.get("/api/v1/me").status_code == 401


def _fresh_token(server: LiveServer, username: str) -> str:
    with server.client() as client:
        return server.sign_in(client, username)


def _me(server: LiveServer, token: str) -> int:
    with server.client() as client:
        return client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code


def _token(server: LiveServer, username: str, password: str = PASSWORD, otp: str | None = None
           ) -> tuple[int, dict[str, Any]]:
    with server.client() as client:
        body: dict[str, Any] = {"username": username, "password": password}
        if otp is not None:
            body["otp"] = otp
        resp = client.post("/api/v1/auth/token", json=body)
    return resp.status_code, resp.json()


def _audit_actions(env: CallvaultEnv) -> list[str]:
    with env.runtime.db.unit_of_work() as session:
        return [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq))]


def _web_session(server: LiveServer, username: str) -> httpx.Client:
    client = httpx.Client(base_url=server.base_url, timeout=30)
    web_sign_in(client, server.env, username)
    return client


# --------------------------------------------------------------------------------------- MFA reset
def test_an_mfa_reset_through_the_api_ends_tokens_and_web_sessions_at_once(live: LiveServer) -> None:
    token = _fresh_token(live, "alice")
    browser = _web_session(live, "alice")
    assert _me(live, token) == 200 and browser.get("/api/v1/me").status_code == 200
    with live.client("admin") as admin:
        live.step_up(admin, "admin")  # a credential change needs a fresh code
        resp = admin.post("/api/v1/users/alice/mfa-reset")
        assert resp.status_code == 200 and resp.json()["credentials_ended"] >= 2, resp.text
    assert _me(live, token) == 401
    assert browser.get("/api/v1/me").status_code == 401
    browser.close()
    assert "auth.mfa_reset" in _audit_actions(live.env)


def test_only_an_administrator_may_reset_mfa_or_issue_codes(live: LiveServer) -> None:
    with live.client("lead") as lead:
        for action in ("mfa-reset", "enrolment-code", "deactivate", "password-reset"):
            assert lead.post(f"/api/v1/users/alice/{action}").status_code == 403
    with live.client("alice") as alice:
        assert alice.get("/api/v1/me").status_code == 200  # nothing happened to her


# ------------------------------------------------------------------------------------- enrolment
def test_after_an_mfa_reset_the_password_alone_cannot_enrol_an_authenticator(live: LiveServer) -> None:
    with live.client("admin") as admin:
        live.step_up(admin, "admin")  # a credential change needs a fresh code
        assert admin.post("/api/v1/users/lead/mfa-reset").status_code == 200
    status, body = _token(live, "lead")
    assert status == 200 and body["mfa_enrolment_required"] and "ask an administrator" in body["message"]
    with live.client() as attacker:
        attacker.headers["Authorization"] = f"Bearer {body['access_token']}"
        refused = attacker.post("/api/v1/me/mfa/enrol")
        assert refused.status_code == 422
        problem = refused.json()["problems"][0]
        assert problem["location"] == "enrolment_code" and "ask an administrator" in problem["message"]
        guessed = attacker.post("/api/v1/me/mfa/enrol", json={"enrolment_code": "AAAAA-AAAAA-AAAAA-AAAAA"})
        assert guessed.status_code == 422
        assert attacker.get("/api/v1/me").json()["mfa_enrolled"] is False


def test_an_enrolment_code_works_once_for_its_own_account_and_is_stored_hashed(live: LiveServer) -> None:
    with live.client("admin") as admin:
        live.step_up(admin, "admin")  # a credential change needs a fresh code
        admin.post("/api/v1/users/lead/mfa-reset")
        issued = admin.post("/api/v1/users/lead/enrolment-code", json={"ttl_minutes": 30})
        assert issued.status_code == 200, issued.text
        code = issued.json()["code"]
        bad_ttl = admin.post("/api/v1/users/lead/enrolment-code", json={"ttl_minutes": 100000})
        assert bad_ttl.status_code == 422 and "ttl_minutes" in bad_ttl.text
    with live.env.runtime.db.unit_of_work() as session:
        stored = session.scalars(select(AccountCode)).all()
        assert stored and all(code not in (r.code_sha256, r.id) for r in stored)
    # bob (signed in, MFA set up) cannot use lead's code.
    with live.client("bob") as bob:
        assert bob.post("/api/v1/me/mfa/enrol", json={"enrolment_code": code}).status_code in (409, 422)
    _, body = _token(live, "lead")
    with live.client() as client:
        client.headers["Authorization"] = f"Bearer {body['access_token']}"
        enrol = client.post("/api/v1/me/mfa/enrol", json={"enrolment_code": code})
        assert enrol.status_code == 200, enrol.text
        done = client.post("/api/v1/me/mfa/confirm", json={"code": pyotp.TOTP(enrol.json()["secret"]).now(),
                                                           "enrolment_code": code})
        assert done.status_code == 200, done.text
    with live.client("admin") as admin:
        live.step_up(admin, "admin")  # a credential change needs a fresh code
        admin.post("/api/v1/users/lead/mfa-reset")
    _, body = _token(live, "lead")
    with live.client() as client:
        client.headers["Authorization"] = f"Bearer {body['access_token']}"
        again = client.post("/api/v1/me/mfa/enrol", json={"enrolment_code": code})
        assert again.status_code == 422  # spent
    actions = _audit_actions(live.env)
    assert "auth.account_code_issued" in actions and "auth.account_code_used" in actions


def test_an_enrolment_code_expires(isolated_env: CallvaultEnv) -> None:
    env = isolated_env
    now = env.runtime.clock.now()
    with env.runtime.db.unit_of_work() as session:
        user = identity.get_user(session, "lead")
        issued = account_codes.issue(session, user=user, purpose="enrol", actor="test", ttl=timedelta(minutes=5),
                                     clock=FixedClock(now))
        assert account_codes.find(session, user=user, purpose="enrol", code=issued.code,
                                  clock=FixedClock(now + timedelta(minutes=4))) is not None
        assert account_codes.find(session, user=user, purpose="enrol", code=issued.code,
                                  clock=FixedClock(now + timedelta(minutes=5))) is None


def test_the_cli_issues_an_enrolment_code_the_person_enrols_with(live: LiveServer) -> None:
    code, output = cli(live.env, "users", "mfa-reset", "lead")
    assert code == 0 and "enrolment-code" in output
    code, output = cli(live.env, "users", "enrolment-code", "lead", "--ttl", "30m")
    assert code == 0, output
    enrolment_code = output.strip().splitlines()[-1]
    _, body = _token(live, "lead")
    with live.client() as client:
        client.headers["Authorization"] = f"Bearer {body['access_token']}"
        assert client.post("/api/v1/me/mfa/enrol", json={"enrolment_code": enrolment_code}).status_code == 200
    code, output = cli(live.env, "users", "enrolment-code", "lead", "--ttl", "30d")
    assert code == 2 and "ttl" in output and "Traceback" not in output


# ---------------------------------------------------------------------------------- deactivation
def test_a_deactivated_user_cannot_sign_in_and_their_tokens_and_sessions_end(live: LiveServer) -> None:
    token = _fresh_token(live, "bob")
    browser = _web_session(live, "bob")
    with live.client("admin") as admin:
        resp = admin.post("/api/v1/users/bob/deactivate")
        assert resp.status_code == 200 and resp.json()["active"] is False
        listed = {u["username"]: u for u in admin.get("/api/v1/users").json()}
        assert listed["bob"]["active"] is False
    assert _me(live, token) == 401
    assert browser.get("/api/v1/me").status_code == 401
    browser.close()
    status, body = _token(live, "bob", otp=live.env.otp("bob"))
    assert status == 401 and "deactivated" in body["message"]
    wrong, body = _token(live, "bob", password="not-the-password-at-all")
    assert wrong == 401 and "deactivated" not in body["message"]  # no hint for someone guessing
    with live.client("admin") as admin:
        assert admin.post("/api/v1/users/bob/reactivate").json()["active"] is True
    assert _token(live, "bob", otp=live.env.otp("bob"))[0] == 200
    actions = _audit_actions(live.env)
    assert "user.deactivated" in actions and "user.reactivated" in actions


def test_the_last_active_administrator_cannot_be_deactivated(live: LiveServer) -> None:
    code, output = cli(live.env, "users", "deactivate", "it")
    assert code == 0, output
    with live.client("admin") as admin:
        resp = admin.post("/api/v1/users/admin/deactivate")
        assert resp.status_code == 409 and "last active administrator" in resp.json()["message"]
        assert admin.get("/api/v1/me").status_code == 200
    code, output = cli(live.env, "users", "deactivate", "admin")
    assert code != 0 and "last active administrator" in output and "Traceback" not in output
    code, output = cli(live.env, "users", "reactivate", "it")
    assert code == 0 and "active again" in output


# ------------------------------------------------------------------------------------- passwords
NEW_PASSWORD = "purple-otter-meadow-lamp"


def test_a_user_changes_their_password_and_their_other_tokens_end(live: LiveServer) -> None:
    other = _fresh_token(live, "alice")
    with live.client("alice") as alice:
        wrong = alice.post("/api/v1/me/password", json={"current_password": "nope-nope-nope",
                                                        "new_password": NEW_PASSWORD, "otp": live.env.otp("alice")})
        assert wrong.status_code == 422 and wrong.json()["problems"][0]["location"] == "current_password"
        no_code = alice.post("/api/v1/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
        assert no_code.status_code == 422 and no_code.json()["problems"][0]["location"] == "otp"
        weak = alice.post("/api/v1/me/password", json={"current_password": PASSWORD, "new_password": "password123",
                                                       "otp": live.env.otp("alice")})
        assert weak.status_code == 422 and weak.json()["problems"][0]["location"] == "new_password"
        assert _me(live, other) == 200  # nothing changed yet
        done = alice.post("/api/v1/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                       "otp": live.env.otp("alice")})
        assert done.status_code == 204, done.text
        assert alice.get("/api/v1/me").status_code == 200  # the credential used goes on
    assert _me(live, other) == 401
    assert _token(live, "alice", otp=live.env.otp("alice"))[0] == 401
    assert _token(live, "alice", password=NEW_PASSWORD, otp=live.env.otp("alice"))[0] == 200
    assert "user.password_changed" in _audit_actions(live.env)


def test_an_administrators_password_reset_issues_a_one_time_code_for_a_new_password(live: LiveServer) -> None:
    token = _fresh_token(live, "alice")
    with live.client("admin") as admin:
        live.step_up(admin, "admin")  # a credential change needs a fresh code
        resp = admin.post("/api/v1/users/alice/password-reset")
        assert resp.status_code == 200, resp.text
        reset_code = resp.json()["code"]
    assert _me(live, token) == 401
    assert _token(live, "alice", otp=live.env.otp("alice"))[0] == 401  # the old password is useless now
    with live.client() as anonymous:
        body = {"username": "alice", "reset_code": reset_code, "new_password": NEW_PASSWORD}
        no_otp = anonymous.post("/api/v1/auth/password-reset", json=body)
        assert no_otp.status_code == 422 and no_otp.json()["problems"][0]["location"] == "otp"
        wrong_user = anonymous.post("/api/v1/auth/password-reset", json={**body, "username": "bob",
                                                                        "otp": live.env.otp("bob")})
        assert wrong_user.status_code == 422 and wrong_user.json()["problems"][0]["location"] == "reset_code"
        done = anonymous.post("/api/v1/auth/password-reset", json={**body, "otp": live.env.otp("alice")})
        assert done.status_code == 204, done.text
        again = anonymous.post("/api/v1/auth/password-reset", json={**body, "new_password": "another-fine-phrase-here",
                                                                   "otp": live.env.otp("alice")})
        assert again.status_code == 422  # the code works once
    assert _token(live, "alice", password=NEW_PASSWORD, otp=live.env.otp("alice"))[0] == 200
    code, output = cli(live.env, "users", "password-reset", "bob")
    assert code == 0 and len(output.strip().splitlines()[-1]) == 23
    actions = _audit_actions(live.env)
    assert actions.count("user.password_reset") == 2 and "auth.account_code_used" in actions


# ------------------------------------------------------------------------------------ web admin
def test_the_users_page_deactivates_and_issues_codes(live: LiveServer) -> None:
    token = _fresh_token(live, "bob")
    browser = _web_session(live, "admin")
    page = browser.get("/admin/users")
    assert 'action="/admin/users/bob/deactivate"' in page.text
    csrf = _csrf(page.text)
    done = browser.post("/admin/users/bob/deactivate", data={"csrf_token": csrf})
    assert done.status_code == 303
    assert "bob is deactivated" in browser.get(done.headers["location"]).text
    assert _me(live, token) == 401
    issued = browser.post("/admin/users/lead/enrolment-code", data={"csrf_token": csrf,
                                                                   "step_up_code": live.env.otp("admin")})
    assert issued.status_code == 200 and 'id="account-code"' in issued.text
    assert issued.headers["cache-control"] == "no-store"
    refused = browser.post("/admin/users/lead/enrolment-code", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    browser.close()
