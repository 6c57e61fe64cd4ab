"""Loaded into every Python process of `python3 dev.py test --at ...` (dev.py puts this folder on PYTHONPATH).

libfaketime 0.9.10 (Debian's, which moves the clock for the run) either hangs every timed wait of Python 3.11
(with the monotonic clock moved, ``sem_clockwait`` is not translated back: a one-second ``Event.wait`` waits a
year) or, with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` as dev.py sets, turns ``time.sleep`` into ``EINVAL`` (it
translates ``clock_nanosleep``'s absolute monotonic deadline by the wall-clock offset). The second is the one a
process can route around: sleep on a relative ``select`` timeout instead, which libfaketime leaves alone.
Nothing here changes what time it is; libfaketime does that.
"""

from __future__ import annotations

import select
import time
from typing import SupportsIndex


def _sleep(secs: float | SupportsIndex) -> None:
    seconds = float(secs)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
