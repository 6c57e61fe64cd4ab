"""Group commit: concurrent callers share batches, and each hears only its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from callvault.capture.group_commit import GroupCommit


class Recorder:
    """A ``run_batch`` that records the batches it ran; the first batch waits until released."""

    def __init__(self, fail: Callable[[int], BaseException | None] = lambda item: None,
                 reject_batches_with: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._fail = fail
        self._reject_batches_with = reject_batches_with

    def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        with self._lock:
            self.batches.append(list(items))
            first = len(self.batches) == 1
        if first:
            self.first_started.set()
            assert self.release.wait(10)
        if self._reject_batches_with in items and len(items) > 1:
            raise RuntimeError("the shared transaction was refused")
        outcomes: list[int | BaseException] = []
        for item in items:
            failure = self._fail(item)
            outcomes.append(failure if failure is not None else item * 10)
        return outcomes


def _run_while_first_batch_waits(group: GroupCommit[int, int], recorder: Recorder, items: list[int],
                                 queued: int) -> dict[int, int | BaseException]:
    """Start item 0, then the others while 0's batch is held; release once ``queued`` are waiting."""
    results: dict[int, int | BaseException] = {}

    def call(item: int) -> None:
        try:
            results[item] = group.run("k", item, recorder)
        except BaseException as exc:
            results[item] = exc

    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        pool.submit(call, items[0])
        assert recorder.first_started.wait(10)
        for item in items[1:]:
            pool.submit(call, item)
        _wait_for(lambda: sum(len(q) for q in group._queues.values()) >= queued)
        recorder.release.set()
    return results


def _wait_for(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(1000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached within 10 s")


def test_a_lone_caller_runs_a_batch_of_one() -> None:
    group: GroupCommit[int, int] = GroupCommit()
    recorder = Recorder()
    recorder.release.set()
    assert group.run("k", 7, recorder) == 70
    assert recorder.batches == [[7]]
    assert not group._queues and not group._running  # nothing outlives the call


def test_callers_arriving_while_a_batch_runs_share_the_next_batch() -> None:
    group: GroupCommit[int, int] = GroupCommit(lanes=1)
    recorder = Recorder()
    results = _run_while_first_batch_waits(group, recorder, [1, 2, 3, 4, 5], queued=4)
    assert results == {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}
    assert recorder.batches[0] == [1]
    assert sorted(recorder.batches[1]) == [2, 3, 4, 5] and len(recorder.batches) == 2
    assert not group._queues and not group._running


def test_batches_are_capped_and_the_lead_passes_on_until_the_queue_is_empty() -> None:
    group: GroupCommit[int, int] = GroupCommit(lanes=1, max_batch=2)
    recorder = Recorder()
    results = _run_while_first_batch_waits(group, recorder, [1, 2, 3, 4, 5, 6], queued=5)
    assert results == {i: i * 10 for i in range(1, 7)}
    assert [len(b) for b in recorder.batches] == [1, 2, 2, 1]
    assert sorted(i for b in recorder.batches for i in b) == [1, 2, 3, 4, 5, 6]  # each item ran once


def test_a_second_lane_runs_beside_a_busy_one() -> None:
    group: GroupCommit[int, int] = GroupCommit(lanes=2)
    recorder = Recorder()
    # Item 2 finds the second lane free and runs at once, while item 1's batch is still held.
    results = _run_while_first_batch_waits(group, recorder, [1, 2], queued=0)
    assert results == {1: 10, 2: 20}
    assert recorder.batches == [[1], [2]]


def test_an_item_that_fails_fails_only_its_own_caller() -> None:
    group: GroupCommit[int, int] = GroupCommit(lanes=1)
    recorder = Recorder(fail=lambda item: ValueError(f"item {item} is malformed") if item == 3 else None)
    results = _run_while_first_batch_waits(group, recorder, [1, 2, 3, 4], queued=3)
    assert isinstance(results[3], ValueError) and "item 3" in str(results[3])
    assert {k: v for k, v in results.items() if k != 3} == {1: 10, 2: 20, 4: 40}


def test_a_batch_refused_whole_is_run_again_one_by_one() -> None:
    group: GroupCommit[int, int] = GroupCommit(lanes=1)
    # Any batch of several holding item 3 fails as a whole; item 3 alone then fails for its own reason.
    recorder = Recorder(reject_batches_with=3,
                        fail=lambda item: LookupError("item 3 alone") if item == 3 else None)
    results = _run_while_first_batch_waits(group, recorder, [1, 2, 3, 4], queued=3)
    assert {k: v for k, v in results.items() if k != 3} == {1: 10, 2: 20, 4: 40}
    assert isinstance(results[3], LookupError)
    assert sorted(recorder.batches[1]) == [2, 3, 4]
    assert sorted(map(tuple, recorder.batches[2:])) == [(2,), (3,), (4,)]


def test_an_interrupted_batch_is_heard_by_every_caller_and_nobody_waits_forever() -> None:
    class Interrupted(BaseException):
        pass

    class Interrupting(Recorder):
        def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
            super().__call__(items)
            raise Interrupted()

    group: GroupCommit[int, int] = GroupCommit(lanes=1)
    recorder = Interrupting()
    results = _run_while_first_batch_waits(group, recorder, [1, 2, 3], queued=2)
    assert all(isinstance(outcome, Interrupted) for outcome in results.values()) and len(results) == 3
    assert len(recorder.batches) == 2  # an interrupt is not retried item by item
    assert not group._queues and not group._running


def test_different_keys_never_share_a_batch() -> None:
    group: GroupCommit[str, str] = GroupCommit(lanes=1)
    seen: list[list[str]] = []
    gate = threading.Event()

    def run_batch(items: Sequence[str]) -> list[str | BaseException]:
        seen.append(list(items))
        gate.wait(10)
        return [item.upper() for item in items]

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(group.run, key, f"{key}{n}", run_batch) for key in ("a", "b") for n in (1, 2)]
        _wait_for(lambda: len(seen) >= 2)
        gate.set()
        assert sorted(f.result() for f in futures) == ["A1", "A2", "B1", "B2"]
    assert all(len({item[0] for item in batch}) == 1 for batch in seen)
