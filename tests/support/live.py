"""Live monitoring in tests: a capture tap that never answers a close, and a call being recorded now."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta

from websockets.utils import accept_key

from callvault.capture.audio import AudioInfo
from callvault.capture.ingest import reserve_recording
from callvault.capture.metadata import parse_metadata
from callvault.live import service as live
from callvault.policy import service as policy_service
from callvault.recordings.models import Recording
from tests.support.audio import metadata
from tests.support.env import CallvaultEnv, _free_port


class DeafTap:
    """A tap that completes the WebSocket handshake, says hello, then never reads again: the relay's
    close frame is never answered (as a capture process whose loop is busy would behave)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        writers: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await self._serve(reader, writer)

        async with await asyncio.start_server(serve, "127.0.0.1", self.port):
            self._ready.set()
            await self._stop.wait()
            for writer in writers:
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept_key(key.decode()).encode() + b"\r\n\r\n")
        hello = json.dumps({"type": "hello", "rate": 8000, "parties": "both", "started_ms": 0,
                            "channels": 2}).encode()
        writer.write(bytes([0x81, len(hello)]) + hello)  # one unmasked text frame (< 126 bytes)
        await writer.drain()
        # Deaf from here on: whatever the relay sends next is never read or answered.

    def __enter__(self) -> DeafTap:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
        self._loop.close()


@contextlib.contextmanager
def live_call(env: CallvaultEnv, call_id: str, tap_url: str) -> Iterator[None]:
    """A call being recorded now, as a capture process announces one: its pending recording and live row."""
    runtime = env.runtime
    now = runtime.clock.now()
    meta = parse_metadata(metadata(call_id=call_id, started_at=now.isoformat(), ended_at=now.isoformat()),
                          default_region="CA")
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
        pending = reserve_recording(session, policy=policy, meta=meta, info=AudioInfo("wav", 8000, 2, 0),
                                    actor="capture",
                                    store=runtime.store, clock=runtime.clock, stale_after=timedelta(hours=1))
        assert isinstance(pending, Recording)
        live.register_call(session, call_id=call_id, recording_id=pending.id, node="test:deaf", tap_url=tap_url,
                           direction="inbound", extension="2001", agent="alice", team="customer_support",
                           consent_state="evidence", started_at=now, clock=env.runtime.clock)
    try:
        yield
    finally:
        with env.runtime.db.unit_of_work() as session:
            live.end_call(session, call_id, reason="call_ended", clock=env.runtime.clock)
