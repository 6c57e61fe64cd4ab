"""The capture server's configuration (``callvault capture siprec`` options) and its counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 5060
    tls_port: int | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    advertise: str | None = None
    """Address put in Contact and SDP ``c=`` (default: the listen host)."""
    rtp_ports: tuple[int, int] = (20000, 40000)
    session_timeout: float = 4 * 3600.0
    """A dialog with no SIP or RTP activity for this long is ended (its audio kept)."""
    drain_timeout: float = 30.0
    reuse_port: bool = False
    stats_file: Path | None = None
    tap_host: str = "127.0.0.1"
    tap_port: int | None = None
    """Live-monitoring tap (``callvault.live.tap``) on this address; None = no live listening (0 = any port)."""


@dataclass
class Stats:
    calls_started: int = 0
    calls_refused: int = 0
    calls_stored: int = 0
    calls_discarded: int = 0
    parse_errors: int = 0
    srtp_auth_failures: int = 0
    """SRTP packets of ended calls dropped because their authentication tag did not verify."""
    srtp_replays: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
