"""Server transactions: the response cache and UDP retransmission of final INVITE responses.

RFC 3261 as far as a UAS that never sends requests needs it: every request's final response is
cached by (branch, method) for 32 s so a retransmitted request gets the same answer again (an
INVITE still being set up has ``None`` cached and gets ``100 Trying``); a final response to an
INVITE over UDP is retransmitted (T1 = 500 ms doubling to T2 = 4 s) until the ACK or 32 s.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from callvault.capture.siprec.transport import Reply

T1, T2, TIMER_B = 0.5, 4.0, 32.0

TxKey = tuple[str, str]
"""(branch, method)."""


@dataclass
class Pending:
    data: bytes
    reply: Reply
    key: tuple[str, int]
    started: float
    interval: float = T1
    task: asyncio.Task[None] | None = None


class Transactions:
    """Cached final responses and pending INVITE retransmissions of one capture process."""

    def __init__(self) -> None:
        self.cache: dict[TxKey, tuple[float, bytes | None]] = {}
        self.pending: dict[tuple[str, int], Pending] = {}

    def start_retransmit(self, data: bytes, reply: Reply, key: tuple[str, int]) -> None:
        """Resend a final INVITE response over UDP until ``stop_retransmit(key)`` (the ACK) or timer B."""
        self.stop_retransmit(key)
        pending = Pending(data, reply, key, time.monotonic())
        pending.task = asyncio.get_running_loop().create_task(self._retransmit(pending))
        self.pending[key] = pending

    async def _retransmit(self, pending: Pending) -> None:
        while time.monotonic() - pending.started < TIMER_B:
            await asyncio.sleep(pending.interval)
            if self.pending.get(pending.key) is not pending:
                return
            pending.reply.send(pending.data)
            pending.interval = min(pending.interval * 2, T2)
        self.pending.pop(pending.key, None)

    def stop_retransmit(self, key: tuple[str, int]) -> None:
        pending = self.pending.pop(key, None)
        if pending is not None and pending.task is not None:
            pending.task.cancel()

    def expire(self, now: float) -> None:
        """Forget responses older than timer B (a retransmission after that is a new request)."""
        cutoff = now - TIMER_B
        self.cache = {k: v for k, v in self.cache.items() if v[0] > cutoff}
