"""Test environments: an initialised data dir + database, personas, and a live HTTP server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from callvault.cli.commands import initialise
from callvault.core.settings import Settings, load_settings
from callvault.identity import service as identity
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
PERSONAS = [
    Persona("alice", "specialist", "2001", "customer_support"),
    Persona("bob", "specialist", "2002", "customer_support"),
    Persona("lead", "support_lead", None, "customer_support"),
    Persona("exec", "executive"),
    Persona("it", "it_staff"),
    Persona("newhire", "specialist", "2003", "customer_support", acknowledge=False),
]


class CallvaultEnv:
    """One initialised callvault: settings, runtime and the personas' accounts."""

    def __init__(self, data_dir: Path, database_url: str, policy_file: Path) -> None:
        self.settings: Settings = load_settings(data_dir, env={"CALLVAULT_DATABASE_URL": database_url})
        initialise(self.settings, policy_file=policy_file, admin_user="admin", admin_password=PASSWORD)
        self.runtime: Runtime = build_runtime(self.settings)
        with self.runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            admin = identity.get_user(session, "admin")
            identity.acknowledge_policy(session, user=admin, policy=policy)
            for p in PERSONAS:
                user = identity.create_user(session, actor="test", policy=policy, username=p.username, role=p.role,
                                            password=PASSWORD, extension=p.extension, team=p.team)
                if p.acknowledge:
                    identity.acknowledge_policy(session, user=user, policy=policy)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def cli_env(self) -> dict[str, str]:
        return {"CALLVAULT_DATA_DIR": str(self.data_dir), "CALLVAULT_DATABASE_URL": self.settings.database_url}

    def close(self) -> None:
        self.runtime.close()


def make_env(data_dir: Path, database_url: str, policy_file: Path) -> CallvaultEnv:
    return CallvaultEnv(data_dir, database_url, policy_file)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """uvicorn serving callvault on 127.0.0.1 in a background thread: real HTTP for API tests."""

    def __init__(self, env: CallvaultEnv) -> None:
        from callvault.api.app import create_app

        self.env = env
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(env.runtime), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

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
        """An HTTP client, signed in as ``username`` (bearer token) when given."""
        with httpx.Client(base_url=self.base_url, timeout=30, **kwargs) as client:
            if username:
                resp = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
                resp.raise_for_status()
                client.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
            yield client
