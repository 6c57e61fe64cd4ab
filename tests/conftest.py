"""Shared fixtures. The whole suite runs once per database: ``--db=sqlite`` (default) and
``--db=postgres`` (a throw-away database per test module on 127.0.0.1:5432)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest

from callvault.demo.local_policy import write_loopback_variant
from tests.support.env import CallvaultEnv, LiveServer, Persona, make_env

REPO = Path(__file__).resolve().parents[1]
SHIPPED_POLICY_A = REPO / "examples" / "policies" / "policy-a.yaml"
SHIPPED_POLICY_B = REPO / "examples" / "policies" / "policy-b.yaml"
"""The files as shipped: what tests of the policy's own rules read."""
_LOCAL_POLICIES = Path(tempfile.mkdtemp(prefix="callvault-test-policies-"))
atexit.register(shutil.rmtree, _LOCAL_POLICIES, True)
POLICY_A = write_loopback_variant(SHIPPED_POLICY_A, _LOCAL_POLICIES / "policy-a.yaml")
POLICY_B = write_loopback_variant(SHIPPED_POLICY_B, _LOCAL_POLICIES / "policy-b.yaml")
"""What a test server loads: the shipped file whose network rule also admits loopback with no device
check (callvault.demo.local_policy), as the demo does; the test client is on 127.0.0.1 with no proxy."""
PG_ADMIN_URL = os.environ.get("CALLVAULT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("CALLVAULT_TEST_REDIS", "redis://127.0.0.1:6379/15")
"""The Redis the rate-limit tests use: a database index of its own, and a random key prefix per test."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=["sqlite", "postgres"], default=os.environ.get("CALLVAULT_TEST_DB", "sqlite"),
                     help="database the suite runs against")


def pytest_report_header(config: pytest.Config) -> str:
    return f"callvault database backend: {config.getoption('--db')}"


@contextmanager
def fresh_database(backend: str, tmp_dir: Path) -> Iterator[str]:
    """Create an empty database (SQLite file or PostgreSQL database) and drop it afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir / 'callvault.db'}"
        return
    import psycopg

    name = f"cv_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database for one test module."""
    with fresh_database(request.config.getoption("--db"), tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture()
def isolated_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CallvaultEnv]:
    """Like ``env`` but fresh for a single test (for tests that break things on purpose)."""
    (tmp_path / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as url:
        environment = make_env(tmp_path / "data", url, POLICY_A)
        try:
            yield environment
        finally:
            environment.close()


@contextmanager
def redis_namespace() -> Iterator[dict[str, str]]:
    """``CALLVAULT_REDIS_URL`` and a fresh ``CALLVAULT_REDIS_PREFIX``; every key under the prefix is deleted
    afterwards (never FLUSHDB: the Redis may be shared). Fails, never skips, when Redis is not there:
    the Redis backend must be tested wherever the suite runs."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_TEST_URL} ({exc}); the rate-limit tests need it. Start it "
                    "(`redis-server --daemonize yes --bind 127.0.0.1`, or `systemctl start redis-server`), or point "
                    "CALLVAULT_TEST_REDIS at one.", pytrace=False)
    prefix = f"cvtest-{uuid.uuid4().hex[:12]}:"
    try:
        yield {"CALLVAULT_REDIS_URL": REDIS_TEST_URL, "CALLVAULT_REDIS_PREFIX": prefix}
    finally:
        for key in client.scan_iter(match=prefix + "*", count=500):
            client.delete(key)
        client.close()


@pytest.fixture()
def redis_env() -> Iterator[dict[str, str]]:
    """Settings that put rate-limit counters in the test Redis, under a prefix of this test's own."""
    with redis_namespace() as extra:
        yield extra


@pytest.fixture(params=["database", "redis"])
def counters_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CallvaultEnv]:
    """Like ``isolated_env``, once with the counters in the database and once in Redis."""
    (tmp_path / "db").mkdir()
    redis_or_not: AbstractContextManager[dict[str, str]] = (
        redis_namespace() if request.param == "redis" else nullcontext({}))
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as url, redis_or_not as extra:
        environment = make_env(tmp_path / "data", url, POLICY_A, extra_env=extra)
        try:
            yield environment
        finally:
            environment.close()


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallvaultEnv]:
    """An initialised callvault (policy A, a user per persona) with its own data dir and database."""
    environment = make_env(tmp_path_factory.mktemp("data"), database_url, POLICY_A)
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def server(env: CallvaultEnv) -> Iterator[LiveServer]:
    """The real HTTP server (uvicorn on a loopback port) over ``env``."""
    live = LiveServer(env)
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Debian chromium per test module (tests/support/browser.py)."""
    from tests.support.browser import launched

    with launched() as chromium:
        yield chromium


PERSONAS_B = [
    Persona("sam", "specialist", "3001", "customer_success"),
    Persona("tina", "specialist", "3002", "customer_success"),
    Persona("lead", "support_lead", "3100", "customer_success"),
    Persona("lead2", "support_lead", "3101", "customer_success"),
    Persona("head", "head_of_customer_success", "3200", "customer_success"),
    Persona("hr", "hr_manager"),
    Persona("qa", "qa_reviewer"),
]
"""Policy B's team for the API tests: two specialists, two team leaders, the Head, HR and a QA reviewer."""


@pytest.fixture(scope="module")
def env_b(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallvaultEnv]:
    """Policy B (with loopback admitted, like the tests' servers) and ``PERSONAS_B``, one per module."""
    tmp = tmp_path_factory.mktemp("policy-b")
    with fresh_database(request.config.getoption("--db"), tmp) as url:
        environment = CallvaultEnv(tmp / "data", url, POLICY_B, personas=PERSONAS_B)
        yield environment
        environment.close()


@pytest.fixture()
def live(isolated_env: CallvaultEnv) -> Iterator[LiveServer]:
    """The real HTTP server over a fresh ``isolated_env``: for tests that lock accounts, end sessions or change
    roles, which must not leak into the module's shared ``env``."""
    server = LiveServer(isolated_env)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server_b(env_b: CallvaultEnv) -> Iterator[LiveServer]:
    """The real HTTP server over ``env_b`` (a module's own ``env_b`` fixture, where it has one)."""
    live = LiveServer(env_b)
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def env_r(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallvaultEnv]:
    """Policy A made regulated (``tests.support.regulated``: mandatory scope, a retention minimum and extension,
    emergency access, the accounting of disclosures for executives), one per module."""
    from tests.support.regulated import regulated_env

    with regulated_env(request.config.getoption("--db"), tmp_path_factory.mktemp("regulated")) as environment:
        yield environment


@pytest.fixture(scope="module")
def server_r(env_r: CallvaultEnv) -> Iterator[LiveServer]:
    """The real HTTP server over ``env_r``."""
    live = LiveServer(env_r)
    live.start()
    yield live
    live.stop()
