"""When a call with no BYE is ended: RTP inactivity and RFC 4028 session timers.

An SRC that crashes, or loses its route to us, never sends the BYE; without these the call stayed
"active" for the 4-hour last-resort timeout, holding ports, memory and a pending catalog row.

* **RTP inactivity** (``--rtp-timeout``): a call none of whose *expected* streams has received a
  packet for that long is ended and stored (reason ``rtp timeout``). A stream is expected when it is
  accepted and not paused by the SDP (``a=inactive``/``a=recvonly``, ``c=0.0.0.0``): a paused call
  sends nothing on purpose, and the silence is measured again from its resume. Pause through the
  recording-control API does not count: the SBC keeps sending then.
* **Session timers** (RFC 4028): an INVITE with ``Session-Expires`` from an SRC that supports
  ``timer`` gets ``Session-Expires: N;refresher=uac`` and ``Require: timer``; each in-dialog
  INVITE/UPDATE is a refresh. Without one, the call is ended (reason ``session expired``) at the
  expiry less min(32 s, a third of the interval), when RFC 4028 §10 has the non-refresher end it.
  We never send requests, so we never offer to be the refresher: a request asking for
  ``refresher=uas``, or from an SRC without ``Supported: timer``, gets no session timer (the
  inactivity timer still applies). An interval under ``--min-session-expires`` gets ``422`` + ``Min-SE``.
  The call is ended here without a BYE to the SRC (it has stopped refreshing: it has gone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from callvault.capture.siprec import sip
from callvault.capture.siprec.ports import RtpProtocol
from callvault.capture.siprec.session import CallSession

RTP_TIMEOUT = "rtp timeout"
SESSION_EXPIRED = "session expired"


@dataclass
class SessionTimer:
    interval: int
    refreshed: float
    """monotonic time of the INVITE or last refresh."""

    @property
    def deadline(self) -> float:
        return self.refreshed + self.interval - min(32.0, self.interval / 3)


@dataclass
class CallTimers:
    media_seen: float
    """When a packet last arrived, or media last became expected (answer, resume)."""
    packets: int = 0
    expecting: bool = False
    session: SessionTimer | None = None


def _supports_timer(msg: sip.SipMessage) -> bool:
    tags = ",".join(msg.get_all("Supported") + msg.get_all("Require"))
    return "timer" in {t.strip().lower() for t in tags.split(",")}


def requested_interval(msg: sip.SipMessage) -> tuple[int, str | None] | None:
    """(interval, refresher) of a request's ``Session-Expires``, None without a usable one."""
    value = msg.get("Session-Expires")
    if not value:
        return None
    found = re.match(r"\s*(\d+)", value)
    if found is None:
        return None
    return int(found.group(1)), sip.param(value, "refresher")


def negotiate(msg: sip.SipMessage, *, min_se: int) -> tuple[int | None, list[tuple[str, str]]]:
    """For an INVITE/UPDATE: (status to answer instead, its headers) for a too-short interval (422), else
    (None, headers for the 2xx), which are empty when no session timer is agreed."""
    asked = requested_interval(msg)
    if asked is None:
        return None, []
    interval, refresher = asked
    if interval < min_se:
        return 422, [("Min-SE", str(min_se))]
    if not _supports_timer(msg) or (refresher or "uac").lower() != "uac":
        return None, []
    return None, [("Session-Expires", f"{interval};refresher=uac"), ("Require", "timer")]


def agreed_interval(headers: list[tuple[str, str]]) -> int | None:
    """The interval put in a 2xx by ``negotiate`` (None: no session timer)."""
    value = next((v for n, v in headers if n == "Session-Expires"), None)
    return int(value.split(";", 1)[0]) if value else None


def packets_received(call: CallSession) -> int:
    total = 0
    for stream in call.streams:
        protocol = stream.transport.get_protocol() if stream.transport is not None else None
        if isinstance(protocol, RtpProtocol):
            total += protocol.received
    return total


def expired(call: CallSession, timers: CallTimers, now: float, *, rtp_timeout: float) -> str | None:
    """Why ``call`` must be ended now, or None. Called from housekeeping a few times a second."""
    expecting = any(s.plan.accepted and s.plan.active for s in call.streams)
    count = packets_received(call)
    if count != timers.packets or not expecting or not timers.expecting:
        timers.media_seen = now
    timers.packets, timers.expecting = count, expecting
    if rtp_timeout > 0 and expecting and now - timers.media_seen > rtp_timeout:
        return RTP_TIMEOUT
    if timers.session is not None and now > timers.session.deadline:
        return SESSION_EXPIRED
    return None
