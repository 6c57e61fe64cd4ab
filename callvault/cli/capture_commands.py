"""``callvault capture …``: live capture from telephony (the SIPREC recording server)."""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from pathlib import Path
from typing import Annotated

import typer

from callvault.capture.siprec.config import ServerConfig
from callvault.capture.siprec.process import install_uvloop, raise_fd_limit, serve
from callvault.cli.main import DataDir, app, err, handle_errors, settings_for
from callvault.core.errors import ConfigurationError, InvalidInput
from callvault.live.tap import is_loopback, is_unspecified
from callvault.ops import logs
from callvault.runtime import build_runtime

capture_app = typer.Typer(help="Capture calls from telephony (SIPREC recording server).", no_args_is_help=True)
app.add_typer(capture_app, name="capture")


def parse_hostport(value: str, *, default_port: int) -> tuple[str, int]:
    """``host:port``, ``host``, ``[v6]:port`` → (host, port); InvalidInput naming the option otherwise."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise InvalidInput(f"--listen {value!r}: the port must be a number") from None
    if not host or not 0 < port < 65536:
        raise InvalidInput(f"--listen {value!r}: give HOST:PORT, e.g. 127.0.0.1:5060")
    return host, port


def parse_port_range(value: str) -> tuple[int, int]:
    low, sep, high = value.partition("-")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        raise InvalidInput(f"--rtp-ports {value!r}: give a range like 20000-40000") from None
    if not sep or not (1024 <= lo < hi <= 65535) or hi - lo < 4:
        raise InvalidInput(f"--rtp-ports {value!r}: give a range like 20000-40000 (1024-65535)")
    return lo, hi


def _run_one(data_dir: Path | None, config: ServerConfig) -> None:
    settings = settings_for(data_dir)
    logs.configure(settings.json_logs)
    raise_fd_limit()
    install_uvloop()
    runtime = build_runtime(settings)
    try:
        asyncio.run(serve(runtime, config))
    finally:
        runtime.close()


@capture_app.command("siprec")
@handle_errors
def siprec(
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT for SIP over UDP and TCP")] = "127.0.0.1:5060",
    tls_port: Annotated[int | None, typer.Option("--tls-port", help="also accept SIP over TLS on this port")] = None,
    cert: Annotated[Path | None, typer.Option("--cert", help="TLS certificate chain (PEM)")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="TLS private key (PEM)")] = None,
    advertise: Annotated[str | None, typer.Option("--advertise", help="address SRCs send media to "
                                                                        "(default: the listen host)")] = None,
    rtp_ports: Annotated[str, typer.Option("--rtp-ports", help="UDP port range for media")] = "20000-40000",
    processes: Annotated[int, typer.Option("--processes", help="capture processes sharing the SIP port "
                                                                "(SO_REUSEPORT); one per core")] = 1,
    stats_file: Annotated[Path | None, typer.Option("--stats-file", help="write live counters (JSON) here")] = None,
    tap: Annotated[str | None, typer.Option("--tap", help="HOST:PORT of the live-monitoring tap (loopback or an "
                                                           "internal address; process i uses PORT+i); off if "
                                                           "not given")] = None,
    tap_cert: Annotated[Path | None, typer.Option("--tap-cert", help="certificate chain (PEM) for the tap: it "
                                                                     "then speaks TLS (wss://); needed off "
                                                                     "loopback")] = None,
    tap_key: Annotated[Path | None, typer.Option("--tap-key", help="the tap's private key (PEM)")] = None,
    max_calls: Annotated[int, typer.Option("--max-calls", help="concurrent calls per process; further INVITEs "
                                                                "get 503 + Retry-After")] = 1000,
    max_memory: Annotated[int, typer.Option("--max-memory", help="MiB of resident memory per process above which "
                                                                  "new INVITEs get 503 (0: no limit)")] = 4096,
    max_loop_lag: Annotated[float, typer.Option("--max-loop-lag", help="seconds the process's event loop may run "
                                                                        "late (a saturated core) before new INVITEs "
                                                                        "get 503 (0: no limit)")] = 1.0,
    retry_after: Annotated[int, typer.Option("--retry-after", help="seconds in Retry-After of a 503")] = 30,
    rtp_timeout: Annotated[float, typer.Option("--rtp-timeout", help="end a call whose unpaused streams got no "
                                                                      "RTP for this many seconds (0: never)")] = 60.0,
    min_session_expires: Annotated[int, typer.Option("--min-session-expires",
                                                     help="smallest RFC 4028 session interval (Min-SE); "
                                                          "shorter ones get 422")] = 90,
    drain_timeout: Annotated[float, typer.Option("--drain-timeout", help="at SIGTERM, seconds calls may go on "
                                                                          "ending by themselves")] = 30.0,
    store_timeout: Annotated[float, typer.Option("--store-timeout", help="then, seconds to store the calls still "
                                                                          "open (all at once)")] = 45.0,
    data_dir: DataDir = None,
) -> None:
    """Run the SIPREC recording server (RFC 7866) until SIGTERM; calls become encrypted recordings."""
    host, port = parse_hostport(listen, default_port=5060)
    low, high = parse_port_range(rtp_ports)
    if tls_port is not None and cert is None:
        raise InvalidInput("--tls-port needs --cert (and --key unless the key is in the certificate file)")
    for path in (cert, key, tap_cert, tap_key):
        if path is not None and not path.is_file():
            raise InvalidInput(f"{path} does not exist or is not a file")
    if not 1 <= processes <= 256:
        raise InvalidInput("--processes must be between 1 and 256")
    if drain_timeout < 0 or store_timeout <= 0:
        raise InvalidInput("--drain-timeout must be at least 0 and --store-timeout more than 0")
    if (max_calls < 1 or max_memory < 0 or not 1 <= retry_after <= 3600 or rtp_timeout < 0 or min_session_expires < 1
            or max_loop_lag < 0):
        raise InvalidInput("--max-calls and --min-session-expires must be at least 1, --max-memory, --max-loop-lag "
                           "and --rtp-timeout at least 0, --retry-after from 1 to 3600")
    settings = settings_for(data_dir)
    if settings.is_sqlite and not settings.data_dir.exists():
        raise ConfigurationError(f"{settings.data_dir} is not a callvault data directory; run `callvault init` first")
    span = (high - low) // processes
    tap_host, tap_port = "127.0.0.1", None
    if tap:
        try:
            tap_host, tap_port = parse_hostport(tap, default_port=5080)
        except InvalidInput:
            raise InvalidInput(f"--tap {tap!r}: give HOST:PORT, e.g. 127.0.0.1:5080") from None
        if is_unspecified(tap_host):
            raise InvalidInput(f"--tap {tap}: give the one address the API nodes reach the tap on (it becomes the "
                               "URL they open and the name its certificate must carry), not every address")
        if tap_cert is None and not is_loopback(tap_host):
            raise InvalidInput(f"--tap {tap}: the tap carries live call audio; off loopback it must be encrypted: "
                               "give --tap-cert (and --tap-key unless the key is in the certificate file), or "
                               "keep it on 127.0.0.1")
    if (tap_cert or tap_key) and not tap:
        raise InvalidInput("--tap-cert and --tap-key need --tap HOST:PORT")
    if tap_key and not tap_cert:
        raise InvalidInput("--tap-key needs --tap-cert")
    configs = [ServerConfig(host=host, port=port, tls_port=tls_port, certfile=cert, keyfile=key, advertise=advertise,
                            rtp_ports=(low + i * span, low + (i + 1) * span), reuse_port=processes > 1,
                            stats_file=(stats_file.with_name(f"{stats_file.name}.{i}") if processes > 1 and stats_file
                                        else stats_file),
                            tap_host=tap_host, tap_port=None if tap_port is None else tap_port + i,
                            tap_certfile=tap_cert, tap_keyfile=tap_key,
                            max_calls=max_calls, max_memory_mb=max_memory, max_loop_lag=max_loop_lag,
                            retry_after=retry_after,
                            rtp_timeout=rtp_timeout, min_session_expires=min_session_expires,
                            drain_timeout=drain_timeout, store_timeout=store_timeout)
               for i in range(processes)]
    err.print(f"SIPREC recording server on {host}:{port} (UDP, TCP{', TLS :' + str(tls_port) if tls_port else ''}),"
              f" {processes} process(es), RTP {low}-{high}")
    if processes == 1:
        _run_one(data_dir, configs[0])
        return
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_run_one, args=(data_dir, c), daemon=False) for c in configs]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                child.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
