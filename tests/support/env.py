"""Test environments: an initialised data dir + database, personas, and a live HTTP server."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import uvicorn
from sqlalchemy import select

import callvault.cli.main  # noqa: F401  (first: it loads every command module; see the end of cli/main.py)
from callvault.cli.commands import initialise
from callvault.core.clock import Clock
from callvault.core.settings import Settings, load_settings
from callvault.identity import account_codes, mfa
from callvault.identity import service as identity
from callvault.identity.models import MfaCredential, User
from callvault.policy import service as policy_service
from callvault.runtime import Runtime, build_runtime

PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class Persona:
    username: str
    role: str
    extension: str | None = None
    team: str | None = None
    acknowledge: bool = True


# An owner (alice, ext 2001), a colleague (bob, ext 2002), leadership, IT, an admin, and a new
# hire who has not acknowledged the policy yet.
INTEGRATION_USER = "pbx"
"""The telephony integration's account (``CallvaultEnv.integration_token``): not a persona, created where used."""

PERSONAS = [
    Persona("alice", "specialist", "2001", "customer_support"),
    Persona("bob", "specialist", "2002", "customer_support"),
    Persona("lead", "support_lead", None, "customer_support"),
    Persona("exec", "executive"),
    Persona("it", "it_staff"),
    Persona("newhire", "specialist", "2003", "customer_support", acknowledge=False),
]


def integration_user(session: Any, username: str, clock: Clock) -> User:
    """The phone system's integration account (the first role in ``controls.integration_roles``: no content, no
    administration), as a deployment creates it for relaying the agent's controls; created on first use only,
    so the personas' user counts stay as they are for every other test."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        policy = policy_service.current_policy(session, clock=clock)
        user = identity.create_user(session, actor="test", policy=policy, username=username,
                                    role=policy.controls.integration_roles[0], password=PASSWORD, clock=clock)
    return user  # type: ignore[no-any-return]


class SteppingClock(Clock):
    """The real clock plus an offset that only ever grows: the clock of every test environment's runtime.

    Why: each one-time code's 30-second step is accepted once (and one step either side, for drift), so a
    test that signs the same person in, steps up and confirms a change needs more steps than have passed.
    Waiting for the next step cost the suite minutes of idle sleep; moving this runtime's clock to the next
    step costs nothing and leaves the server's check exactly as strict (a code is still refused twice, and
    a code for a step the server's clock has not reached is still refused). Everything the in-process server
    does runs on this clock, so its times stay consistent; a server in another process keeps the real clock,
    and ``CallvaultEnv.otp`` only moves this clock when nothing else answers on the env's behalf.
    """

    def __init__(self) -> None:
        # CALLVAULT_TEST_CLOCK_OFFSET (seconds) starts every environment ahead: a run with it finds the tests
        # that compare the server's times with the test machine's wall clock instead of the runtime's.
        self.offset = timedelta(seconds=float(os.environ.get("CALLVAULT_TEST_CLOCK_OFFSET", "0")))

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance_past(self, moment: datetime) -> None:
        """Move forward (never back) so that ``now()`` is just after ``moment``."""
        self.offset += max(timedelta(0), moment - self.now())


class CallvaultEnv:
    """One initialised callvault: settings, runtime and the personas' accounts."""

    def __init__(self, data_dir: Path, database_url: str, policy_file: Path,
                 personas: list[Persona] | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = dict(extra_env or {})
        """More settings (e.g. ``CALLVAULT_REDIS_URL``), also given to CLI runs through ``cli_env``."""
        self.settings: Settings = load_settings(
            data_dir, env={"CALLVAULT_DATABASE_URL": database_url, **self.extra_env})
        initialise(self.settings, policy_file=policy_file, admin_user="admin", admin_password=PASSWORD)
        self.runtime: Runtime = build_runtime(self.settings, clock=SteppingClock())
        self.totp_secrets: dict[str, str] = {}
        """Every persona (and admin) has MFA set up, as the example policies require for their roles."""
        self._otp_steps: dict[str, int] = {}
        with self.runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            admin = identity.get_user(session, "admin")
            identity.acknowledge_policy(session, user=admin, policy=policy, clock=self.runtime.clock)
            self._enrol_mfa(session, admin)
            for p in PERSONAS if personas is None else personas:
                user = identity.create_user(session, actor="test", policy=policy, username=p.username, role=p.role,
                                            password=PASSWORD, extension=p.extension, team=p.team,
                                            clock=self.runtime.clock)
                if p.acknowledge:
                    identity.acknowledge_policy(session, user=user, policy=policy, clock=self.runtime.clock)
                self._enrol_mfa(session, user)

    def integration_token(self, username: str = INTEGRATION_USER, scopes: tuple[str, ...] = ("calls:control",)) -> str:
        """A bearer token for the telephony integration's account, set up as a deployment does: an account
        whose role is in ``controls.integration_roles`` (no content, no administration), then
        ``callvault tokens create <user> --scope calls:control`` (``scopes``)."""
        with self.runtime.db.unit_of_work() as session:
            user = integration_user(session, username, self.runtime.clock)
            issued = identity.issue_token(session, user=user, ttl_seconds=3600, name="telephony", scopes=scopes,
                                          clock=self.runtime.clock)
        return issued.token

    def _enrol_mfa(self, session: Any, user: Any) -> None:
        # The honest way: an administrator issues a one-time enrolment code, the person enrols with it.
        clock = self.runtime.clock
        issued = account_codes.issue(session, user=user, purpose="enrol", actor="test", clock=clock)
        enrolment = mfa.begin_enrolment(session, user=user, keyring=self.runtime.keyring, enrolment_code=issued.code,
                                        clock=clock)
        mfa.confirm_enrolment(session, user=user, code=pyotp.TOTP(enrolment.secret).at(clock.now()),
                              keyring=self.runtime.keyring, enrolment_code=issued.code, clock=clock)
        # As if enrolled long ago: the enrolment code's time step must not block the first sign-in.
        cred = session.get(MfaCredential, user.id)
        cred.last_used_step = None
        self.totp_secrets[user.username] = enrolment.secret

    def otp(self, username: str) -> str:
        """A one-time code ``username``'s server has not seen yet (each step is accepted once)."""
        clock: Clock = self.runtime.clock
        while True:
            now_step = int(clock.now().timestamp()) // mfa.STEP_SECONDS
            # Prefer the current step or a later one: an older step can expire between here and the
            # server's check when the machine is busy.
            step = max(self._otp_steps.get(username, now_step - 1) + 1, now_step)
            if step <= now_step + mfa.DRIFT_STEPS:
                break
            next_step_at = datetime.fromtimestamp((now_step + 1) * mfa.STEP_SECONDS + 0.05, UTC)
            if isinstance(clock, SteppingClock):
                clock.advance_past(next_step_at)  # the server's clock, moved to the next step: no idle wait
            elif type(clock) is Clock:
                time.sleep((next_step_at - clock.now()).total_seconds())
            else:
                raise RuntimeError(f"no unused one-time code left for {username} at this fixed time")
        self._otp_steps[username] = step
        return str(pyotp.TOTP(self.totp_secrets[username]).at(step * mfa.STEP_SECONDS))

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def cli_env(self) -> dict[str, str]:
        return {"CALLVAULT_DATA_DIR": str(self.data_dir), "CALLVAULT_DATABASE_URL": self.settings.database_url,
                **self.extra_env}

    def close(self) -> None:
        self.runtime.close()


def make_env(data_dir: Path, database_url: str, policy_file: Path,
             extra_env: dict[str, str] | None = None) -> CallvaultEnv:
    return CallvaultEnv(data_dir, database_url, policy_file, extra_env=extra_env)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(base: str, process: subprocess.Popen[Any], *, log: Path | None = None,
                       timeout: float = 60.0) -> None:
    """Poll ``base``/healthz until a ``callvault serve`` child answers 200; RuntimeError (with the tail
    of its ``log``, if given) when it exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
            state = "exited" if process.poll() is not None else f"did not answer within {timeout:g} s"
            raise RuntimeError(f"the server at {base} {state}\n{tail}")
        time.sleep(0.2)


class LiveServer:
    """uvicorn serving callvault on 127.0.0.1 in a background thread: real HTTP for API tests."""

    def __init__(self, env: CallvaultEnv) -> None:
        from callvault.api.app import create_app

        self.env = env
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # proxy_headers=False, as `callvault serve` runs: only callvault decides whom to believe (A11).
        config = uvicorn.Config(create_app(env.runtime), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", proxy_headers=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._tokens: dict[str, str] = {}
        """Signed-in tokens reused across tests: each sign-in spends a one-time code, and a code works once."""

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    @contextmanager
    def client(self, username: str | None = None, **kwargs: Any) -> Iterator[httpx.Client]:
        """An HTTP client, signed in as ``username`` (bearer token; password + one-time code) when given."""
        with httpx.Client(base_url=self.base_url, timeout=30, **kwargs) as client:
            if username:
                token = self._tokens.get(username)
                if token is None or client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}
                                                ).status_code != 200:
                    token = self.sign_in(client, username)
                    self._tokens[username] = token
                client.headers["Authorization"] = f"Bearer {token}"
            yield client

    @contextmanager
    def integration_client(self, username: str = INTEGRATION_USER) -> Iterator[httpx.Client]:
        """An HTTP client with the telephony integration's token (``CallvaultEnv.integration_token``)."""
        with self.client() as client:
            token = self._tokens.get(username) or self.env.integration_token(username)
            self._tokens[username] = token
            client.headers["Authorization"] = f"Bearer {token}"
            yield client

    def step_up(self, client: httpx.Client, username: str) -> None:
        """Confirm ``username``'s bearer token with a fresh one-time code, as downloads require (RELIABILITY 17)."""
        resp = client.post("/api/v1/auth/step-up", json={"code": self.env.otp(username)})
        assert resp.status_code == 204, resp.text

    def sign_in(self, client: httpx.Client, username: str) -> str:
        """A fresh bearer token for ``username`` through the real sign-in (password, then a new TOTP code)."""
        resp = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD,
                                                       "otp": self.env.otp(username)})
        resp.raise_for_status()
        token: str = resp.json()["access_token"]
        return token


@contextmanager
def served(backend: str, folder: Path, policy: Path,
           extra_env: dict[str, str] | None = None) -> Iterator[tuple[LiveServer, CallvaultEnv]]:
    """A fresh database (``--db`` backend) and data directory under ``folder``, initialised with ``policy`` and
    ``extra_env``, served over real HTTP: for tests that need settings the shared ``env`` does not have."""
    from tests.conftest import fresh_database

    with fresh_database(backend, folder) as url:
        environment = make_env(folder / "data", url, policy, extra_env=extra_env)
        live = LiveServer(environment)
        live.start()
        try:
            yield live, environment
        finally:
            live.stop()
            environment.close()
