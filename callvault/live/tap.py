"""The capture process's live tap: a call's decoded audio, as it arrives, to authorised relays only.

Why a tap in the capture process: the audio exists only there (decoded RTP, in memory), and the API
node the supervisor reached may be another machine. The tap listens on loopback or an internal
address (``ws://HOST:PORT/calls/{call_id}?ticket=...``); it serves a connection only for a one-time
ticket that the API node obtained from ``service.start_monitoring`` after ``decide()`` said yes, so
the tap cannot be used to listen without the policy's say. Nothing on this path touches the disk.
Off loopback the tap speaks TLS (``wss://``, ``--tap-cert``/``--tap-key``) and the API node verifies its
certificate: a ticket keeps out whoever has none, TLS keeps the audio from whoever can see the wire.

Wire format (both hops, tap → API node → browser):

* first a text frame ``{"type": "hello", "rate": 8000, "parties": "both", "started_ms": ..., "channels":
  ["remote", "agent"]}`` (``started_ms``: the wall-clock instant of position 0);
* then binary frames, one per RTP packet: 8-byte header (u8 version = 1, u8 channel: 0 = remote
  party, 1 = agent, u16 zero, u32 little-endian position in samples since the call began) and
  16-bit little-endian PCM at ``rate``;
* last a text frame ``{"type": "end", "reason": "personal", "message": "..."}`` and a close with
  ``CLOSE_CODES[reason]`` when recording is paused, stopped, the call is marked personal or ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from callvault.live.service import END_REASONS

log = logging.getLogger("callvault.live")

FRAME_HEADER = struct.Struct("<BBHI")
QUEUE_FRAMES = 250
"""About 5 s of 20 ms packets per party: a listener further behind than that loses frames, not the call."""
CLOSE_CODES = {"personal": 4001, "paused": 4002, "stopped": 4003, "call_ended": 4004, "capture_lost": 4005,
               "listener_left": 1000}


REASON_BY_CODE = {code: reason for reason, code in CLOSE_CODES.items()}


def close_code(reason: str) -> int:
    return CLOSE_CODES.get(reason, 4000)


def end_message(reason: str) -> str:
    return json.dumps({"type": "end", "reason": reason, "message": END_REASONS.get(reason, reason)})


class Listener:
    """One relay connection's queue. Fed on the event loop; a ``str`` item is the end reason."""

    def __init__(self, parties: str) -> None:
        self.parties = parties
        self.queue: asyncio.Queue[bytes | str] = asyncio.Queue(QUEUE_FRAMES)
        self.dropped = 0

    def put(self, item: bytes | str) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            if isinstance(item, str):  # the end must get through: make room for it
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                self.queue.put_nowait(item)
            else:
                self.dropped += 1


class LiveFeed:
    """The fan-out point a call's session publishes decoded packets to (event loop only)."""

    def __init__(self, rate: int, started_ms: int = 0) -> None:
        self.rate = rate
        self.started_ms = started_ms
        """The wall-clock instant (ms since the epoch) of timeline position 0, for listeners' latency figures."""
        self.listeners: set[Listener] = set()
        self.ended: str | None = None

    def publish(self, channel: int, pos: int, pcm: Any) -> None:
        if not self.listeners or self.ended:
            return
        frame = FRAME_HEADER.pack(1, channel, 0, pos & 0xFFFFFFFF) + pcm.astype("<i2").tobytes()
        for listener in self.listeners:
            if listener.parties == "both" or channel == 1:
                listener.put(frame)

    def end(self, reason: str) -> None:
        """Every listener gets the end at once (the audio they have is already played or dropped)."""
        for listener in list(self.listeners):
            listener.put(reason)
        self.listeners.clear()
        if reason != "paused":  # after a pause a new listener may join once recording resumes
            self.ended = self.ended or reason


Redeem = Callable[[str, str], Awaitable[str]]
"""(call_id, ticket) -> parties, or raises (the API node's ticket is checked in the database)."""
Lookup = Callable[[str], LiveFeed | None]


def parse_path(path: str) -> tuple[str, str]:
    """``/calls/{quoted call id}?ticket=...`` -> (call id, ticket); ValueError otherwise."""
    parts = urlsplit(path)
    if not parts.path.startswith("/calls/"):
        raise ValueError("not a call path")
    ticket = (parse_qs(parts.query).get("ticket") or [""])[0]
    call_id = unquote(parts.path[len("/calls/"):])
    if not call_id or not ticket:
        raise ValueError("call id and ticket are required")
    return call_id, ticket


async def _handle(connection: ServerConnection, lookup: Lookup, redeem: Redeem) -> None:
    try:
        call_id, ticket = parse_path(connection.request.path if connection.request else "")
        parties = await redeem(call_id, ticket)
    except Exception as exc:  # bad path, bad ticket, database trouble: no audio, a reason
        await connection.close(4403, f"refused: {str(exc)[:100]}")
        return
    feed = lookup(call_id)
    if feed is None or feed.ended:
        reason = feed.ended if feed is not None and feed.ended else "call_ended"
        await connection.send(end_message(reason))
        await connection.close(close_code(reason), reason)
        return
    listener = Listener(parties)
    feed.listeners.add(listener)
    try:
        await connection.send(json.dumps({"type": "hello", "rate": feed.rate, "parties": parties,
                                          "started_ms": feed.started_ms, "channels": ["remote", "agent"]}))
        waiter = asyncio.ensure_future(connection.wait_closed())
        while True:
            getter = asyncio.ensure_future(listener.queue.get())
            done, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return
            item = getter.result()
            if isinstance(item, str):
                await connection.send(end_message(item))
                await connection.close(close_code(item), item)
                return
            await connection.send(item)
    except ConnectionClosed:
        return
    finally:
        feed.listeners.discard(listener)


async def start_tap(host: str, port: int, *, lookup: Lookup, redeem: Redeem,
                    tls: ssl.SSLContext | None = None) -> Server:
    """Listen for relays (over TLS when ``tls`` is given); the caller closes the returned server."""
    return await serve(lambda c: _handle(c, lookup, redeem), host, port, max_size=4096, compression=None, ssl=tls)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) stays on this machine."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_unspecified(host: str) -> bool:
    """Whether ``host`` means every address (``0.0.0.0``, ``::``): a place to listen, not one to reach."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def tap_authority(host: str, port: int) -> str:
    """``HOST:PORT`` for the tap's URL, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
