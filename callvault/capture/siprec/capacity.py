"""Admission of new calls: refuse at the door what would not be recorded, so the SBC fails over.

Answering ``200`` with every m-line at port 0 looks like success to an SRC: it never tries its
next recorder and the call is silently lost. So a new INVITE is refused

* with ``503`` + ``Retry-After`` when this process is at capacity — ``--max-calls`` calls being
  set up or recorded, fewer free RTP ports than the offer's recordable streams, resident memory
  over ``--max-memory``, or an event loop running more than ``--max-loop-lag`` seconds late (a process
  whose core is saturated reads packets too late and the kernel drops them; one more call makes it
  worse for every call) — decided when the INVITE arrives, before any database work, so a flood is
  answered as fast as it comes;
* with ``488`` when no offered m-line could be recorded whatever the load (no supported codec,
  transport or media type).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass

from callvault.capture.siprec.config import ServerConfig
from callvault.capture.siprec.sdp import SessionDescription, StreamPlan, plan_answer


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    warning: str
    """Text of the ``Warning`` header (what an SBC operator reads in its trace)."""
    retry_after: int | None = None

    def headers(self) -> list[tuple[str, str]]:
        out = [("Warning", f'399 callvault "{self.warning}"')]
        if self.retry_after is not None:
            out.append(("Retry-After", str(self.retry_after)))
        return out


def resident_mb() -> float | None:
    """This process's resident memory in MiB (None where ``/proc`` is not there)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def at_capacity(config: ServerConfig, *, calls: int, free_ports: int, loop_lag: float = 0.0) -> Refusal | None:
    """The 503 for a new INVITE while ``calls`` are set up or recorded and the event loop runs ``loop_lag``
    seconds late, or None to let it in."""
    why = None
    if calls >= config.max_calls:
        why = f"at capacity: {calls} calls (--max-calls {config.max_calls})"
    elif free_ports < 1:
        why = "at capacity: no free RTP port"
    elif config.max_loop_lag and loop_lag > config.max_loop_lag:
        why = f"at capacity: event loop {loop_lag:.1f} s late (--max-loop-lag {config.max_loop_lag:g})"
    elif config.max_memory_mb and (rss := resident_mb()) is not None and rss > config.max_memory_mb:
        why = f"at capacity: {rss:.0f} MiB resident (--max-memory {config.max_memory_mb})"
    return None if why is None else Refusal(503, "Service Unavailable", why, config.retry_after)


def unrecordable(offer: SessionDescription, *, free_ports: int, retry_after: int) -> Refusal | None:
    """488 when no m-line of ``offer`` can be recorded, 503 when there are not ports for all that can."""
    plans: list[StreamPlan] = plan_answer(offer, [0] * len(offer.media))
    accepted = sum(p.accepted for p in plans)
    if not accepted:
        reasons = "; ".join(sorted({p.reason for p in plans if p.reason})) or "no audio stream offered"
        return Refusal(488, "Not Acceptable Here", f"nothing to record: {reasons}"[:200])
    if free_ports < accepted:
        return Refusal(503, "Service Unavailable", "at capacity: not enough free RTP ports", retry_after)
    return None


LOOP_LAG_WINDOW = 5.0
"""Seconds a late housekeeping tick keeps counting against admission (a saturated loop is late again and
again; one late tick after a garbage collection is forgotten soon)."""


class LoopLag:
    """How late this process's event loop runs: the housekeeping task says when it goes to sleep and when it
    wakes; a wake-up after its due time measures the delay. ``current`` is the largest delay of the last
    ``LOOP_LAG_WINDOW`` seconds, or how overdue the sleeping tick is now (a loop busy at this moment)."""

    def __init__(self, window: float = LOOP_LAG_WINDOW) -> None:
        self.window = window
        self._due: float | None = None
        self._late: deque[tuple[float, float]] = deque()

    def sleeping(self, now: float, interval: float) -> None:
        self._due = now + interval

    def woke(self, now: float) -> None:
        if self._due is not None and now > self._due:
            self._late.append((now, now - self._due))
        self._due = None
        while self._late and now - self._late[0][0] > self.window:
            self._late.popleft()

    def current(self, now: float) -> float:
        recent = max((lag for at, lag in self._late if now - at <= self.window), default=0.0)
        overdue = now - self._due if self._due is not None else 0.0
        return max(recent, overdue, 0.0)
