"""A bare callvault for retention and consent tests: one policy, a fixed clock, ingest and inspection helpers."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from callvault.capture.ingest import ingest_recording
from callvault.cli.commands import initialise
from callvault.cli.main import app
from callvault.core.clock import FixedClock
from callvault.core.settings import Settings, load_settings
from callvault.recordings import playback
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.retention.models import DestructionRecord
from callvault.runtime import Runtime, build_runtime
from tests.support.audio import wav_bytes
from tests.support.env import integration_user

T = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
"""When the test calls start."""
PASSWORD = "correct-horse-battery"

# Call metadata that is inside each example policy's recording scope.
IN_SCOPE = {
    "a": {"extension": "2001", "agent": "alice", "team": "customer_support", "local_number": "+1 416 591 1668",
          "remote_number": "+1 416 555 0142"},
    "b": {"extension": "3001", "agent": "sam", "team": "sales", "local_number": "+61 2 8197 9000",
          "remote_number": "+61 2 9000 1234"},
}


@dataclass
class World:
    """One initialised data dir + database under one policy, with a clock the test moves."""

    settings: Settings
    runtime: Runtime
    clock: FixedClock
    policy: str

    def at(self, when: datetime) -> World:
        self.clock.at = when
        return self

    def ingest(self, *, call_id: str | None = None, started: datetime = T, seconds: float = 2.0, seed: int = 0,
               audio: bytes | None = None, **overrides: Any) -> str:
        """Ingest one in-scope call (inbound, announcement played); returns the recording id."""
        meta: dict[str, Any] = {
            "call_id": call_id or f"call-{uuid.uuid4().hex[:10]}", "direction": "inbound",
            "started_at": started.isoformat(), "ended_at": (started + timedelta(seconds=seconds)).isoformat(),
            "consent": {"announcement_played_at": started.isoformat(), "announcement_version": "1"},
            **IN_SCOPE[self.policy],
        }
        meta.update(overrides)
        meta = {k: v for k, v in meta.items() if v is not None}
        self.clock.at = max(self.clock.at, started + timedelta(seconds=seconds, minutes=1))
        data = audio if audio is not None else wav_bytes(seconds, seed=seed)
        result = ingest_recording(db=self.runtime.db, store=self.runtime.store, keyring=self.runtime.keyring,
                                  audio=io.BytesIO(data), metadata=meta, actor="test", actor_role="admin",
                                  clock=self.clock)
        return result.recording_id

    def row(self, rec_id: str) -> Recording:
        with self.runtime.db.unit_of_work() as session:
            row = session.get(Recording, rec_id)
            assert row is not None
            return row

    def audio(self, rec_id: str) -> bytes:
        """The decrypted audio, checked against its SHA-256 (raises if it cannot be played)."""
        with self.runtime.db.unit_of_work() as session:
            row = session.get(Recording, rec_id)
            assert row is not None and row.state == RecordingState.AVAILABLE
            reader = playback.open_reader(session, store=self.runtime.store, keyring=self.runtime.keyring, row=row)
            return b"".join(playback.stream(reader, None, row.sha256))

    def playable(self, rec_id: str) -> bool:
        try:
            self.audio(rec_id)
        except Exception:
            return False
        return True

    def record(self, rec_id: str) -> DestructionRecord | None:
        with self.runtime.db.unit_of_work() as session:
            return session.get(DestructionRecord, rec_id)

    def has_key(self, rec_id: str) -> bool:
        with self.runtime.db.unit_of_work() as session:
            return session.get(DataKey, rec_id) is not None

    def count(self, model: type, *conds: Any) -> int:
        with self.runtime.db.unit_of_work() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*conds)) or 0)

    def intact_or_fully_destroyed(self, rec_id: str) -> str:
        """'intact' (playable, key and blob there) or 'destroyed' (key, blob gone; record kept); else fail."""
        row = self.row(rec_id)
        blob = self.runtime.store.exists(row.blob_key)
        if row.state == RecordingState.AVAILABLE and self.has_key(rec_id) and blob and self.playable(rec_id):
            return "intact"
        assert row.state == RecordingState.DESTROYED, f"{rec_id} is half-destroyed: {row.state}"
        assert not self.has_key(rec_id) and not blob, f"{rec_id} is marked destroyed but key/blob remain"
        assert self.record(rec_id) is not None, f"{rec_id} has no destruction record"
        return "destroyed"

    def cli(self, *args: str) -> tuple[int, str]:
        env = {"CALLVAULT_DATA_DIR": str(self.settings.data_dir),
               "CALLVAULT_DATABASE_URL": self.settings.database_url}
        result = CliRunner().invoke(app, [*args, "--data-dir", str(self.settings.data_dir)], env=env)
        return result.exit_code, result.output

    def integration_account(self, username: str = "pbx") -> str:
        """The phone system's integration account (a role in ``controls.integration_roles``), as a deployment
        creates it for relaying the agent's controls; created on first use. Returns its username."""
        with self.runtime.db.unit_of_work() as session:
            integration_user(session, username, self.clock)
        return username

    def stop(self, rec_id: str, at: datetime) -> str:
        """The phone system relays the agent's stop at ``at`` for a stored recording, as of the world's clock
        (the CLI's clock is the machine's); returns what was done to the stored audio."""
        from callvault.capture import control
        from callvault.policy import service as policy_service
        from callvault.policy.decide import Actor

        username = self.integration_account()
        with self.runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=self.clock)
            actor = Actor(user_id="", username=username, role=policy.controls.integration_roles[0])
            filed = control.file_control(session, policy=policy, actor=actor, kind="stop", recording_id=rec_id,
                                         at=at, clock=self.clock)
        return control.apply_to_stored(db=self.runtime.db, store=self.runtime.store, keyring=self.runtime.keyring,
                                       filed=filed, actor=actor, clock=self.clock)

    def close(self) -> None:
        self.runtime.close()


def make_world(data_dir: Path, database_url: str, policy_file: Path, policy: str) -> World:
    settings = load_settings(data_dir, env={"CALLVAULT_DATABASE_URL": database_url})
    initialise(settings, policy_file=policy_file, admin_user="admin", admin_password=PASSWORD)
    clock = FixedClock(T)
    runtime = build_runtime(settings, clock=clock)
    return World(settings=settings, runtime=runtime, clock=clock, policy=policy)


def world_for(request: pytest.FixtureRequest, tmp_path: Path, policy: str) -> Iterator[World]:
    """A fresh world (own database and data dir) under policy "a" or "b", closed afterwards."""
    from tests.conftest import POLICY_A, POLICY_B, fresh_database

    (tmp_path / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as url:
        world = make_world(tmp_path / "data", url, POLICY_A if policy == "a" else POLICY_B, policy)
        try:
            yield world
        finally:
            world.close()
