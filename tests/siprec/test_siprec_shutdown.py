"""Stopping the capture server with calls open: SIGTERM stores them all at once, within the bound;
after a SIGKILL the next start leaves no call ``pending`` (each failed with a reason), and a second
capture process on the same database never touches a live one's calls.

Before, shutdown stored one call at a time (~6 calls/s): after 40 s only 62 of 1,002 calls were
stored, and the service manager's SIGKILL left 940 ``pending`` rows nothing would ever finish.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from sqlalchemy import select

from callvault.recordings.models import Recording, RecordingState
from tests.siprec.support import (
    HELPER,
    SCENARIOS,
    free_media_ports,
    free_sip_port,
    running_server,
    sipp_or_skip,
    stored_recording,
)
from tests.support.env import CallvaultEnv

CALLVAULT = str(Path(sys.executable).with_name("callvault"))
CAPTURE_STOPPED = "capture stopped before the call was stored"


@pytest.fixture(autouse=True)
def _need_sipp() -> None:
    sipp_or_skip()


def _wait(what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _rows(env: CallvaultEnv) -> list[Recording]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(Recording).where(Recording.call_id.startswith("siprec:"))))
        for row in rows:
            session.expunge(row)
    return rows


def _stats(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


@contextmanager
def _calls(port: int, work: Path, count: int) -> Iterator[subprocess.Popen[bytes]]:
    """``count`` concurrent calls of ``held_call.xml`` (3 s of media, then held open), killed at the end."""
    work.mkdir(exist_ok=True)
    media = free_media_ports()
    sipp = subprocess.Popen([sipp_or_skip(), "-sf", str(SCENARIOS / "held_call.xml"), "-m", str(count), "-l",
                             str(count), "-r", "10", "-i", "127.0.0.1", "-p", str(free_sip_port()), "-mp", str(media),
                             "-t", "u1", "-nostdin", "-key", "python", sys.executable, "-key", "helper", str(HELPER),
                             f"127.0.0.1:{port}"],
                            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield sipp
    finally:
        sipp.kill()
        sipp.wait()


def _capture(env: CallvaultEnv, port: int, rtp: int, stats: Path, *extra: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([CALLVAULT, "capture", "siprec", "--listen", f"127.0.0.1:{port}",
                               "--rtp-ports", f"{rtp}-{rtp + 200}", "--stats-file", str(stats), "--rtp-timeout", "0",
                               *extra], env={**os.environ, **env.cli_env}, stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    assert server.stderr is not None
    assert b"SIPREC recording server" in server.stderr.readline()
    return server


def _media_in(stats: Path, calls: int) -> Callable[[], bool]:
    """Every call is up and its senders have finished their 3 s of media on both streams.

    Finished means every packet arrived, or (a loaded machine may drop a few on loopback) at least 95% did
    and the count has stopped growing across two of the server's stats writes (one a second): a total
    over 95% alone can still leave one call a fraction of a second short of its 3 s.
    """
    everything = calls * 2 * 150
    seen: dict[str, float] = {"packets": -1.0, "since": time.monotonic()}

    def check() -> bool:
        s = _stats(stats)
        if s.get("active_calls") != calls:
            return False
        packets, now = float(s.get("packets", 0)), time.monotonic()
        if packets != seen["packets"]:
            seen["packets"], seen["since"] = packets, now
        return packets >= everything or (packets >= everything * 0.95 and now - seen["since"] >= 2.5)
    return check


def test_sigterm_stores_every_open_call_within_the_bound(isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    calls, store_timeout = 24, 60
    port, stats = free_sip_port(), tmp_path / "stats.json"
    server = _capture(isolated_env, port, 37000, stats, "--drain-timeout", "0", "--store-timeout", str(store_timeout))
    assert server.stderr is not None
    with _calls(port, tmp_path / "sipp", calls):
        _wait(f"{calls} calls with their media", _media_in(stats, calls))
        stopped = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(store_timeout + 30) == 0
        took = time.monotonic() - stopped
    log = server.stderr.read().decode(errors="replace")
    server.stderr.close()
    rows = _rows(isolated_env)
    assert len(rows) == calls
    assert [r.state for r in rows] == [RecordingState.AVAILABLE] * calls, log[-3000:]
    assert took < store_timeout + 20, log[-3000:]
    for stored in stored_recording(isolated_env.runtime):  # each decrypts, matches its hash, holds its 3 s
        assert stored.row.channels == 2
        assert stored.audio.shape[0] >= 2.5 * stored.rate


def test_after_a_sigkill_the_next_start_fails_every_call_left_pending(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    calls = 4
    port, stats = free_sip_port(), tmp_path / "stats.json"
    first = _capture(isolated_env, port, 37400, stats)
    with _calls(port, tmp_path / "sipp", calls):
        _wait(f"{calls} calls with their media", _media_in(stats, calls))
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.stderr is not None
    first.stderr.close()
    assert [r.state for r in _rows(isolated_env)] == [RecordingState.PENDING] * calls
    second = _capture(isolated_env, free_sip_port(), 37600, tmp_path / "stats2.json")
    try:
        _wait("the calls of the killed process to be failed",
              lambda: all(r.state != RecordingState.PENDING for r in _rows(isolated_env)))
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
        assert second.stderr is not None
        second.stderr.close()
    rows = _rows(isolated_env)
    assert [(r.state, r.failure_reason) for r in rows] == [(RecordingState.FAILED, CAPTURE_STOPPED)] * calls
    # The dead process's half-written spools (``blobs/.tmp/*.part``, unreadable: their key died with it) are
    # removed by the ingest reaper and ``check --repair``, as after any interrupted ingest.


class _SlowWrites:
    """The store with each blob write taking ``delay`` s to complete (an object store's round trip)."""

    def __init__(self, store: Any, delay: float) -> None:
        self._store, self._delay = store, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        with self._store.writer(key) as sink:
            yield sink
            time.sleep(self._delay)


def test_a_shutdown_stores_calls_in_parallel_not_one_after_another(
        isolated_env: CallvaultEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, delay = 12, 1.0
    runtime = isolated_env.runtime
    monkeypatch.setattr(runtime, "store", _SlowWrites(runtime.store, delay))
    stats = tmp_path / "stats.json"
    with running_server(runtime, rtp_base=37800, drain_timeout=0, store_timeout=120, rtp_timeout=0,
                        stats_file=stats) as server, _calls(server.port, tmp_path / "sipp", calls):
        _wait(f"{calls} calls with their media", _media_in(stats, calls))
        stopped = time.monotonic()
    took = time.monotonic() - stopped
    assert [r.state for r in _rows(isolated_env)] == [RecordingState.AVAILABLE] * calls
    # One after another, each call's two writes (spool closed, WAV written) would take 2 s: 24 s at least.
    assert took < calls * 2 * delay, f"shutdown took {took:.1f} s"


def test_a_second_capture_process_leaves_a_live_ones_calls_alone(isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    port, stats = free_sip_port(), tmp_path / "stats.json"
    live = _capture(isolated_env, port, 38000, stats, "--drain-timeout", "0")
    try:
        with _calls(port, tmp_path / "sipp", 1):
            _wait("the call with its media", _media_in(stats, 1))
            with running_server(isolated_env.runtime, rtp_base=38200):  # starts, sweeps for dead nodes' calls
                assert [r.state for r in _rows(isolated_env)] == [RecordingState.PENDING]
            live.send_signal(signal.SIGTERM)
            assert live.wait(60) == 0
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
        assert live.stderr is not None
        live.stderr.close()
    assert [r.state for r in _rows(isolated_env)] == [RecordingState.AVAILABLE]
