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


class Connections:
    """The open TCP/TLS connections, so that shutdown closes them rather than leaving their tasks behind."""

    def __init__(self) -> None:
        self.open: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def close(self) -> None:
        tasks = list(self.open)
        for writer in list(self.open.values()):
            writer.close()  # the connection's read then ends, and its task with it
        if tasks:
            await asyncio.wait(tasks, timeout=5)


def answer_unparsable(data: bytes, status: int, reason: str) -> bytes | None:
    """A response to a request we cannot (or will not) parse whole, from its Via/From/To/Call-ID/CSeq.

    None when too little of it is there to address a response, or when it is a response or an ACK
    (never answered).
    """
    try:
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("latin-1")
        first, _, rest = head.partition("\n")
        if first.startswith("SIP/2.0") or first.strip().upper().startswith("ACK "):
            return None
        headers = sip.parse_headers(rest)
    except (sip.SipParseError, ValueError):
        return None
    keep = [(n, v) for n, v in headers if n in ("Via", "From", "To", "Call-ID", "CSeq")]
    if not any(n == "Via" for n, _ in keep):
        return None
    reason = reason[:120].replace("\r", " ").replace("\n", " ")
    return sip.SipMessage(status=status, reason=reason, headers=keep).to_bytes()


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
                       transport: str = "tcp", connections: Connections | None = None) -> None:
    """One TCP/TLS connection until the peer closes it, it cannot be framed, or ``connections`` are closed."""
    peer = writer.get_extra_info("peername") or ("?", 0)
    framer = sip.StreamFramer()
    task = asyncio.current_task()
    if connections is not None and task is not None:
        connections.open[task] = writer

    def send(payload: bytes) -> None:
        if not writer.is_closing():
            writer.write(payload)

    reply = Reply(send, True, f"{peer[0]}:{peer[1]}", transport)
    try:
        while data := await reader.read(UDP_READ):
            try:
                messages = framer.feed(data)
            except sip.MessageTooLarge as exc:
                # Say why before closing (the SBC otherwise just sees a reset and retries the same message).
                log.warning("closing SIP connection from %s: %s", reply.peer, exc)
                answer = answer_unparsable(exc.head, 413, "Request Entity Too Large")
                if answer is not None:
                    send(answer)
                    with contextlib.suppress(OSError, RuntimeError):
                        await writer.drain()
                        if writer.can_write_eof():
                            writer.write_eof()
                break
            except sip.SipParseError as exc:
                log.warning("closing SIP connection from %s: %s", reply.peer, exc)
                break
            if framer.pings:  # RFC 5626 §3.5.1: a CRLF "pong" for each double-CRLF "ping"
                send(b"\r\n" * framer.pings)
                framer.pings = 0
            for message in messages:
                manager.handle_datagram(message, reply)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        if connections is not None and task is not None:
            connections.open.pop(task, None)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
