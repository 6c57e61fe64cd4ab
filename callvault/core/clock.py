"""Time, injectable so tests can move it (retention, deadlines, token expiry)."""

from __future__ import annotations

from datetime import UTC, datetime


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
