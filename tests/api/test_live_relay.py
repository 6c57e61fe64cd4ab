"""The live relay cuts a listener off at once even when the capture tap is slow to let go.

A capture process busy destroying a call that was just marked personal may not answer the relay's
WebSocket close for seconds. The listener must not wait for it (A7: leave the line at once), and the
end must still be on the record."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import select
from websockets.sync.client import connect
from websockets.utils import accept_key

from callvault.api.routes_live import TAP_CLOSE_SECONDS
from callvault.capture.audio import AudioInfo
from callvault.capture.ingest import reserve_recording
from callvault.capture.metadata import parse_metadata
from callvault.live import service as live
from callvault.live.models import MonitoringSession
from callvault.recordings.models import Recording
from tests.support.audio import metadata
from tests.support.env import CallvaultEnv, LiveServer, _free_port


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
def _live_call(env: CallvaultEnv, call_id: str, tap_url: str) -> Iterator[None]:
    """A call being recorded now, as a capture process announces one: its pending recording and live row."""
    runtime = env.runtime
    now = runtime.clock.now()
    meta = parse_metadata(metadata(call_id=call_id, started_at=now.isoformat(), ended_at=now.isoformat()),
                          default_region="CA")
    with runtime.db.unit_of_work() as session:
        pending = reserve_recording(session, meta=meta, info=AudioInfo("wav", 8000, 2, 0), actor="capture",
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


def test_marking_a_call_personal_cuts_the_listener_off_even_when_the_tap_does_not_answer_its_close(
        server: LiveServer, env: CallvaultEnv) -> None:
    call_id = "siprec:deaf-tap-1"
    with DeafTap() as tap, _live_call(env, call_id, tap.url), \
            server.client("lead") as lead, server.client("alice") as alice:
        url = f"{server.base_url.replace('http', 'ws')}/api/v1/live/calls/{call_id}/listen?purpose=spot_check"
        with connect(url, additional_headers={"Authorization": lead.headers["Authorization"]}) as ws:
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "hello", first
            sent = time.monotonic()
            resp = alice.post(f"/api/v1/calls/{call_id}/control", json={"action": "personal"})
            assert resp.status_code == 200, resp.text
            ended = json.loads(ws.recv(timeout=30))
            cut_off_ms = (time.monotonic() - sent) * 1000
            assert ended["type"] == "ended" and ended["reason"] == "personal"
            # Told before the tap is let go: the deaf tap never answers, so a relay that waited for it would
            # cut the listener off only after TAP_CLOSE_SECONDS (10 s before this was fixed). A bound on the
            # order, not a speed figure: on an idle machine the cut-off takes tens of milliseconds.
            assert cut_off_ms < TAP_CLOSE_SECONDS * 1000, \
                f"the listener was cut off {cut_off_ms:.0f} ms after the call was marked personal"
            with contextlib.suppress(Exception):
                ws.recv(timeout=5)
            assert ws.close_code == 4001
        # The end goes on the record after the listener is cut off; wait for it while the call is still live
        # (ending the call below records any listener still on it as "call_ended").
        monitoring = _wait_for_recorded_end(env, call_id)
    assert (monitoring.listener, monitoring.end_reason) == ("lead", "personal")


def _wait_for_recorded_end(env: CallvaultEnv, call_id: str) -> MonitoringSession:
    deadline = time.monotonic() + 30
    while True:
        with env.runtime.db.unit_of_work() as session:
            [monitoring] = session.scalars(select(MonitoringSession).where(MonitoringSession.call_id == call_id))
            if monitoring.ended_at is not None:
                return monitoring
        assert time.monotonic() < deadline, "the listener's end was never recorded"
        time.sleep(0.05)
