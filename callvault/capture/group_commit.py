"""Group commit for concurrent single ingests: uploads that arrive together share their transactions.

Why: one ingest costs two committed transactions, an audit append, a policy look-up and a dozen
statements, most of it fixed per transaction rather than per recording (the bulk path, which
shares them, runs about twice as fast). A server receives uploads one per request, so when several
arrive at once this module gathers them into one ``ingest_many`` batch, the way a database groups
the commits of concurrent transactions into one log flush.

How: callers with the same batch key (the same database, store, actor, source address …) queue
here. At most ``lanes`` batches per key run at a time; a caller that finds a free lane leads: it
takes everything queued (up to ``max_batch``), runs it, hands every caller its own outcome and, if
more arrived meanwhile, hands the lead to the first of those. A caller that arrives while every
lane is busy waits and is taken into the next batch. With nobody else around a caller leads a
batch of one, exactly the old single ingest; with two lanes, two uploads at a time still overlap
each other's disk waits as before.

Each recording keeps its own admission decision, data key, fsynced blob, audit entry and outcome
(``ingest_many``'s contract), and is acknowledged only after its batch's final commit. If a batch
of several fails as a whole (the database refused the shared transaction), each of its recordings
is run again alone, so one upload's failure is never another's.

The queue lives only as long as its callers wait on it: nothing here outlives a request, so any
number of server nodes each group their own uploads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
BatchRunner = Callable[[Sequence[Item]], Sequence[Outcome | BaseException]]
"""Runs items together and returns one outcome per item, in order (an exception: that item failed)."""

DEFAULT_LANES = 2
DEFAULT_MAX_BATCH = 32


@dataclass(eq=False)
class _Waiter(Generic[Item, Outcome]):
    """One caller's item, and how it learns its outcome or that it leads the next batch."""

    item: Item
    woken: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    outcome: Outcome | BaseException | None = None


class GroupCommit(Generic[Item, Outcome]):
    """Runs concurrent callers' items in shared batches (see the module docstring)."""

    def __init__(self, *, lanes: int = DEFAULT_LANES, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if lanes < 1 or max_batch < 1:
            raise ValueError("lanes and max_batch must be at least 1")
        self._lanes = lanes
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queues: dict[Hashable, list[_Waiter[Item, Outcome]]] = {}
        self._running: dict[Hashable, int] = {}

    def run(self, key: Hashable, item: Item, run_batch: BatchRunner[Item, Outcome]) -> Outcome:
        """``item``'s outcome, from a batch of items queued under ``key``; raises what stopped it.

        ``run_batch`` takes items and returns one outcome each, in order; an outcome that is an
        exception is raised to that item's caller. Callers sharing a key must be content with any of
        their ``run_batch`` functions running their items.
        """
        waiter: _Waiter[Item, Outcome] = _Waiter(item)
        with self._lock:
            self._queues.setdefault(key, []).append(waiter)
            if self._running.get(key, 0) < self._lanes:
                self._running[key] = self._running.get(key, 0) + 1
                waiter.leads = True
        if not waiter.leads:
            waiter.woken.wait()  # set once: with the outcome, or when the lead is handed to this caller
        if waiter.leads:
            self._lead(key, waiter, run_batch)
        return self._result(waiter)

    def _lead(self, key: Hashable, leader: _Waiter[Item, Outcome],
              run_batch: BatchRunner[Item, Outcome]) -> None:
        """Run the leader's item with what is queued, then pass the lane on or give it back.

        A caller the lead was handed to is never taken into another lane's batch: its own batch
        carries its item, so every item runs exactly once.
        """
        with self._lock:
            queue = self._queues[key]
            batch: list[_Waiter[Item, Outcome]] = [leader]
            rest: list[_Waiter[Item, Outcome]] = []
            for waiter in queue:
                if waiter is not leader:
                    (batch if not waiter.leads and len(batch) < self._max_batch else rest).append(waiter)
            queue[:] = rest
        try:
            _settle(batch, run_batch)
        finally:
            with self._lock:
                queue = self._queues[key]
                successor = next((w for w in queue if not w.leads), None)
                if successor is not None:
                    successor.leads = True
                else:
                    self._running[key] -= 1
                    if not self._running[key]:
                        del self._running[key]
                        if not queue:
                            del self._queues[key]
            for waiter in batch[1:]:
                waiter.woken.set()
            if successor is not None:
                successor.woken.set()

    @staticmethod
    def _result(waiter: _Waiter[Item, Outcome]) -> Outcome:
        outcome = waiter.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None, "a batch ended without deciding an item"
        return outcome


def _settle(batch: list[_Waiter[Item, Outcome]], run_batch: BatchRunner[Item, Outcome]) -> None:
    """Give every waiter of ``batch`` its outcome; a batch of several that fails whole is run one by one."""
    try:
        outcomes: Sequence[Outcome | BaseException] = run_batch([w.item for w in batch])
    except Exception as exc:
        if len(batch) == 1:
            outcomes = [exc]
        else:
            for waiter in batch:
                _settle([waiter], run_batch)
            return
    except BaseException as exc:  # interrupted: every caller hears it, nobody waits forever
        outcomes = [exc] * len(batch)
    if len(outcomes) != len(batch):
        outcomes = [RuntimeError(f"a batch of {len(batch)} returned {len(outcomes)} outcomes")] * len(batch)
    for waiter, outcome in zip(batch, outcomes, strict=True):
        waiter.outcome = outcome
