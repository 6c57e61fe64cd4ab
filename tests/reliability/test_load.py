"""Bounded HTTP load with ingest running: 20 clients for ~8 s (long form: tests/soak/test_load_soak.py)."""

from __future__ import annotations

import os

from tests.reliability.load import run_load
from tests.support.env import LiveServer


def test_twenty_clients_search_read_and_stream_while_recordings_are_ingested_without_a_single_error(
        server: LiveServer) -> None:
    result = run_load(server, clients=int(os.environ.get("CALLVAULT_LOAD_CLIENTS", "20")),
                      seconds=float(os.environ.get("CALLVAULT_LOAD_SECONDS", "8")))
    print(f"[reliability] load (20 clients, 8 s): {result.summary()}")
    assert not result.errors, result.errors[:5]
    assert result.ingested > 0 and all(result.latencies.values())
