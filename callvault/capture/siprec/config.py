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
    """A dialog with no SIP or RTP activity for this long is ended (its audio kept): the last resort."""
    max_calls: int = 1000
    """Concurrent calls (being set up or recorded) this process admits; further INVITEs get 503."""
    max_memory_mb: int = 4096
    """Resident memory (MiB) above which new INVITEs get 503 (0: no limit; Linux only)."""
    max_loop_lag: float = 1.0
    """Seconds the event loop may run late (a housekeeping tick that came this much after it was due, within
    the last ``LOOP_LAG_WINDOW`` seconds) before new INVITEs get 503: the process is saturated and would drop
    packets it never reads (0: no limit)."""
    retry_after: int = 30
    """Seconds put in ``Retry-After`` of a 503 at capacity."""
    rtp_timeout: float = 60.0
    """A call none of whose unpaused streams received RTP for this long is ended and stored (0: never)."""
    min_session_expires: int = 90
    """Smallest RFC 4028 session interval accepted (``Min-SE``); shorter ones get 422."""
    drain_timeout: float = 30.0
    """At shutdown, how long calls in progress may go on ending by themselves (new INVITEs get 503)."""
    store_timeout: float = 45.0
    """Then, how long storing the calls still open may take (all at once); what is not stored by then is
    marked failed by the next start. 30 + 45 s stays inside systemd's default 90 s stop timeout."""
    reuse_port: bool = False
    stats_file: Path | None = None
    tap_host: str = "127.0.0.1"
    tap_port: int | None = None
    """Live-monitoring tap (``callvault.live.tap``) on this address; None = no live listening (0 = any port)."""
    tap_certfile: Path | None = None
    tap_keyfile: Path | None = None
    """With a certificate the tap speaks TLS (``wss://``): live call audio crosses the network encrypted, and the
    API node checks the tap's certificate (``CALLVAULT_LIVE_TAP_CA``). Required for a tap off loopback."""


@dataclass
class Stats:
    calls_started: int = 0
    calls_refused: int = 0
    """Refused with 403: outside the recording scope."""
    refused_capacity: int = 0
    """Refused with 503: at capacity (calls, ports, memory)."""
    refused_media: int = 0
    """Refused with 488: nothing in the offer could be recorded."""
    ended_by_timer: dict[str, int] = field(default_factory=dict)
    """Calls ended without a BYE, by reason (``rtp timeout``, ``session expired``, ``timeout``)."""
    calls_stored: int = 0
    calls_discarded: int = 0
    parse_errors: int = 0
    srtp_auth_failures: int = 0
    """SRTP packets of ended calls dropped because their authentication tag did not verify."""
    srtp_replays: int = 0
    packets: int = 0
    """RTP packets received by calls that have ended (active calls add theirs in ``snapshot``)."""
    lost: int = 0
    """Packets lost (sequence gaps, every SSRC segment) by calls that have ended."""
    extra: dict[str, Any] = field(default_factory=dict)
