"""Rate-limit counters in the database or in Redis (``CALLVAULT_REDIS_URL``): the same rules from both
stores, one counter for every node that shares the store, exact counts under concurrency, and sign-in
that fails closed when Redis does not answer.

The Redis tests use the Redis on 127.0.0.1:6379 (``CALLVAULT_TEST_REDIS``) with a key prefix of
their own, deleted afterwards; they fail, never skip, when it is not running.
"""

from __future__ import annotations

import copy
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import httpx
import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from callvault.audit.models import AuditEntry
from callvault.cli.main import app as cli_app
from callvault.core.errors import ConfigurationError
from callvault.core.settings import load_settings
from callvault.identity import service as identity
from callvault.identity import throttle
from callvault.identity.counters import Counters, RedisCounters, open_counters
from callvault.identity.models import SignInThrottle
from callvault.ops.config_report import describe
from callvault.runtime import build_runtime
from callvault.subject_requests import limits
from tests.api.test_auth_web import _csrf
from tests.conftest import POLICY_A, REDIS_TEST_URL, fresh_database, redis_namespace
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer, _free_port, make_env

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NO_SESSION = cast(Session, None)
"""The Redis store never touches the database session; these tests have no database."""
WRONG = "wrong-password-guess"


@pytest.fixture(params=["database", "redis"])
def store(request: pytest.FixtureRequest, env: CallvaultEnv) -> Iterator[Counters]:
    """The module's database store, or a Redis store under a fresh prefix (each test uses fresh names)."""
    if request.param == "database":
        yield env.runtime.counters
        return
    with redis_namespace() as extra:
        counters = RedisCounters(extra["CALLVAULT_REDIS_URL"], prefix=extra["CALLVAULT_REDIS_PREFIX"])
        yield counters
        counters.close()


def _name() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------- the rules, from both stores
def test_a_pair_locks_once_at_its_limit_for_the_lockout_then_starts_over(env: CallvaultEnv, store: Counters) -> None:
    name, addr = _name(), "203.0.113.7"
    started = []
    with env.runtime.db.unit_of_work() as session:
        for i in range(throttle.PAIR_LIMIT + 2):
            started += throttle.record_failure(session, counters=store, username=name, address=addr,
                                               now=T0 + timedelta(seconds=i))
    fifth = T0 + timedelta(seconds=throttle.PAIR_LIMIT - 1)
    assert started == [throttle.Lock(throttle.pair_key(name, addr), fifth + throttle.LOCKOUT)], \
        "one lock, started by the fifth failure, audited once"
    with env.runtime.db.unit_of_work() as session:
        assert throttle.active_lock(session, counters=store, username=name, address=addr,
                                    now=fifth + throttle.LOCKOUT - timedelta(microseconds=1)) is not None
        assert throttle.active_lock(session, counters=store, username=name, address="198.51.100.1",
                                    now=fifth + timedelta(minutes=1)) is None, "another address is not locked"
        assert throttle.active_lock(session, counters=store, username=name, address=addr,
                                    now=fifth + throttle.LOCKOUT) is None
        # After the lock a new window starts: one failure does not lock again.
        again = throttle.record_failure(session, counters=store, username=name, address=addr,
                                        now=fifth + throttle.LOCKOUT)
        pair = store.read(session, [throttle.pair_key(name, addr)])[throttle.pair_key(name, addr)]
    assert again == [] and pair.failures == 1 and pair.locked_until is None


def test_the_account_lock_ends_with_its_hour_and_spares_known_addresses(env: CallvaultEnv, store: Counters) -> None:
    name = _name()
    with env.runtime.db.unit_of_work() as session:
        throttle.record_success(session, counters=store, username=name, address="198.51.100.7", now=T0)
        locks = []
        for i in range(throttle.ACCOUNT_LIMIT):  # one failure from each of 100 addresses
            locks += throttle.record_failure(session, counters=store, username=name, address=f"10.0.{i}.1",
                                             now=T0 + timedelta(seconds=i))
    assert [lock.key for lock in locks] == [throttle.account_key(name)]
    assert locks[0].until == T0 + throttle.ACCOUNT_WINDOW, "the hourly budget's lock ends with the hour"
    later = T0 + timedelta(minutes=30)
    with env.runtime.db.unit_of_work() as session:
        assert throttle.active_lock(session, counters=store, username=name, address="192.0.2.1", now=later)
        assert throttle.active_lock(session, counters=store, username=name, address="198.51.100.7",
                                    now=later) is None, "the user's own address is spared"
        assert throttle.active_lock(session, counters=store, username=name, address=None, now=later)
        assert throttle.active_lock(session, counters=store, username=name, address="192.0.2.1",
                                    now=T0 + throttle.ACCOUNT_WINDOW) is None


def test_a_success_clears_only_the_pair(env: CallvaultEnv, store: Counters) -> None:
    name, addr = _name(), "203.0.113.8"
    with env.runtime.db.unit_of_work() as session:
        for i in range(3):
            throttle.record_failure(session, counters=store, username=name, address=addr,
                                    now=T0 + timedelta(seconds=i))
        throttle.record_success(session, counters=store, username=name, address=addr, now=T0 + timedelta(seconds=5))
        keys = [throttle.pair_key(name, addr), throttle.account_key(name), throttle.address_key(addr) or ""]
        rows = store.read(session, keys)
    assert throttle.pair_key(name, addr) not in rows
    assert rows[throttle.account_key(name)].failures == 3, "the account's hourly budget is not refilled"
    assert rows[throttle.address_key(addr) or ""].failures == 3


def test_unlock_clears_the_account_and_its_pairs_and_no_other_name(env: CallvaultEnv, store: Counters) -> None:
    """Names are typed by anyone: wildcard characters in one must not reach another's counters."""
    base = _name()
    target, lookalike = f"{base}_*?[a]%", f"{base}x*?[a]%zz"
    with env.runtime.db.unit_of_work() as session:
        for name in (target, lookalike):
            for addr in ("203.0.113.1", "203.0.113.2"):
                throttle.record_failure(session, counters=store, username=name, address=addr, now=T0)
    with env.runtime.db.unit_of_work() as session:
        assert throttle.unlock(session, counters=store, username=target) is True
        assert throttle.unlock(session, counters=store, username=target) is False
        keys = [throttle.pair_key(n, a) for n in (target, lookalike) for a in ("203.0.113.1", "203.0.113.2")]
        left = store.read(session, [*keys, throttle.account_key(target), throttle.account_key(lookalike)])
    assert sorted(left) == sorted([throttle.pair_key(lookalike, "203.0.113.1"),
                                   throttle.pair_key(lookalike, "203.0.113.2"), throttle.account_key(lookalike)])


def test_the_request_form_limit_refuses_until_its_window_ends(env: CallvaultEnv, store: Counters) -> None:
    email = f"{_name()}@example.org"
    with env.runtime.db.unit_of_work() as session:
        for i in range(limits.SUBMIT_PER_EMAIL.limit):
            limits.check(session, store, [(limits.SUBMIT_PER_EMAIL, email)], now=T0 + timedelta(minutes=i))
            limits.count(session, store, limits.SUBMIT_PER_EMAIL, email, now=T0 + timedelta(minutes=i))
        with pytest.raises(limits.RateLimited) as refused:
            limits.check(session, store, [(limits.SUBMIT_PER_EMAIL, email.upper())], now=T0 + timedelta(minutes=30))
        assert refused.value.until == T0 + limits.SUBMIT_PER_EMAIL.window
        limits.check(session, store, [(limits.SUBMIT_PER_EMAIL, email)], now=T0 + limits.SUBMIT_PER_EMAIL.window)


# ----------------------------------------------------------------------------------- concurrency
@pytest.mark.parametrize("threads", [40])
def test_failures_recorded_at_once_are_all_counted_and_lock_exactly_once(
        env: CallvaultEnv, store: Counters, threads: int) -> None:
    name, addr = _name(), "203.0.113.99"
    barrier = threading.Barrier(threads)
    started: list[throttle.Lock] = []
    errors: list[BaseException] = []

    def fail_once() -> None:
        try:
            barrier.wait()
            with env.runtime.db.unit_of_work() as session:
                got = throttle.record_failure(session, counters=store, username=name, address=addr, now=T0)
            started.extend(got)
        except BaseException as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)

    workers = [threading.Thread(target=fail_once) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, errors
    with env.runtime.db.unit_of_work() as session:
        rows = store.read(session, [throttle.pair_key(name, addr), throttle.account_key(name),
                                    throttle.address_key(addr) or ""])
    assert {k: r.failures for k, r in rows.items()} == {
        throttle.pair_key(name, addr): threads, throttle.account_key(name): threads, f"address:{addr}": threads}
    assert sorted(lock.key for lock in started) == sorted([throttle.pair_key(name, addr), f"address:{addr}"]), \
        "each lock started (and audited) exactly once; the account (limit 100) not at all"


# ----------------------------------------------------------------------------------------- Redis
def test_redis_keys_carry_the_prefix_and_expire_after_their_window_and_lock(redis_env: dict[str, str]) -> None:
    counters = RedisCounters(redis_env["CALLVAULT_REDIS_URL"], prefix=redis_env["CALLVAULT_REDIS_PREFIX"])
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        now = datetime.now(UTC)
        for _ in range(throttle.PAIR_LIMIT):
            throttle.record_failure(NO_SESSION, counters=counters, username="ttl", address="203.0.113.4", now=now)
        throttle.record_success(NO_SESSION, counters=counters, username="ttl", address="198.51.100.4", now=now)
        keys = sorted(k.decode() for k in client.scan_iter(match=redis_env["CALLVAULT_REDIS_PREFIX"] + "*"))
        assert keys == sorted(redis_env["CALLVAULT_REDIS_PREFIX"] + "rl:" + k for k in (
            "pair:ttl|203.0.113.4", "account:ttl", "address:203.0.113.4", "known:ttl|198.51.100.4"))
        ttl = {k.split("rl:", 1)[1]: client.pttl(k) / 1000 for k in keys}
        assert 0 < ttl["pair:ttl|203.0.113.4"] <= (throttle.LOCKOUT + timedelta(seconds=1)).total_seconds()
        assert throttle.LOCKOUT.total_seconds() - 60 < ttl["pair:ttl|203.0.113.4"], "kept while locked"
        assert 0 < ttl["account:ttl"] <= throttle.ACCOUNT_WINDOW.total_seconds()
        assert throttle.KNOWN_FOR.total_seconds() - 60 < ttl["known:ttl|198.51.100.4"] \
            <= throttle.KNOWN_FOR.total_seconds()
    finally:
        client.close()
        counters.close()


def test_two_deployments_sharing_a_redis_keep_apart_by_prefix(redis_env: dict[str, str]) -> None:
    url, prefix = redis_env["CALLVAULT_REDIS_URL"], redis_env["CALLVAULT_REDIS_PREFIX"]
    prod, staging = RedisCounters(url, prefix=prefix + "prod:"), RedisCounters(url, prefix=prefix + "staging:")
    try:
        for _ in range(throttle.PAIR_LIMIT):
            throttle.record_failure(NO_SESSION, counters=prod, username="alice", address="203.0.113.3", now=T0)
        assert throttle.active_lock(NO_SESSION, counters=prod, username="alice", address="203.0.113.3", now=T0)
        assert throttle.active_lock(NO_SESSION, counters=staging, username="alice", address="203.0.113.3",
                                    now=T0) is None
    finally:
        prod.close()
        staging.close()


@pytest.fixture()
def two_nodes(isolated_env: CallvaultEnv, redis_env: dict[str, str]) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two apps, each with its own runtime (engine, Redis pool), over one database and one Redis."""
    isolated_env.runtime.close()
    isolated_env.extra_env.update(redis_env)
    isolated_env.settings = load_settings(isolated_env.data_dir, env={
        "CALLVAULT_DATABASE_URL": isolated_env.settings.database_url, **redis_env})
    isolated_env.runtime = build_runtime(isolated_env.settings)
    other = copy.copy(isolated_env)
    other.runtime = build_runtime(isolated_env.settings)
    nodes = (LiveServer(isolated_env), LiveServer(other))
    for node in nodes:
        node.start()
    yield nodes
    for node in nodes:
        node.stop()
    other.runtime.close()


def test_two_nodes_sharing_redis_see_one_counter(two_nodes: tuple[LiveServer, LiveServer]) -> None:
    a, b = two_nodes
    env = a.env
    assert env.runtime is not b.env.runtime and env.runtime.counters.backend == "redis"
    for i in range(throttle.PAIR_LIMIT):
        node = (a, b)[i % 2]
        resp = httpx.post(f"{node.base_url}/api/v1/auth/token", json={"username": "alice", "password": WRONG})
        assert resp.status_code == 401 and resp.json()["message"] == identity.WRONG_CREDENTIALS
    for node in (a, b):  # the lock is checked before the password, so the right one is refused too
        resp = httpx.post(f"{node.base_url}/api/v1/auth/token", json={"username": "alice", "password": PASSWORD})
        assert resp.status_code == 401 and "too many failed sign-ins" in resp.json()["message"]
    with env.runtime.db.unit_of_work() as session:
        lockouts = session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "auth.lockout", AuditEntry.actor == "alice"))
        rows = session.scalar(select(func.count()).select_from(SignInThrottle))
    assert lockouts == 1, "failures on both nodes add up to one lock of the pair, audited once"
    assert rows == 0, "with Redis configured nothing is counted in the database"
    # An administrator's unlock through the CLI (a third process's view) frees alice on both nodes.
    result = CliRunner().invoke(cli_app, ["users", "unlock", "alice"], env=env.cli_env)
    assert result.exit_code == 0 and "unlocked" in result.output, result.output
    resp = httpx.post(f"{a.base_url}/api/v1/auth/token",
                      json={"username": "alice", "password": PASSWORD, "otp": env.otp("alice")})
    assert resp.status_code == 200, resp.text
    # (One one-time code per time step: on the other node, the password alone shows it is checked again.)
    resp = httpx.post(f"{b.base_url}/api/v1/auth/token", json={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 401 and "one-time code" in resp.json()["message"], resp.text


# ------------------------------------------------------------------------------------ Redis down
@pytest.fixture()
def redis_down(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """A node whose CALLVAULT_REDIS_URL names a port nobody listens on."""
    root = tmp_path
    (root / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), root / "db") as url:
        environment = make_env(root / "data", url, POLICY_A, extra_env={
            "CALLVAULT_REDIS_URL": f"redis://:s3cret-pass@127.0.0.1:{_free_port()}/0"})
        live = LiveServer(environment)
        live.start()
        try:
            yield live
        finally:
            live.stop()
            environment.close()


def test_redis_down_refuses_sign_in_with_a_clear_503_and_lets_nobody_guess(
        redis_down: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    env = redis_down.env
    with env.runtime.db.unit_of_work() as session:  # a token issued earlier (sessions stay in the database)
        earlier = identity.issue_token(session, user=identity.get_user(session, "lead"), ttl_seconds=600).token
    caplog.set_level(logging.ERROR)
    with redis_down.client() as anonymous:
        right = anonymous.post("/api/v1/auth/token",
                               json={"username": "alice", "password": PASSWORD, "otp": env.otp("alice")})
        wrong = anonymous.post("/api/v1/auth/token", json={"username": "alice", "password": WRONG})
        form = anonymous.get("/")
        page = anonymous.post("/login", data={"username": "alice", "password": PASSWORD,
                                              "csrf_token": _csrf(form.text)})
        public = anonymous.post("/api/v1/subject-requests", json={
            "phone_numbers": ["+14165550101"], "email": "caller@example.org"})
        still_in = anonymous.get("/api/v1/me", headers={"Authorization": f"Bearer {earlier}"})
        metrics = anonymous.get("/metrics")
    for resp in (right, wrong):
        assert resp.status_code == 503, resp.text
        assert resp.json() == {"error": "unavailable",
                               "message": "the service is temporarily unavailable; try again shortly"}
    assert page.status_code == 503 and "Sign-in is temporarily unavailable" in page.text
    assert "Traceback" not in page.text and "s3cret" not in page.text and "6379" not in page.text
    assert public.status_code == 503
    assert still_in.status_code == 200, "people already signed in keep working"
    assert 'callvault_rate_limit_store_up{backend="redis"} 0.0' in metrics.text
    logged = [r.getMessage() for r in caplog.records if r.name == "callvault.counters"]
    assert logged and "rate-limit store unavailable" in logged[0] and "s3cret" not in " ".join(logged)
    with env.runtime.db.unit_of_work() as session:
        refusals = session.scalars(select(AuditEntry.reason).where(
            AuditEntry.action == "auth.sign_in", AuditEntry.actor == "alice")).all()
        granted = session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "auth.sign_in", AuditEntry.decision == "allow"))
    assert refusals == [identity.UNAVAILABLE] * 3, "each refused attempt is on record"
    assert granted == 0


def test_redis_down_makes_the_cli_say_so(redis_down: LiveServer) -> None:
    result = CliRunner().invoke(cli_app, ["users", "list"], env=redis_down.env.cli_env)
    assert result.exit_code == 3, result.output
    assert "rate-limit store (Redis at 127.0.0.1:" in result.output and "s3cret" not in result.output


# -------------------------------------------------------------------------------------- settings
def test_redis_settings_are_checked_and_the_password_never_shown(tmp_path: Path) -> None:
    data = tmp_path
    with pytest.raises(ConfigurationError, match="must start with redis://"):
        load_settings(data, env={"CALLVAULT_REDIS_URL": "127.0.0.1:6379"})
    with pytest.raises(ConfigurationError, match="CALLVAULT_REDIS_PREFIX"):
        load_settings(data, env={"CALLVAULT_REDIS_URL": "redis://127.0.0.1", "CALLVAULT_REDIS_PREFIX": "cv*"})
    secret = data / "redis-url"
    secret.write_text("redis://:hunter2-pass@cache.internal:6380/2\n")
    settings = load_settings(data, env={"CALLVAULT_REDIS_URL_FILE": str(secret)})
    assert settings.redis_url == "redis://:hunter2-pass@cache.internal:6380/2"
    assert settings.redis_prefix == "callvault:" and "hunter2" not in repr(settings)
    shown = {line.name: line for line in describe(settings)}
    assert shown["CALLVAULT_REDIS_URL"].value == "redis://:***@cache.internal:6380/2"
    assert shown["CALLVAULT_REDIS_URL"].source == f"file {secret}"
    assert load_settings(data, env={}).redis_url is None
    assert open_counters(load_settings(data, env={})).backend == "database"
