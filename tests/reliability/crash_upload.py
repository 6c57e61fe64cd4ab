"""kill -9 of the HTTP server while it takes uploads (issue 24's "server uploads"), mid-body and mid-commit.

Each trial starts the real server in its own process (``tests.reliability.child serve PORT``), uploads
``UPLOADS_PER_TRIAL`` calls one after another over one socket per upload (raw body, metadata header, as
a PBX script does), and SIGKILLs the server during one of them:

* **mid-body**: after a random number of the body's bytes were sent (the kill is sent by the client
  itself at that byte, so it lands inside the body every time);
* **mid-commit**: once the whole body is sent, at a random moment while the server reads, encrypts,
  fsyncs and commits it (drawn from 0 to 1.3 x the last upload's answer time; an answer that
  comes first is an acknowledgement, and the kill then lands just after it).

An upload is acknowledged when the client read its ``201`` and id. After each trial the repair pass
runs and every invariant of the ingest campaign is checked (``crash.repair_and_check_ingest``): each
acknowledged recording present and bit-exact, nothing pending, no orphan blob, no temporary file, and
nothing available that is not complete.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid

from callvault.api.routes_recordings import METADATA_HEADER
from tests.reliability.crash import repair_and_check_ingest
from tests.reliability.harness import REPO, Tally, assert_chain_intact
from tests.support.audio import metadata, wav_bytes
from tests.support.retention import World

UPLOADS_PER_TRIAL = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    """One ``child serve`` process, started and listening."""

    def __init__(self, world: World) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.child", "serve", str(world.settings.data_dir),
             world.settings.database_url, str(self.port)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert self.proc.stdin is not None and self.proc.stdout is not None
        for expected, say in (("READY", "GO\n"), ("LISTENING", None)):
            line = self.proc.stdout.readline().strip()
            if line != expected:
                self.proc.kill()
                raise AssertionError(f"server child said {line!r}: {self.proc.communicate()[1][-3000:]}")
            if say:
                self.proc.stdin.write(say)
                self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=60)


def _token(world: World) -> str:
    code, output = world.cli("tokens", "create", "admin", "--scope", "recordings:ingest", "--ttl", "1d",
                             "--name", "crash-upload")
    assert code == 0, output
    return next(word for word in output.split() if word.startswith("cvt"))


def _send_headers(conn: http.client.HTTPConnection, token: str, meta: dict[str, object], size: int) -> None:
    conn.putrequest("POST", "/api/v1/recordings")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", "audio/wav")
    conn.putheader("Content-Length", str(size))
    conn.putheader(METADATA_HEADER, json.dumps(meta))
    conn.endheaders()


def _acknowledged(conn: http.client.HTTPConnection) -> str | None:
    """The id of a 201 answer read in full, else None (a dead server, a half answer)."""
    try:
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException):
        return None
    assert resp.status in (201, 200), f"upload answered {resp.status}: {body[:500]!r}"
    rec_id: str = json.loads(body)["id"]
    return rec_id


def crash_upload(world: World, *, trials: int, seed: int) -> Tally:
    """Even trials kill mid-body, odd trials mid-commit."""
    tally = Tally("kill -9 of the HTTP server during uploads")
    rng = random.Random(seed)
    token = _token(world)
    sources: dict[str, bytes] = {}
    acked: dict[str, str] = {}
    answer_time = 0.2
    """How long the last acknowledged upload took from its body's last byte to its answer (the machine's
    load changes it, so it is measured again by every upload that is not the victim)."""
    for trial in range(trials):
        server = _Server(world)
        victim = rng.randrange(UPLOADS_PER_TRIAL)
        mid_body = trial % 2 == 0
        killed = False
        try:
            for i in range(UPLOADS_PER_TRIAL):
                call_id = f"upload-{trial}-{i}-{uuid.uuid4().hex[:6]}"
                audio = wav_bytes(1.0 + (trial * 5 + i * 3) % 12 / 2, seed=trial * 10 + i)
                sources[call_id] = audio
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                _send_headers(conn, token, metadata(call_id=call_id), len(audio))
                if i == victim and mid_body:
                    cut = rng.randrange(1, len(audio))
                    conn.send(audio[:cut])
                    server.kill()
                    killed = True
                    tally.counts["killed_mid_body"] += 1
                    with contextlib.suppress(OSError):  # the server is gone; the rest of the body may not go
                        conn.send(audio[cut:])
                    assert _acknowledged(conn) is None, "an upload was acknowledged before its body arrived"
                    break
                conn.send(audio)
                sent = time.monotonic()
                if i == victim:
                    assert conn.sock is not None
                    conn.sock.settimeout(rng.uniform(0, 1.3 * answer_time))
                rec_id = _acknowledged(conn)
                if i == victim:
                    server.kill()
                    killed = True
                    tally.counts["killed_mid_commit" if rec_id is None else "killed_just_after_the_answer"] += 1
                else:
                    answer_time = time.monotonic() - sent
                if rec_id is not None:
                    acked[call_id] = rec_id
                conn.close()
                if killed:
                    break
        finally:
            server.kill()
        tally.trials += 1
        tally.killed += killed
        tally.finished += not killed
        found = repair_and_check_ingest(world, sources, acked)
        tally.counts["reaped"] += found["reaped"]
        tally.counts["temp_files_removed"] += found["temp_files_removed"]
        tally.counts["unacknowledged_but_complete"] = found["unacknowledged_but_complete"]
    tally.counts["acknowledged"] = len(acked)
    tally.counts["available"] = found["available"] if trials else 0
    tally.counts["audit_entries"] = assert_chain_intact(world.runtime.db)
    return tally
