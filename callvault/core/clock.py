"""Time, injectable so tests can move it (retention, deadlines, token expiry), and the file system's own."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


class Clock:
    """Wall clock in UTC. Subclass or replace ``now`` in tests."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock(Clock):
    """A clock that only moves when told to; for tests."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


system_clock = Clock()


def filesystem_now(folder: str | bytes | Path) -> float:
    """The time, as the file system holding ``folder`` stamps a file written now (seconds since the epoch).

    Why: a file's age is its mtime against *this* clock, never against the host's. The two differ when the
    folder is on another machine (a PBX's recording share over NFS or SMB, a network disk) whose clock is
    off, or when the host's clock was stepped; compared with the host's clock, a file still being written
    there can look long finished (and be imported half-written), or a fresh temporary can look stale. A
    probe file is created and removed in ``folder``; where that is not allowed, the host's clock is the
    best there is.
    """
    name: str | bytes
    try:
        if isinstance(folder, bytes):
            fd, name = tempfile.mkstemp(dir=folder, prefix=b".callvault-clock-")
        else:
            fd, name = tempfile.mkstemp(dir=folder, prefix=".callvault-clock-")
    except OSError:
        return time.time()
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
