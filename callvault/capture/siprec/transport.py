"""SIP transports: UDP datagrams, and TCP/TLS byte streams cut into messages.

Kept apart from dialog handling so that what is a transport concern (framing, keep-alives, size
limits, closing a connection that cannot be resynchronised) is decided in one place and the session
layer only ever sees whole messages and a ``Reply`` to answer through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from callvault.capture.siprec import sip

log = logging.getLogger("callvault.siprec")

UDP_READ = 65535


@dataclass
class Reply:
    """Where responses to a request go."""

    send: Callable[[bytes], None]
    reliable: bool
    peer: str
    transport: str = ""
    """``udp``, ``tcp`` or ``tls``: what our Contact advertises for this dialog (default: by ``reliable``)."""


class MessageHandler(Protocol):
    """What the transports hand whole messages to (the session manager)."""

    def handle_datagram(self, data: bytes, reply: Reply) -> None: ...


def grow_receive_buffer(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)


class SipUdp(asyncio.DatagramProtocol):
    def __init__(self, manager: MessageHandler) -> None:
        self.manager = manager
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (The selector loop's UDP transport is not a DatagramTransport subclass; don't isinstance it.)
        self.transport = transport  # type: ignore[assignment]
        grow_receive_buffer(transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        transport = self.transport
        assert transport is not None

        def send(payload: bytes) -> None:
            transport.sendto(payload, addr)

        self.manager.handle_datagram(data, Reply(send, False, f"{addr[0]}:{addr[1]}", "udp"))

    def error_received(self, exc: Exception) -> None:
        pass


async def serve_stream(manager: MessageHandler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       transport: str = "tcp") -> None:
    peer = writer.get_extra_info("peername") or ("?", 0)
    framer = sip.StreamFramer()

    def send(payload: bytes) -> None:
        if not writer.is_closing():
            writer.write(payload)

    reply = Reply(send, True, f"{peer[0]}:{peer[1]}", transport)
    try:
        while data := await reader.read(UDP_READ):
            try:
                messages = framer.feed(data)
            except sip.SipParseError as exc:
                log.warning("closing SIP connection from %s: %s", reply.peer, exc)
                break
            for message in messages:
                manager.handle_datagram(message, reply)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
