"""Keeping a ``callvault`` child process running beside ``callvault serve``.

Why child processes and not threads in the web server: the children (the SIPREC capture server, the
background workers) want their own interpreter, so a slow web request never delays RTP or a mail, a
transcription that keeps a core busy does not take the GIL from request threads, and a crash in one
does not take down the others. The supervisor restarts a child that dies (backing off up to
``max_backoff`` seconds, reset after a minute of good running) and stops it with SIGTERM (which lets
the child finish what it is doing) when the web server stops. A child that exits with one of
``final_codes`` (bad configuration) is not restarted: the error is logged and will not fix itself.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection

log = logging.getLogger("callvault.supervisor")


class ChildSupervisor:
    """Keeps one ``callvault ARGS...`` child running until ``stop`` (see the module docstring)."""

    def __init__(self, args: list[str], *, name: str, env: dict[str, str] | None = None,
                 max_backoff: float = 30.0, final_codes: Collection[int] = (2,)) -> None:
        self._cmd = [sys.executable, "-c", "from callvault.cli.main import main; main()", *args]
        self.name = name
        self._env = env
        self._max_backoff = max_backoff
        self._final_codes = frozenset(final_codes)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name=f"supervisor {name}", daemon=True)
        self.starts = 0

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            with self._lock:
                if self._stopping.is_set():
                    return
                # Its own session: Ctrl-C on the terminal reaches serve, which then stops the child
                # deliberately (a child that died of the same SIGINT would be restarted).
                self._proc = subprocess.Popen(self._cmd, env=self._env, start_new_session=True)  # noqa: S603
                self.starts += 1
                proc = self._proc
            log.info("%s started (pid %d)", self.name, proc.pid)
            code = proc.wait()
            if self._stopping.is_set():
                return
            if code in self._final_codes:
                log.error("%s exited with a configuration error (status %d); not restarting", self.name, code)
                return
            if time.monotonic() - started > 60:
                backoff = 1.0
            log.warning("%s exited with status %s; restarting in %.0f s", self.name, code, backoff)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def terminate(self) -> None:
        """SIGTERM the child and restart it no more, without waiting (``stop`` waits): stopping several
        children then takes as long as the slowest, not the sum."""
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 45.0) -> None:
        """SIGTERM the child (it finishes its current work), SIGKILL after ``timeout``."""
        self.terminate()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread.is_alive():
            self._thread.join(5)
