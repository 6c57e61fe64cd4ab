"""RTP receive ports: the per-process port pool, binding a call's sockets, and their protocol.

The pool is what admission asks "is there room for this call's streams?", so it lives apart
from the dialog code; the socket protocol decrypts SRTP before anything reaches the call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from callvault.capture.siprec.sdp import StreamPlan
from callvault.capture.siprec.session import CallSession, StreamRuntime
from callvault.capture.siprec.srtp import SrtpReceiver
from callvault.capture.siprec.transport import grow_receive_buffer


class PortPool:
    """Even UDP ports of ``[low, high)``, handed out round-robin (a freed port is reused last)."""

    def __init__(self, low: int, high: int) -> None:
        self._ports = list(range(low + low % 2, high - 1, 2))
        self._cursor = 0
        self._used: set[int] = set()

    @property
    def free(self) -> int:
        return len(self._ports) - len(self._used)

    def take(self) -> int | None:
        for _ in range(len(self._ports)):
            port = self._ports[self._cursor]
            self._cursor = (self._cursor + 1) % len(self._ports)
            if port not in self._used:
                self._used.add(port)
                return port
        return None

    def release(self, port: int | None) -> None:
        if port is not None:
            self._used.discard(port)


async def bind(pool: PortPool, host: str, call: CallSession, index: int, port: int,
               srtp: SrtpReceiver | None) -> tuple[Any, int]:
    """Open stream ``index``'s socket on ``port`` (or the next free one if another program has it)."""
    loop = asyncio.get_running_loop()
    for _attempt in range(20):
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: RtpProtocol(call, index, srtp), local_addr=(host, port))
            grow_receive_buffer(transport)
            return transport, port
        except OSError:  # taken by another program: try the next free port
            nxt = pool.take()
            if nxt is None:
                break
            port = nxt
    raise OSError("no RTP port could be bound")


def receiver(plan: StreamPlan, stream: StreamRuntime) -> SrtpReceiver | None:
    return SrtpReceiver(plan.srtp, stream.timer.stats) if plan.srtp is not None else None


def rekey(stream: StreamRuntime) -> None:
    """After a re-offer: keep the SRTP session if the key is unchanged, else start a new one (or none)."""
    protocol = stream.transport.get_protocol() if stream.transport is not None else None
    if not isinstance(protocol, RtpProtocol):
        return
    agreement = stream.plan.srtp
    if agreement is None:
        protocol.srtp = None
    elif protocol.srtp is None or not protocol.srtp.same_key(agreement):
        protocol.srtp = SrtpReceiver(agreement, stream.timer.stats)


class RtpProtocol(asyncio.DatagramProtocol):
    __slots__ = ("call", "index", "received", "srtp")

    def __init__(self, call: CallSession, index: int, srtp: SrtpReceiver | None) -> None:
        self.call = call
        self.index = index
        self.srtp = srtp
        """Set for an SRTP stream: only packets that authenticate are passed on."""
        self.received = 0
        """Packets passed on (authenticated, for SRTP): what the RTP inactivity timer watches."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.srtp is not None:
            plain = self.srtp.unprotect(data)
            if plain is None:
                return
            data = plain
        elif self.index < len(self.call.streams) and self.call.streams[self.index].plan.srtp is not None:
            return  # never treat media of an SRTP stream as plain RTP
        self.received += 1
        self.call.on_rtp(self.index, data)

    def error_received(self, exc: Exception) -> None:  # ICMP errors: nothing to do for a receiver
        pass
