"""`callvault demo` places calls through its own SIPREC server: a new user sees a live call, then its
recording (issue 27). The whole demo runs as a user starts it, in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select

from callvault.core.settings import load_settings
from callvault.demo.caller import free_loopback_port
from callvault.live.models import ActiveCall
from callvault.recordings.models import Recording
from callvault.runtime import Runtime, build_runtime
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
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from callvault.cli.main import main; main()", "demo", "--recordings", "0",
                 "--port", str(free_loopback_port()), "--demo-call-every", "600", "--demo-call-seconds", "8",
                 "--data-dir", str(data_dir)], env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        runtime: Runtime | None = None
        try:
            wait_for("demo set-up", lambda: True if (data_dir / "demo-mfa.json").exists() else None, proc, log, 120)
            runtime = build_runtime(load_settings(data_dir, env={"CALLVAULT_DATABASE_URL": database_url}))
            db = runtime.db

            def live_call() -> ActiveCall | None:
                with db.unit_of_work() as session:
                    row = session.scalar(select(ActiveCall))
                    if row is not None:
                        session.expunge(row)
                    return row

            def stored() -> Recording | None:
                with db.unit_of_work() as session:
                    row = session.scalar(select(Recording).where(Recording.call_id.startswith("siprec:"),
                                                                 Recording.state == "available"))
                    if row is not None:
                        session.expunge(row)
                    return row

            call = wait_for("live call", live_call, proc, log, 60)
            assert call.extension == "2001" and call.agent == "alice" and call.tap_url
            recording = wait_for("stored recording", stored, proc, log, 60)
        finally:
            if runtime is not None:
                runtime.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert recording.call_id == call.call_id and recording.extension == "2001"
        assert not recording.quarantined and 7.0 <= recording.duration_seconds <= 9.5
        output = log.read_text()
        assert "SIPREC recording server for the demo on 127.0.0.1:" in output
        assert "[demo call] demo call from +1416555" in output and "to alice (extension 2001)" in output
