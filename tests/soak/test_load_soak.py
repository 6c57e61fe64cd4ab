"""Long form of tests/reliability/test_load.py: 100 clients (CALLVAULT_SOAK_LOAD_SECONDS, default 60 s)."""

from __future__ import annotations

import os

from tests.reliability.load import run_load
from tests.support.env import LiveServer


def test_a_hundred_clients_search_read_and_stream_while_recordings_are_ingested_without_a_single_error(
        server: LiveServer) -> None:
    seconds = float(os.environ.get("CALLVAULT_SOAK_LOAD_SECONDS", "60"))
    result = run_load(server, clients=100, seconds=seconds)
    print(f"[soak] load (100 clients, {seconds:.0f} s): {result.summary()}")
    assert not result.errors, result.errors[:5]
    assert result.ingested > 0
