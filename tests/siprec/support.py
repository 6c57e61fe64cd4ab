"""Running the SIPREC server in-process and sipp against it, and reading back what was stored."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from sqlalchemy import select

from callvault.capture.siprec.config import ServerConfig
from callvault.capture.siprec.process import serve
from callvault.capture.siprec.server import SessionManager
from callvault.core.clock import Clock, system_clock
from callvault.demo.src import StreamSipClient as StreamSipClient  # the SIP UAC the tests' dialogs use
from callvault.live.models import ActiveCall
from callvault.recordings.models import Recording
from callvault.recordings.playback import open_reader
from callvault.runtime import Runtime

HERE = Path(__file__).parent
SCENARIOS = HERE / "scenarios"
HELPER = HERE / "rtp_send.py"


def sipp_or_skip() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.skip("SIPP IS NOT INSTALLED: the SIPREC real-peer tests need Debian's sip-tester package "
                    "(`apt-get install -y sip-tester`, or `python dev.py` as root)")
    return path


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_media_ports(count: int = 4) -> int:
    """An even port ``p`` with ``p .. p+count-1`` all free for UDP on loopback: sipp's ``-mp`` binds audio RTP,
    RTCP and the video pair from there, and a test SRC offers consecutive streams. Drawn below the kernel's
    ephemeral range (32768+), where no socket bound to port 0 (a server's, a client's) can take one between
    this check and the peer's bind; a port picked from ``free_port()`` and rounded to even was not checked and
    could be taken (CI: sipp "Unable to bind audio RTP socket ... errno 98")."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000, 2)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free run of media ports")


def free_sip_port() -> int:
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


@dataclass
class RunningServer:
    port: int
    manager: SessionManager
    loop: asyncio.AbstractEventLoop
    tls_port: int | None = None

    def wait_idle(self, timeout: float = 20.0) -> None:
        """Wait until every call has been finalised (stored or discarded)."""
        async def idle() -> None:
            deadline = asyncio.get_running_loop().time() + timeout
            loop = asyncio.get_running_loop()
            while (self.manager.sessions or self.manager._finishing) and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        asyncio.run_coroutine_threadsafe(idle(), self.loop).result(timeout + 5)


SERVER_CLOCKS: dict[int, Clock] = {}
"""The clock of each capture server ``running_server`` runs, by SIP port: a sipp call to it is dated on it."""


@contextmanager
def running_server(runtime: Runtime, *, rtp_base: int = 31000, tls: tuple[Path, Path] | None = None,
                   tap: bool = False, **options: Any) -> Iterator[RunningServer]:
    """The server in a thread; ``tls`` = (certificate, key) also opens a TLS port; ``tap``: with the
    live-monitoring tap on a free loopback port; ``options`` override other ``ServerConfig`` fields."""
    port = free_sip_port()
    config = ServerConfig(host="127.0.0.1", port=port, rtp_ports=(rtp_base, rtp_base + 400), drain_timeout=5,
                          tls_port=free_sip_port() if tls else None, certfile=tls[0] if tls else None,
                          keyfile=tls[1] if tls else None, tap_port=0 if tap else None)
    config = dataclasses.replace(config, **options)
    ready = threading.Event()
    holder: dict[str, object] = {}
    stop_holder: dict[str, asyncio.Event] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop

        async def main() -> None:
            stop = asyncio.Event()
            stop_holder["stop"] = stop

            def on_ready(manager: SessionManager) -> None:
                holder["manager"] = manager
                ready.set()

            await serve(runtime, config, ready=on_ready, stop=stop)

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # surface start-up failures to the test
            holder["error"] = exc
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(20), "SIPREC server did not start"
    if "error" in holder:
        raise AssertionError(f"SIPREC server failed: {holder['error']!r}")
    loop = holder["loop"]
    assert isinstance(loop, asyncio.AbstractEventLoop)
    manager = holder["manager"]
    assert isinstance(manager, SessionManager)
    SERVER_CLOCKS[port] = runtime.clock
    try:
        yield RunningServer(port, manager, loop, config.tls_port)
    finally:
        SERVER_CLOCKS.pop(port, None)
        loop.call_soon_threadsafe(stop_holder["stop"].set)
        thread.join(30)


def run_sipp(scenario: str, server_port: int, tmp_path: Path, *, transport: str = "u1",
             timeout: int = 40, keys: dict[str, str] | None = None,
             trace_messages: bool = False, clock: Clock | None = None) -> subprocess.CompletedProcess[str]:
    """Run one sipp call; ``keys`` become ``-key NAME VALUE`` ([NAME] in the scenario), and
    ``trace_messages`` leaves the exchanged messages in ``tmp_path/*_messages.log``. ``clock``: the capture
    server's (its runtime's), which dates the announcement the scenario claims."""
    sipp = sipp_or_skip()
    media_port = free_media_ports()
    cmd = [sipp, "-sf", str(SCENARIOS / scenario), "-m", "1", "-i", "127.0.0.1", "-p", str(free_sip_port()),
           "-mp", str(media_port), "-t", transport, "-nostdin", "-timeout", str(timeout), "-timeout_error",
           "-key", "python", sys.executable, "-key", "helper", str(HELPER), "-trace_err",
           # The announcement is played as the call is placed: evidence dated within the call (A5, B2). The
           # capture server stamps the call with its runtime's clock, so this is that clock, not a fixed date.
           "-key", "announced_at", (clock or SERVER_CLOCKS.get(server_port, system_clock)).now().strftime(
               "%Y-%m-%dT%H:%M:%SZ")]
    for name, value in (keys or {}).items():
        cmd += ["-key", name, value]
    if trace_messages:
        cmd.append("-trace_msg")
    cmd.append(f"127.0.0.1:{server_port}")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=timeout + 20, check=False)
    if proc.returncode != 0:
        errors = "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("*_errors.log"))
        raise AssertionError(
            f"sipp failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n{errors}")
    return proc


def sent_call_seconds(tmp_path: Path) -> float:
    """How long the call lasted as sipp placed it: from the INVITE it sent to its BYE, by the timestamps of
    its message trace (``run_sipp(..., trace_messages=True)``). A scenario's pauses are minimums, and
    longer on a busy machine: a recording's length is checked against this, not against the script."""
    text = next(tmp_path.glob("*_messages.log")).read_text(errors="replace")
    sent: dict[str, datetime] = {}
    for block in text.split("-" * 47 + " ")[1:]:
        stamp, _, rest = block.partition("\n")
        lines = [line for line in rest.splitlines() if line.strip()]
        if len(lines) >= 2 and "message sent" in lines[0]:
            method = lines[1].split(" ", 1)[0]
            if method in ("INVITE", "BYE"):
                sent.setdefault(method, datetime.fromisoformat(stamp.strip()))
    if "INVITE" not in sent or "BYE" not in sent:
        raise AssertionError(f"sipp's trace shows no INVITE and BYE it sent: {sorted(sent)}")
    return (sent["BYE"] - sent["INVITE"]).total_seconds()


@contextmanager
def sipp_call(port: int, tmp_path: Path, scenario: str = "live_call.xml", *,
              clock: Clock | None = None) -> Iterator[None]:
    """Run a scenario in the background while the test acts on the call; re-raise sipp's failure at the end."""
    result: dict[str, BaseException] = {}

    def run() -> None:
        try:
            run_sipp(scenario, port, tmp_path, clock=clock)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(60)
        if "error" in result:
            raise result["error"]


def wait_for_active_call(runtime: Runtime, extension: str = "2001", timeout: float = 10.0) -> ActiveCall:
    """The ``active_calls`` row of the call sipp just started (the cluster-wide live view reads it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with runtime.db.unit_of_work() as session:
            row = session.scalar(select(ActiveCall).where(ActiveCall.extension == extension))
            if row is not None:
                session.expunge(row)
                return row
        time.sleep(0.05)
    raise AssertionError("the call never appeared in active_calls")


@dataclass
class Stored:
    row: Recording
    audio: np.ndarray
    rate: int


def stored_recording(runtime: Runtime, call_id_prefix: str = "siprec:") -> list[Stored]:
    out = []
    with runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(Recording).where(Recording.call_id.startswith(call_id_prefix))))
        for row in rows:
            reader = open_reader(session, store=runtime.store, keyring=runtime.keyring, row=row)
            assert row.sha256 is not None
            reader.verify_sha256(row.sha256)
            data = b"".join(reader.iter_all())
            audio, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
            session.expunge(row)
            out.append(Stored(row, audio, rate))
    return out


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0
