"""One capture process from start to stop: sockets, signals, the housekeeping and live-link tasks, the drain.

Kept apart from ``server`` (dialogs and the call lifecycle) because it is about the process, not about
calls: registering the node and failing what dead processes left, binding UDP/TCP/TLS (``SO_REUSEPORT``
for several processes), the live-monitoring tap, and the order of shutdown (drain first, so SIGTERM
stores every open call; sockets and the stats file last).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Callable

from callvault.capture.siprec.config import ServerConfig
from callvault.capture.siprec.nodes import fail_orphaned_calls, register, unregister
from callvault.capture.siprec.server import SessionManager
from callvault.capture.siprec.session import catalog_call_id
from callvault.capture.siprec.transport import Connections, SipUdp, serve_stream
from callvault.runtime import Runtime


async def serve(runtime: Runtime, config: ServerConfig, *, ready: Callable[[SessionManager], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run one capture process until ``stop`` is set or SIGTERM/SIGINT arrives, then drain."""
    loop = asyncio.get_running_loop()
    manager = SessionManager(runtime, config)
    await loop.run_in_executor(None, manager.policy)  # fail fast on a database without a policy
    # Registered before the first call is answered; then what dead capture processes left is failed.
    await loop.run_in_executor(None, register, runtime, manager.node)
    await loop.run_in_executor(None, fail_orphaned_calls, runtime, manager.node)
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    udp, _ = await loop.create_datagram_endpoint(lambda: SipUdp(manager), local_addr=(config.host, config.port),
                                                 reuse_port=config.reuse_port or None)
    connections = Connections()
    servers = [await asyncio.start_server(lambda r, w: serve_stream(manager, r, w, "tcp", connections),
                                          config.host, config.port,
                                          reuse_port=config.reuse_port or None)]
    if config.tls_port is not None and config.certfile is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(config.certfile), str(config.keyfile) if config.keyfile else None)
        servers.append(await asyncio.start_server(lambda r, w: serve_stream(manager, r, w, "tls", connections),
                                                  config.host,
                                                  config.tls_port, ssl=ctx, reuse_port=config.reuse_port or None))
    house = loop.create_task(manager.housekeeping())
    tap = None
    if config.tap_port is not None:
        from callvault.live.tap import start_tap, tap_authority

        tap_tls = None
        if config.tap_certfile is not None:
            tap_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tap_tls.minimum_version = ssl.TLSVersion.TLSv1_2
            tap_tls.load_cert_chain(str(config.tap_certfile),
                                    str(config.tap_keyfile) if config.tap_keyfile else None)
        tap = await start_tap(config.tap_host, config.tap_port, redeem=manager.live.redeem, tls=tap_tls,
                              lookup=lambda cid: next((c.feed for c in manager.sessions.values()
                                                       if catalog_call_id(c.call_id) == cid), None))
        bound = next(iter(tap.sockets)).getsockname()
        manager.live.tap_url = f"{'wss' if tap_tls else 'ws'}://{tap_authority(config.tap_host, bound[1])}"
    link = loop.create_task(manager.live.run(manager.sessions))
    if ready is not None:
        ready(manager)
    try:
        await stop.wait()
        await manager.drain()
        with contextlib.suppress(Exception):  # unregistered: what it could not store is failed at next start
            await loop.run_in_executor(None, unregister, runtime, manager.node)
    finally:
        house.cancel()
        link.cancel()
        await manager.live.close()
        if tap is not None:
            tap.close()
        for server in servers:
            server.close()
        await connections.close()  # SRCs' connections still open: closed, not leaked
        udp.close()
        if config.stats_file is not None:
            manager.write_stats()


def install_uvloop() -> bool:
    """Use uvloop when it is installed (several times the packet rate of the default loop)."""
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def raise_fd_limit() -> None:
    """Every call holds two RTP sockets and a blob writer: lift the soft descriptor limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
