"""Who is really asking: the client address, believing ``X-Forwarded-For`` only from trusted proxies.

A forged ``X-Forwarded-For: 10.20.0.5`` sent straight to callvault must not put the sender inside the
office allow-list (A11). So the header is read right to left, and each hop is believed only while the
address that handed it over is a configured trusted proxy; the first untrusted address is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = addr.strip().strip('"')
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:51234
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[_Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in proxies)


def networks(cidrs: Sequence[str]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[_Network]) -> str | None:
    """The client's address. ``forwarded_for``: every X-Forwarded-For header value, in order received."""
    if peer is None:
        return None
    current = _parse(peer)
    if current is None:
        return peer
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    while hops and _trusted(current, trusted_proxies):
        candidate = _parse(hops.pop())
        if candidate is None:
            break  # garbage from a proxy we trust: stop at the proxy rather than believe it
        current = candidate
    return str(current)
