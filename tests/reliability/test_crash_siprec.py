"""kill -9 of the SIPREC capture server mid-call (the server runs as its own process here, `callvault
capture siprec`): afterwards at most a pending row, which the repair pass reaps; no plaintext audio
on disk; no half recording marked available. Skipped loudly without sipp."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from callvault.recordings.models import Recording, RecordingState
from tests.siprec.support import SCENARIOS, free_media_ports, free_sip_port, sipp_or_skip, stored_recording
from tests.support.env import CallvaultEnv

TRIALS = int(os.environ.get("CALLVAULT_SIPREC_KILL_TRIALS", "3"))
CALLVAULT = str(Path(sys.executable).with_name("callvault"))


def _plaintext_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and b"RIFF" in p.read_bytes()[:64]]


def test_killing_the_siprec_server_mid_call_leaves_nothing_half_stored_and_no_plaintext(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    sipp = sipp_or_skip()
    env = {**os.environ, **isolated_env.cli_env}
    rng = random.Random(7)
    killed = 0
    for trial in range(TRIALS):
        port = free_sip_port()
        rtp = 32000 + 200 * trial
        server = subprocess.Popen([CALLVAULT, "capture", "siprec", "--listen", f"127.0.0.1:{port}",
                                   "--rtp-ports", f"{rtp}-{rtp + 100}"], env=env,
                                  stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert server.stderr is not None
        assert b"SIPREC recording server" in server.stderr.readline()
        time.sleep(0.5)
        media = free_media_ports()
        work = tmp_path / f"sipp{trial}"
        work.mkdir()
        call = subprocess.Popen([sipp, "-sf", str(SCENARIOS / "rfc7865_pause_resume.xml"), "-m", "1",
                                 "-i", "127.0.0.1", "-p", str(free_sip_port()), "-mp", str(media), "-t", "u1",
                                 "-nostdin", "-timeout", "15", "-key", "python", sys.executable, "-key", "helper",
                                 str(SCENARIOS.parent / "rtp_send.py"), f"127.0.0.1:{port}"],
                                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.8, 4.5))  # the call lasts ~5.5 s: kill during media
        server.send_signal(signal.SIGKILL)
        server.wait()
        server.stderr.close()
        killed += 1
        call.kill()
        call.wait()
    with isolated_env.runtime.db.unit_of_work() as session:
        before = len(list(session.scalars(select(Recording.id).where(Recording.state == RecordingState.PENDING))))
    code = subprocess.run([CALLVAULT, "check", "--repair", "--older-than-minutes", "0"], env=env,
                          capture_output=True, text=True, check=False)
    assert code.returncode in (0, 1), code.stderr
    runtime = isolated_env.runtime
    with runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(Recording).where(Recording.call_id.startswith("siprec:"))))
        pending = [r for r in rows if r.state == RecordingState.PENDING]
        available = [r.id for r in rows if r.state == RecordingState.AVAILABLE]
    assert not pending, f"{len(pending)} pending rows survived the repair pass"
    assert len(stored_recording(runtime)) == len(available)  # each available one decrypts and matches its hash
    assert not _plaintext_files(isolated_env.data_dir), "plaintext audio on disk"
    assert not list((isolated_env.data_dir / "blobs" / ".tmp").glob("*.part"))
    print(f"[reliability] kill -9 SIPREC server: {TRIALS} trials, {killed} killed mid-call; "
          f"{before} pending rows reaped; after repair 0 pending, {len(available)} available (all bit-exact), "
          "0 plaintext files, 0 temporaries")
