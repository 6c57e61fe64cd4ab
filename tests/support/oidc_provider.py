"""A real OpenID Connect provider on a loopback port for tests: ``oidc-provider-mock`` (authlib's
server side under Flask/werkzeug), which signs RS256 ID tokens and publishes its JWKS.

Users and their claims are set over HTTP (``PUT /users/<sub>``); claims are copied into the ID token
after the standard ones, so a test can also make the provider misbehave (another ``aud``, ``iss``,
``nonce`` or an ``exp`` in the past) and check that callvault refuses the token.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import werkzeug.serving
from authlib.deprecate import AuthlibDeprecationWarning

with warnings.catch_warnings():  # the mock still imports authlib.jose, deprecated for joserfc
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from oidc_provider_mock import app as provider_app

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request


@dataclass
class Provider:
    """The running provider: its issuer URL and helpers to set users and approve a sign-in."""

    issuer: str
    token_requests: list[dict[str, str]] = field(default_factory=list)
    """The form of every request to the token endpoint, as received (to check what the client sent)."""

    def set_user(self, sub: str, claims: dict[str, Any]) -> None:
        resp = httpx.put(f"{self.issuer}/users/{sub}", json=claims, timeout=10)
        assert resp.status_code == 204, resp.text

    def approve(self, authorization_url: str, sub: str) -> str:
        """What a person does at the provider's page: sign in as ``sub``. Returns the callback URL."""
        assert authorization_url.startswith(self.issuer + "/oauth2/authorize?"), authorization_url
        resp = httpx.post(authorization_url, data={"sub": sub}, timeout=10)
        assert resp.status_code == 302, resp.text
        location = resp.headers["location"]
        assert "code=" in location, location
        return location


class _RecordTokenRequests:
    """WSGI middleware keeping a copy of each token-endpoint form (the mock does not check PKCE itself,
    so the tests check the verifier the client sent against the challenge it sent before)."""

    def __init__(self, app: Any, sink: list[dict[str, str]]) -> None:
        self.app = app
        self.sink = sink

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/oauth2/token":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            self.sink.append({k: v[0] for k, v in parse_qs(body.decode()).items()})
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@contextmanager
def running_provider(host_name: str = "127.0.0.1") -> Iterator[Provider]:
    """Serve the provider on 127.0.0.1 (an ephemeral port) in a thread until the block ends. ``host_name``
    ``localhost`` makes it another *site* than a callvault on 127.0.0.1, as a real provider is (the
    SameSite rules then apply to the redirect back, as in production)."""
    token_requests: list[dict[str, str]] = []
    app = _RecordTokenRequests(provider_app(require_nonce=True), token_requests)
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield Provider(issuer=f"http://{host_name}:{server.server_port}", token_requests=token_requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


__all__ = ["Provider", "query", "running_provider"]
