"""`callvault serve` runs the background jobs itself on a single node (issue 27): a mail queued before
the server starts is delivered, the audit log is checkpointed and a new recording gets its transcript,
with no `callvault worker` anywhere. With `--no-workers` (scale-out, deploy/) nothing is processed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from callvault.audit.models import AuditCheckpoint
from callvault.capture.ingest import ingest_recording
from callvault.notify import service as notify
from callvault.notify.models import OutboxMail, OutboxState
from callvault.transcription.models import Transcript, TranscriptStatus
from tests.support.audio import metadata, wav_bytes
from tests.support.env import CallvaultEnv, _free_port, wait_until_serving
from tests.support.smtp import MailSink, smtp_server

CALLVAULT = str(Path(sys.executable).parent / "callvault")


def _queue_mail(env: CallvaultEnv) -> None:
    with env.runtime.db.unit_of_work() as session:
        notify.enqueue(session, to="lead@example.test", subject="Your weekly sample is ready", body="8 calls")


def _ingest(env: CallvaultEnv, tmp_path: Path) -> str:
    audio = tmp_path / "call.wav"
    audio.write_bytes(wav_bytes(3.0))
    result = ingest_recording(db=env.runtime.db, store=env.runtime.store, keyring=env.runtime.keyring,
                              audio=audio, metadata=json.dumps(metadata()), actor="test", clock=env.runtime.clock)
    return result.recording_id


@contextmanager
def _serve(env: CallvaultEnv, sink: MailSink, log: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    port = _free_port()
    child_env = {**os.environ, **env.cli_env, "CALLVAULT_SMTP_HOST": "127.0.0.1",
                 "CALLVAULT_SMTP_PORT": str(sink.port), "NO_COLOR": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([CALLVAULT, "serve", "--port", str(port), *extra], env=child_env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", proc, log=log, timeout=120)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _arrivals(sink: MailSink) -> threading.Event:
    """An event set when the sink receives a mail (wrapping its handler)."""
    arrived = threading.Event()
    handle = sink.handle_DATA

    async def handle_and_signal(server: Any, session: Any, envelope: Any) -> str:
        reply = await handle(server, session, envelope)
        arrived.set()
        return reply

    sink.handle_DATA = handle_and_signal  # type: ignore[method-assign]
    return arrived


def _wait_for(condition: Any, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def _children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]


def test_serve_delivers_mail_checkpoints_and_transcribes_without_a_worker(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    _queue_mail(isolated_env)
    recording_id = _ingest(isolated_env, tmp_path)
    db = isolated_env.runtime.db
    with smtp_server() as sink:
        arrived = _arrivals(sink)
        log = tmp_path / "serve.log"
        with _serve(isolated_env, sink, log, "--transcription-streams", "1") as proc:
            if not arrived.wait(180):
                raise AssertionError(f"no mail arrived\n{log.read_text(errors='replace')[-3000:]}")
            assert sink.to("lead@example.test")[0].message["Subject"] == "Your weekly sample is ready"

            def checkpointed() -> bool:
                with db.unit_of_work() as session:
                    return bool(session.scalar(select(func.count()).select_from(AuditCheckpoint)))

            def transcribed() -> bool:
                with db.unit_of_work() as session:
                    row = session.get(Transcript, recording_id)
                    return row is not None and row.status == TranscriptStatus.DONE

            _wait_for(checkpointed, proc, log, "an audit checkpoint")
            _wait_for(transcribed, proc, log, "the recording's transcript")
    assert "Background jobs: running" in log.read_text()


def test_serve_with_no_workers_processes_nothing(isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    _queue_mail(isolated_env)
    with smtp_server() as sink:
        log = tmp_path / "serve.log"
        with _serve(isolated_env, sink, log, "--no-workers") as proc:
            assert _children(proc.pid) == []  # no worker process was started
            assert "not run here (--no-workers)" in log.read_text()
    with isolated_env.runtime.db.unit_of_work() as session:
        states = list(session.scalars(select(OutboxMail.state)))
    assert states == [OutboxState.PENDING] and sink.received == []
