"""The shipped nginx file never lets a client's own device-certificate header through (A11).

Outside tester: callvault believes ``X-SSL-Client-Verify`` from a trusted proxy, but the shipped file never set
it (it suggested another header name), so nginx passed on whatever the client sent: ``SUCCESS`` from any laptop
would have passed the company-device check once certificates were switched on. Every location that proxies to
callvault must set it to nginx's own verdict."""

from __future__ import annotations

import re
from pathlib import Path

from callvault.api.deps import CLIENT_CERT_HEADER

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "callvault.conf"


def _locations(text: str) -> list[tuple[str, str]]:
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"location\s+([^{]+)\{([^}]*)\}", text)]


def test_every_proxied_location_sets_the_device_header_to_nginxs_verdict() -> None:
    locations = [(where, body) for where, body in _locations(CONF.read_text()) if "proxy_pass" in body]
    assert len(locations) >= 4
    for where, body in locations:
        setting = re.search(r"proxy_set_header\s+(\S+)\s+\$ssl_client_verify;", body)
        assert setting is not None, f"location {where} passes a client's own {CLIENT_CERT_HEADER} header on"
        assert setting.group(1).lower() == CLIENT_CERT_HEADER
