"""Signing in over real HTTP: one-time codes (replay, expiry, recovery codes, set-up), guessing limits,
scoped integration tokens, and revocation that takes effect at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from typer.testing import CliRunner

from callvault.audit.models import AuditEntry
from callvault.cli.main import app as cli_app
from callvault.core.clock import FixedClock
from callvault.core.errors import InvalidInput
from callvault.identity import account_codes, mfa, throttle
from callvault.identity import service as identity
from callvault.identity.models import SignInThrottle
from callvault.policy import service as policy_service
from tests.api.test_auth_web import web_sign_in
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer


def _actions(env: CallvaultEnv, actor: str | None = None) -> list[tuple[str, str, str]]:
    with env.runtime.db.unit_of_work() as session:
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        if actor:
            stmt = stmt.where(AuditEntry.actor == actor)
        return [(e.action, e.decision, e.reason) for e in session.scalars(stmt)]


def _token(server: LiveServer, username: str, otp: str | None,
           password: str = PASSWORD) -> tuple[int, dict[str, Any]]:
    with server.client() as anonymous:
        body: dict[str, Any] = {"username": username, "password": password}
        if otp is not None:
            body["otp"] = otp
        resp = anonymous.post("/api/v1/auth/token", json=body)
    return resp.status_code, resp.json()


@pytest.fixture()
def guarded(counters_env: CallvaultEnv) -> Iterator[LiveServer]:
    """A live server whose guessing counters are in the database, then in Redis (the same rules for both)."""
    live = LiveServer(counters_env)
    live.start()
    yield live
    live.stop()


# ------------------------------------------------------------------------------------------ TOTP
def test_password_alone_is_not_enough_when_mfa_is_set_up(server: LiveServer, env: CallvaultEnv) -> None:
    status, body = _token(server, "exec", None)
    assert status == 401
    assert "otp" in body["message"]
    assert _actions(env, "exec")[-1][0] == "auth.password_verified"


def test_a_one_time_code_works_once_and_a_replay_is_refused(server: LiveServer, env: CallvaultEnv) -> None:
    code = env.otp("exec")
    first, _ = _token(server, "exec", code)
    replay, body = _token(server, "exec", code)
    assert first == 200
    assert replay == 401
    assert body["message"] == identity.WRONG_CREDENTIALS, "as a wrong password: the password is not confirmed"
    assert ("auth.sign_in", "deny", identity.WRONG_CODE) in _actions(env, "exec"), "the record says which"


def test_an_expired_code_is_refused(server: LiveServer, env: CallvaultEnv) -> None:
    old = pyotp.TOTP(env.totp_secrets["it"]).at(env.runtime.clock.now() - timedelta(minutes=3))
    status, _ = _token(server, "it", old)
    assert status == 401


def test_a_recovery_code_works_once_instead_of_the_app(live: LiveServer) -> None:
    env = live.env
    with env.runtime.db.unit_of_work() as session:
        user = identity.get_user(session, "bob")
        mfa.reset(session, user=user, actor="test")
        issued = account_codes.issue(session, user=user, purpose="enrol", actor="test")
        enrolment = mfa.begin_enrolment(session, user=user, keyring=env.runtime.keyring, enrolment_code=issued.code)
        codes = mfa.confirm_enrolment(session, user=user, code=pyotp.TOTP(enrolment.secret).now(),
                                      keyring=env.runtime.keyring, enrolment_code=issued.code)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert _token(live, "bob", codes[0].upper())[0] == 200
    assert _token(live, "bob", codes[0])[0] == 401
    assert _token(live, "bob", codes[1])[0] == 200


def test_a_role_that_needs_mfa_must_set_it_up_before_reaching_anything(live: LiveServer) -> None:
    env = live.env
    with env.runtime.db.unit_of_work() as session:
        lead = identity.get_user(session, "lead")
        mfa.reset(session, user=lead, actor="test")
        enrolment_code = account_codes.issue(session, user=lead, purpose="enrol", actor="test").code
    status, body = _token(live, "lead", None)
    assert status == 200 and body["mfa_enrolment_required"] and body["scope"] == "mfa:enrol"
    with live.client() as client:
        client.headers["Authorization"] = f"Bearer {body['access_token']}"
        assert client.get("/api/v1/recordings").status_code == 403
        enrol = client.post("/api/v1/me/mfa/enrol", json={"enrolment_code": enrolment_code}).json()
        assert enrol["provisioning_uri"].startswith("otpauth://totp/callvault:lead")
        wrong = client.post("/api/v1/me/mfa/confirm", json={"code": "000000", "enrolment_code": enrolment_code})
        assert wrong.status_code == 422 and wrong.json()["problems"][0]["location"] == "code"
        codes = client.post("/api/v1/me/mfa/confirm", json={"code": pyotp.TOTP(enrol["secret"]).now(),
                                                            "enrolment_code": enrolment_code})
        assert codes.status_code == 200 and len(codes.json()["recovery_codes"]) == 10
        assert client.get("/api/v1/me").status_code == 401  # the set-up token is spent
    env.totp_secrets["lead"] = enrol["secret"]
    env._otp_steps.pop("lead", None)
    status, body = _token(live, "lead", pyotp.TOTP(enrol["secret"]).at(env.runtime.clock.now() + timedelta(seconds=30)))
    assert status == 200 and body["scope"] == "*"


# ------------------------------------------------------------------------------------- guessing
def test_five_wrong_passwords_lock_the_account_from_that_address_even_against_the_right_one(
        guarded: LiveServer) -> None:
    env = guarded.env
    for _ in range(throttle.PAIR_LIMIT):
        assert _token(guarded, "alice", None, password="wrong-password-guess")[0] == 401
    status, body = _token(guarded, "alice", env.otp("alice"))
    assert status == 401
    assert "too many failed sign-ins" in body["message"]
    actions = _actions(env, "alice")
    assert ("auth.lockout", "deny") in [(a, d) for a, d, _ in actions]
    assert actions[-1][:2] == ("auth.sign_in", "deny")
    # Other accounts from the same address are not locked out by alice's five failures.
    assert _token(guarded, "bob", env.otp("bob"))[0] == 200
    # The lock lifts by itself after the lockout period.
    env.runtime.clock = FixedClock(env.runtime.clock.now() + throttle.LOCKOUT + timedelta(seconds=1))
    assert _token(guarded, "alice", env.otp("alice"))[0] == 200


def test_an_unknown_name_locks_exactly_like_a_real_one(guarded: LiveServer) -> None:
    replies = []
    for name in ("ghost", "alice"):
        for _ in range(throttle.PAIR_LIMIT + 1):
            replies.append((name, *_token(guarded, name, None, password="wrong-password-guess")))
    # The lock's end is named to the minute; the two names lock a moment apart and may straddle one.
    ghost = [(s, re.sub(r"\d\d:\d\d UTC", "HH:MM UTC", b["message"])) for n, s, b in replies if n == "ghost"]
    alice = [(s, re.sub(r"\d\d:\d\d UTC", "HH:MM UTC", b["message"])) for n, s, b in replies if n == "alice"]
    assert ghost == alice
    assert "too many" in ghost[-1][1] and "HH:MM UTC" in ghost[-1][1]


def test_many_failures_from_one_address_lock_that_address(guarded: LiveServer) -> None:
    env = guarded.env
    for i in range(throttle.ADDRESS_LIMIT):
        _token(guarded, f"nobody{i}", None, password="wrong-password-guess")
    status, body = _token(guarded, "exec", env.otp("exec"))
    assert status == 401 and "too many" in body["message"]
    with env.runtime.db.unit_of_work() as session:
        keys = [e.object_id for e in session.scalars(select(AuditEntry).where(AuditEntry.action == "auth.lockout"))]
    assert "address:127.0.0.1" in keys


def _attempt(env: CallvaultEnv, username: str, password: str, address: str) -> str:
    """One password attempt at the service level from ``address``: "ok", "wrong" or "locked"."""
    try:
        with env.runtime.db.unit_of_work() as session:
            user = identity.authenticate(session, username=username, password=password, source_ip=address,
                                         counters=env.runtime.counters, clock=env.runtime.clock)
            identity.record_sign_in(session, user=user, source_ip=address, method="password",
                                    counters=env.runtime.counters, clock=env.runtime.clock)
        return "ok"
    except identity.SignInLocked:
        outcome, reason = "locked", "too many failed sign-ins"
    except Exception:  # AuthenticationFailed
        outcome, reason = "wrong", identity.WRONG_CREDENTIALS
    with env.runtime.db.unit_of_work() as session:
        identity.record_failed_sign_in(session, username=username, source_ip=address, reason=reason,
                                       counters=env.runtime.counters, clock=env.runtime.clock)
    return outcome


def test_a_guesser_on_one_address_cannot_lock_the_user_out_elsewhere(guarded: LiveServer) -> None:
    """RELIABILITY.md 15: attackers cannot lock out users."""
    env = guarded.env
    outcomes = [_attempt(env, "alice", "wrong-password-guess", "203.0.113.9") for _ in range(throttle.PAIR_LIMIT + 2)]
    assert outcomes[-1] == "locked" and outcomes.count("wrong") == throttle.PAIR_LIMIT
    assert _attempt(env, "alice", PASSWORD, "203.0.113.9") == "locked"
    assert _attempt(env, "alice", PASSWORD, "198.51.100.20") == "ok"  # the real user, from their desk


def test_a_distributed_guesser_gets_at_most_100_tries_an_hour_and_the_user_still_gets_in(
        guarded: LiveServer) -> None:
    env = guarded.env
    assert _attempt(env, "bob", PASSWORD, "198.51.100.7") == "ok"  # bob's usual address
    tried = 0
    for i in range(60):  # 60 addresses x 2 guesses = 120 attempts, each address under its own limits
        for _ in range(2):
            if _attempt(env, "bob", "wrong-password-guess", f"203.0.113.{i}") == "wrong":
                tried += 1
    assert tried == throttle.ACCOUNT_LIMIT, f"{tried} guesses were checked against the password"
    assert _attempt(env, "bob", PASSWORD, "192.0.2.77") == "locked"  # an unfamiliar address: closed
    assert _attempt(env, "bob", PASSWORD, "198.51.100.7") == "ok"  # bob's own address: still open
    with env.runtime.db.unit_of_work() as session:
        lock = throttle.active_lock(session, counters=env.runtime.counters, username="bob", address=None,
                                    now=env.runtime.clock.now())
    assert lock is not None and lock.until <= env.runtime.clock.now() + throttle.ACCOUNT_WINDOW
    env.runtime.clock = FixedClock(env.runtime.clock.now() + throttle.ACCOUNT_WINDOW + timedelta(seconds=1))
    assert _attempt(env, "bob", PASSWORD, "192.0.2.77") == "ok"  # the hour is over


def test_counters_live_in_the_configured_store_so_every_node_sees_them(guarded: LiveServer) -> None:
    env = guarded.env
    _token(guarded, "exec", None, password="wrong-password-guess")
    key = throttle.account_key("exec")
    with env.runtime.db.unit_of_work() as session:
        assert env.runtime.counters.read(session, [key])[key].failures == 1
        row = session.get(SignInThrottle, key)
    # With Redis configured, nothing is counted in the database (and the other way round).
    assert (row is not None and row.failures == 1) == (env.runtime.counters.backend == "database")


def test_an_administrator_sees_the_account_lock_and_lifts_it_from_the_users_page(guarded: LiveServer) -> None:
    env = guarded.env
    with env.runtime.db.unit_of_work() as session:
        for i in range(throttle.ACCOUNT_LIMIT):
            throttle.record_failure(session, counters=env.runtime.counters, username="bob", address=f"10.1.{i}.1",
                                    now=env.runtime.clock.now())
    with guarded.client() as browser:
        web_sign_in(browser, env, "it")
        page = browser.get("/admin/users")
        row = next(line for line in page.text.splitlines() if "/admin/users/bob/unlock" in line)
        assert "locked until" in row
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', row)
        assert csrf
        done = browser.post("/admin/users/bob/unlock", data={"csrf_token": csrf.group(1)})
        assert done.status_code == 303
        assert "/admin/users/bob/unlock" not in browser.get("/admin/users").text
    with env.runtime.db.unit_of_work() as session:
        assert env.runtime.counters.read(session, [throttle.account_key("bob")]) == {}
    assert "auth.unlocked" in [a for a, _, _ in _actions(env, "it")]


# ------------------------------------------------------------------------------------- passwords
@pytest.mark.parametrize("password, why", [
    ("short-pass", "at least 12"),
    ("password1234", "too common"),
    ("Summer2024!!!!", "too common"),
    ("carol-is-the-best", "username"),
    ("my-callvault-pass", "product"),
])
def test_weak_passwords_are_refused_naming_the_field(env: CallvaultEnv, password: str, why: str) -> None:
    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        with pytest.raises(InvalidInput) as caught:
            identity.create_user(session, actor="test", policy=policy, username="carol", role="specialist",
                                 password=password, extension="2005")
        session.rollback()
    assert caught.value.problems[0].location == "password"
    assert why in caught.value.problems[0].message


def test_a_long_passphrase_without_digits_or_symbols_is_accepted(env: CallvaultEnv) -> None:
    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        user = identity.create_user(session, actor="test", policy=policy, username="dana", role="specialist",
                                    password="purple tractor sings quietly", extension="2006")
    assert user.username == "dana"


# --------------------------------------------------------------------------- tokens and revocation
def _cli(env: CallvaultEnv, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)
    return result.exit_code, result.stdout


def test_an_ingest_token_can_upload_but_not_search_or_listen(server: LiveServer, env: CallvaultEnv) -> None:
    code, output = _cli(env, "tokens", "create", "admin", "--scope", "recordings:ingest", "--ttl", "1d",
                        "--name", "pbx")
    assert code == 0, output
    token = output.strip().splitlines()[-1]
    with server.client() as pbx:
        pbx.headers["Authorization"] = f"Bearer {token}"
        uploaded = upload(pbx, wav_bytes(1.0, seed=70), metadata())
        assert uploaded.status_code == 201, uploaded.text
        listing = pbx.get("/api/v1/recordings")
        assert listing.status_code == 403 and "recordings:read" in listing.json()["message"]
        assert pbx.get("/api/v1/audit/verify").status_code == 403
    code, _ = _cli(env, "tokens", "create", "admin", "--scope", "everything")
    assert code == 2


def test_a_token_revoked_from_the_cli_stops_working_at_once(server: LiveServer, env: CallvaultEnv) -> None:
    _, output = _cli(env, "tokens", "create", "lead", "--scope", "recordings:read", "--ttl", "1h")
    token = output.strip().splitlines()[-1]
    with env.runtime.db.unit_of_work() as session:
        token_id = identity.token_and_user(session, token)[0].id
    with server.client() as crm:
        crm.headers["Authorization"] = f"Bearer {token}"
        assert crm.get("/api/v1/recordings").status_code == 200
        assert _cli(env, "tokens", "revoke", token_id)[0] == 0
        assert crm.get("/api/v1/recordings").status_code == 401


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uses_before=st.integers(min_value=0, max_value=3), use_session=st.booleans(),
       who=st.sampled_from(["exec", "lead", "it", "alice", "bob"]))
def test_revoking_a_session_or_token_cuts_access_at_once(server: LiveServer, env: CallvaultEnv,
                                                         uses_before: int, use_session: bool, who: str) -> None:
    with server.client() as client:
        if use_session:
            web_sign_in(client, env, who)
            stolen = client.cookies.get("cv_session") or ""
            assert stolen
        else:
            client.headers["Authorization"] = f"Bearer {server.sign_in(client, who)}"
        for _ in range(uses_before):
            assert client.get("/api/v1/recordings").status_code == 200
        if use_session:
            page = client.get("/")
            token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
            assert client.post("/logout", data={"csrf_token": token}).status_code == 303
            client.cookies.clear()
            client.cookies.set("cv_session", stolen)  # a copy of the cookie kept by whoever stole it
        else:
            assert client.post("/api/v1/auth/revoke").status_code == 204
        assert client.get("/api/v1/recordings").status_code == 401
