"""`callvault demo` places calls through its own SIPREC server: a new user sees a live call (the live API
lists it for the supervisor), the agent pauses it, then its recording and its transcript appear (issue 27).
The whole demo runs as a user starts it, in a process of its own, and is reached over HTTP as a browser
would, with the demo's own logins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import pyotp
import pytest
from sqlalchemy import select

from callvault.capture.models import RecordingControl
from callvault.core.settings import load_settings
from callvault.demo import seed
from callvault.demo.caller import free_loopback_port
from callvault.identity import mfa
from callvault.recordings.models import Recording
from callvault.runtime import Runtime, build_runtime
from callvault.transcription.models import Transcript
from tests.conftest import fresh_database

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], proc: subprocess.Popen[bytes], log: Path,
             timeout: float) -> T:
    """Poll ``probe`` until it gives something (the event we mean), the demo dies, or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the demo exited ({proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def test_the_demo_places_a_call_that_is_live_and_then_stored(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    (tmp_path / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as database_url:
        env = {**os.environ, "CALLVAULT_DATABASE_URL": database_url, "CALLVAULT_TRANSCRIPTION_STREAMS": "1",
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                              os.environ.get("PYTHONPATH", "")])}
        for name in ("CALLVAULT_SIPREC_LISTEN", "CALLVAULT_SIPREC_TAP", "CALLVAULT_DATA_DIR"):
            env.pop(name, None)
        data_dir = tmp_path / "demo"
        log = tmp_path / "demo.log"
        port = free_loopback_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from callvault.cli.main import main; main()", "demo", "--recordings", "0",
                 "--port", str(port), "--demo-call-every", "600", "--demo-call-seconds", "12",
                 "--data-dir", str(data_dir)], env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        runtime: Runtime | None = None
        clients: list[httpx.Client] = []
        try:
            wait_for("demo set-up", lambda: True if (data_dir / "demo-mfa.json").exists() else None, proc, log, 120)
            runtime = build_runtime(load_settings(data_dir, env={"CALLVAULT_DATABASE_URL": database_url}))
            db = runtime.db

            wait_for("the web server", lambda: _answers(port), proc, log, 60)
            lead, alice = _signed_in(port, data_dir, "lead"), _signed_in(port, data_dir, "alice")
            clients += [lead, alice]

            def live_call() -> dict[str, str] | None:
                resp = lead.get("/api/v1/live/calls")
                assert resp.status_code == 200, resp.text
                calls: list[dict[str, str]] = resp.json()["calls"]
                return calls[0] if calls else None

            def stored() -> Recording | None:
                with db.unit_of_work() as session:
                    row = session.scalar(select(Recording).where(Recording.call_id.startswith("siprec:"),
                                                                 Recording.state == "available"))
                    if row is not None:
                        session.expunge(row)
                    return row

            def transcript(recording_id: str) -> str | None:
                with db.unit_of_work() as session:
                    row = session.get(Transcript, recording_id)
                    return row.status if row is not None and row.status in ("done", "failed") else None

            call = wait_for("live call", live_call, proc, log, 60)
            assert call["extension"] == "2001"
            pause = {"action": "pause", "at": datetime.now(UTC).isoformat()}  # the agent presses pause now
            paused = alice.post(f"/api/v1/calls/{call['call_id']}/control", json=pause)
            assert paused.status_code == 200, paused.text
            recording = wait_for("stored recording", stored, proc, log, 60)
            status = wait_for("transcript", lambda: transcript(recording.id), proc, log, 180)
            with db.unit_of_work() as session:
                [event] = session.scalars(select(RecordingControl).where(RecordingControl.call_id == call["call_id"]))
                assert event.kind == "pause" and event.applied_at is not None
        finally:
            if runtime is not None:
                runtime.close()
            for client in clients:
                client.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert recording.call_id == call["call_id"] and recording.extension == "2001"
        assert not recording.quarantined and 11.0 <= recording.duration_seconds <= 13.5
        assert status == "done"
        output = log.read_text()
        assert "SIPREC recording server for the demo on 127.0.0.1:" in output
        assert "[demo call] demo call from +1416555" in output and "to alice (extension 2001)" in output


def _answers(port: int) -> bool | None:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.TransportError:
        return None
    return True


def _signed_in(port: int, data_dir: Path, username: str) -> httpx.Client:
    """A client signed in as a demo user, with the password and the secret the demo keeps for people's
    codes. The next time step's code: enrolment (seconds ago) spent the current one, and each step works once."""
    secret = json.loads(seed.demo_mfa_file(data_dir).read_text())[username]
    otp = pyotp.TOTP(secret).at(time.time() + mfa.STEP_SECONDS)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    resp = client.post("/api/v1/auth/token", json={"username": username, "password": seed.DEMO_PASSWORD,
                                                   "otp": otp})
    if resp.status_code != 200:
        client.close()
        pytest.fail(f"demo sign-in as {username}: {resp.text}")
    client.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
    return client
