"""Running the SIPREC recording server beside ``callvault serve``, when the settings ask for it.

Why a supervised child process and not a task in the web server's event loop: the capture server
wants its own loop (uvloop), its own worker threads and optionally several processes with
``SO_REUSEPORT``; a slow web request must never delay RTP, and a crash in one must not take down
the other. So ``callvault serve`` starts ``callvault capture siprec`` with the configured options,
restarts it if it dies (backing off up to 30 s), and stops it with SIGTERM (which drains calls)
when the web server stops. A child that exits with status 2 (bad configuration) is not restarted:
the error is logged and will not fix itself.

Configuration (environment, or a ``[siprec]`` table in ``<data-dir>/config.toml``):
``CALLVAULT_SIPREC_LISTEN`` (``HOST:PORT``, turns it on), ``CALLVAULT_SIPREC_TLS_PORT``,
``CALLVAULT_SIPREC_CERT``, ``CALLVAULT_SIPREC_KEY``, ``CALLVAULT_SIPREC_ADVERTISE``,
``CALLVAULT_SIPREC_RTP_PORTS`` (``LO-HI``), ``CALLVAULT_SIPREC_PROCESSES``, ``CALLVAULT_SIPREC_TAP``
(``HOST:PORT`` of the live-monitoring tap, docs/live-monitoring.md), ``CALLVAULT_SIPREC_TAP_CERT`` and
``CALLVAULT_SIPREC_TAP_KEY`` (the tap's TLS certificate and key; required for a tap off loopback).
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from callvault.core.errors import ConfigurationError
from callvault.core.settings import Settings, env_or_file
from callvault.core.supervisor import ChildSupervisor

log = logging.getLogger("callvault.siprec.service")

_KEYS = ("listen", "tls_port", "cert", "key", "advertise", "rtp_ports", "processes", "tap", "tap_cert", "tap_key")
CONFIG_EXIT = 2
"""``callvault`` exits 2 on invalid input or configuration (core.errors): restarting will not help."""


@dataclass(frozen=True)
class SiprecSettings:
    """The options ``callvault serve`` passes to its ``callvault capture siprec`` child."""

    listen: str
    tls_port: int | None = None
    cert: Path | None = None
    key: Path | None = None
    advertise: str | None = None
    rtp_ports: str | None = None
    processes: int = 1
    tap: str | None = None
    """The live-monitoring tap's ``HOST:PORT`` (loopback or internal); None: no live listening."""
    tap_cert: Path | None = None
    tap_key: Path | None = None
    """The tap's TLS certificate and key (``wss://``)."""

    def cli_args(self, data_dir: Path) -> list[str]:
        args = ["capture", "siprec", "--listen", self.listen, "--processes", str(self.processes),
                "--data-dir", str(data_dir)]
        for flag, value in (("--tls-port", self.tls_port), ("--cert", self.cert), ("--key", self.key),
                            ("--advertise", self.advertise), ("--rtp-ports", self.rtp_ports), ("--tap", self.tap),
                            ("--tap-cert", self.tap_cert), ("--tap-key", self.tap_key)):
            if value is not None:
                args += [flag, str(value)]
        return args


def siprec_settings(settings: Settings) -> SiprecSettings | None:
    """The configured capture server, or None when ``CALLVAULT_SIPREC_LISTEN`` (or ``[siprec] listen``) is unset.

    Values are checked here so that ``callvault serve`` refuses to start with a message naming the
    variable, rather than starting a child that exits at once.
    """
    table: dict[str, object] = {}
    if settings.config_path.exists():
        try:
            loaded = tomllib.loads(settings.config_path.read_text(encoding="utf-8")).get("siprec", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{settings.config_path} is not valid TOML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigurationError(f"{settings.config_path}: [siprec] must be a table")
        table = loaded
    values: dict[str, str] = {}
    for key in _KEYS:
        raw = env_or_file(settings.env, f"CALLVAULT_SIPREC_{key.upper()}")
        if raw is None and table.get(key) is not None:
            raw = str(table[key])
        if raw:
            values[key] = raw.strip()
    if "listen" not in values:
        return None
    return SiprecSettings(
        listen=values["listen"],
        tls_port=_int(values, "tls_port", 1, 65535),
        cert=_file(values, "cert"),
        key=_file(values, "key"),
        advertise=values.get("advertise"),
        rtp_ports=values.get("rtp_ports"),
        processes=_int(values, "processes", 1, 256) or 1,
        tap=values.get("tap"),
        tap_cert=_file(values, "tap_cert"),
        tap_key=_file(values, "tap_key"),
    )


def _int(values: dict[str, str], key: str, low: int, high: int) -> int | None:
    if key not in values:
        return None
    raw = values[key]
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigurationError(f"CALLVAULT_SIPREC_{key.upper()} must be a whole number from {low} to {high}")
    return int(raw)


def _file(values: dict[str, str], key: str) -> Path | None:
    if key not in values:
        return None
    path = Path(values[key]).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"CALLVAULT_SIPREC_{key.upper()}: {path} does not exist or is not a file")
    return path


class CaptureSupervisor(ChildSupervisor):
    """Keeps one ``callvault capture siprec`` child running until ``stop`` (see the module docstring)."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, max_backoff: float = 30.0) -> None:
        super().__init__(args, name="SIPREC capture server", env=env, max_backoff=max_backoff,
                         final_codes=(CONFIG_EXIT,))


def start_beside_serve(settings: Settings) -> CaptureSupervisor | None:
    """Start the configured capture server for ``callvault serve``; None when not configured."""
    config = siprec_settings(settings)
    if config is None:
        return None
    supervisor = CaptureSupervisor(config.cli_args(settings.data_dir), env=dict(os.environ))
    supervisor.start()
    return supervisor
