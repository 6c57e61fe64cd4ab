"""Finding W2: changing one's password must not be a guessing oracle for the current password or the one-time
code. Wrong answers there count towards the same guessing limits as wrong sign-ins (``identity.throttle``):
after five, the account's password and code checks are locked from that address, on the API, on the account
page and at sign-in alike, with the message sign-in gives, and every failure and lockout is in the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.identity import throttle
from tests.api.test_auth_web import _csrf, web_sign_in
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer, SteppingClock

NEW_PASSWORD = "purple-otter-meadow-lamp"
WRONG_PASSWORD = "surely-this-is-not-it"
LOCKED = "too many failed sign-ins"


@pytest.fixture()
def live(counters_env: CallvaultEnv) -> Iterator[LiveServer]:
    """A live server whose guessing counters are in the database, then in Redis (the same rules for both)."""
    live = LiveServer(counters_env)
    live.start()
    yield live
    live.stop()


def _sign_in(server: LiveServer, username: str, password: str = PASSWORD) -> tuple[int, dict[str, Any]]:
    with server.client() as anonymous:
        resp = anonymous.post("/api/v1/auth/token", json={"username": username, "password": password,
                                                          "otp": server.env.otp(username)})
    return resp.status_code, resp.json()


def _audit(env: CallvaultEnv, actor: str) -> list[tuple[str, str, str]]:
    with env.runtime.db.unit_of_work() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.actor == actor).order_by(AuditEntry.seq))
        return [(e.action, e.decision, e.reason) for e in rows]


def _wrong_codes(env: CallvaultEnv, username: str) -> list[str]:
    """``PAIR_LIMIT`` six-digit codes none of which the server could accept now (or a few steps either side)."""
    now = env.runtime.clock.now()
    totp = pyotp.TOTP(env.totp_secrets[username])
    good = {totp.at(now + timedelta(seconds=30 * step)) for step in range(-3, 4)}
    return [code for code in (f"{n}" * 6 for n in range(10)) if code not in good][:throttle.PAIR_LIMIT]


def _after_the_lockout(env: CallvaultEnv) -> None:
    clock = env.runtime.clock
    assert isinstance(clock, SteppingClock)
    clock.advance_past(clock.now() + throttle.LOCKOUT + timedelta(seconds=1))


def test_wrong_current_passwords_on_the_api_lock_the_account_like_wrong_sign_ins(live: LiveServer) -> None:
    env = live.env
    with live.client("alice") as alice:
        for _ in range(throttle.PAIR_LIMIT):
            wrong = alice.post("/api/v1/me/password", json={"current_password": WRONG_PASSWORD,
                                                            "new_password": NEW_PASSWORD, "otp": env.otp("alice")})
            assert wrong.status_code == 422 and wrong.json()["problems"][0]["location"] == "current_password"
        # Locked now: even the right password and a good code are refused, with the words sign-in uses.
        locked = alice.post("/api/v1/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                         "otp": env.otp("alice")})
        assert locked.status_code == 422, locked.text
        assert LOCKED in locked.json()["message"] and "UTC" in locked.json()["message"]
    # The password did not change, and signing in from here is locked too: one set of limits.
    status, body = _sign_in(live, "alice")
    assert status == 401 and LOCKED in body["message"]
    actions = _audit(env, "alice")
    refusals = [a for a in actions if a[:2] == ("auth.password_change", "deny")]
    assert len(refusals) == throttle.PAIR_LIMIT + 1 and LOCKED in refusals[-1][2]
    assert ("auth.lockout", "deny") in [a[:2] for a in actions]
    assert ("user.password_changed", "info") not in [a[:2] for a in actions]
    # The lock lifts by itself, as a sign-in lock does; then the owner changes the password.
    _after_the_lockout(env)
    with live.client("alice") as alice:
        done = alice.post("/api/v1/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                       "otp": env.otp("alice")})
        assert done.status_code == 204, done.text
    assert _sign_in(live, "alice", NEW_PASSWORD)[0] == 200


def test_wrong_one_time_codes_on_the_api_count_and_lock_too(live: LiveServer) -> None:
    env = live.env
    with live.client("bob") as bob:
        for guess in _wrong_codes(env, "bob"):
            wrong = bob.post("/api/v1/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                          "otp": guess})
            assert wrong.status_code == 422 and wrong.json()["problems"][0]["location"] == "otp"
        locked = bob.post("/api/v1/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                       "otp": env.otp("bob")})
        assert locked.status_code == 422 and LOCKED in locked.json()["message"]
    assert LOCKED in _sign_in(live, "bob")[1]["message"]
    assert ("auth.lockout", "deny") in [a[:2] for a in _audit(env, "bob")]


def test_wrong_current_passwords_on_the_account_page_lock_it_like_wrong_sign_ins(live: LiveServer) -> None:
    env = live.env
    with httpx.Client(base_url=live.base_url, timeout=30, headers={"Accept": "text/html"}) as browser:
        web_sign_in(browser, env, "lead")
        csrf = _csrf(browser.get("/account").text)
        for _ in range(throttle.PAIR_LIMIT):
            wrong = browser.post("/account/password", data={
                "csrf_token": csrf, "current_password": WRONG_PASSWORD, "otp": env.otp("lead"),
                "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
            assert wrong.status_code == 422 and "is not your current password" in wrong.text
        locked = browser.post("/account/password", data={
            "csrf_token": csrf, "current_password": PASSWORD, "otp": env.otp("lead"),
            "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
        assert locked.status_code == 422 and LOCKED in locked.text and 'id="password-problems"' in locked.text
    # The sign-in page from the same address is locked as well.
    with httpx.Client(base_url=live.base_url, timeout=30) as other:
        form = other.get("/")
        refused = other.post("/login", data={"username": "lead", "password": PASSWORD, "csrf_token": _csrf(form.text)})
        assert refused.status_code == 401 and "Too many failed sign-ins" in refused.text
    actions = _audit(env, "lead")
    assert ("auth.lockout", "deny") in [a[:2] for a in actions]
    assert len([a for a in actions if a[:2] == ("auth.password_change", "deny")]) == throttle.PAIR_LIMIT + 1


def test_wrong_one_time_codes_with_an_administrators_reset_code_count_and_lock_too(live: LiveServer) -> None:
    """A reset code that went astray (a forwarded mail) must not open an unlimited oracle for the person's code."""
    env = live.env
    with live.client("admin") as admin:
        live.step_up(admin, "admin")  # a credential change needs a fresh code
        issued = admin.post("/api/v1/users/exec/password-reset")
        assert issued.status_code == 200, issued.text
    body = {"username": "exec", "reset_code": issued.json()["code"], "new_password": NEW_PASSWORD}
    with live.client() as anonymous:
        for guess in _wrong_codes(env, "exec"):
            wrong = anonymous.post("/api/v1/auth/password-reset", json={**body, "otp": guess})
            assert wrong.status_code == 422 and wrong.json()["problems"][0]["location"] == "otp"
        locked = anonymous.post("/api/v1/auth/password-reset", json={**body, "otp": env.otp("exec")})
        assert locked.status_code == 422 and LOCKED in locked.json()["message"]
        _after_the_lockout(env)
        done = anonymous.post("/api/v1/auth/password-reset", json={**body, "otp": env.otp("exec")})
        assert done.status_code == 204, done.text
    assert _sign_in(live, "exec", NEW_PASSWORD)[0] == 200
    assert ("auth.lockout", "deny") in [a[:2] for a in _audit(env, "exec")]
