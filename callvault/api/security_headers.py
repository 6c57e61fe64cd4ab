"""Browser-hardening headers on every answer (issue 24): a strict Content-Security-Policy, no framing,
no content sniffing, no Referer leaving the site.

Why a CSP at all: the pages escape what they render, but if an escape were ever missed an injected
``<script>`` or ``onclick=`` would run with the signed-in person's session (and their right to play
recordings). With ``script-src 'self'`` only callvault's own files under ``/static`` execute; the
pages have no inline script or style (``tests/web/test_browser.py`` fails on any CSP violation).
``frame-ancestors 'none'`` (and ``X-Frame-Options: DENY`` for older browsers) stops another site
framing a "play", "approve" or "download" button to click-jack it. ``Referrer-Policy: same-origin``
keeps recording and request URLs out of other sites' logs while still sending the ``Origin`` the
CSRF check needs (``no-referrer`` would make browsers send ``Origin: null``).

The one exception is the interactive API explorer (``/api/v1/docs``), FastAPI's Swagger UI page,
which loads its script and style from a CDN and starts with an inline script: it shows no data.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP: Final = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "media-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
DOCS_CSP: Final = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
                   "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
                   "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
DOCS_PATH: Final = "/api/v1/docs"


class SecurityHeaders:
    """ASGI middleware: add the headers to every HTTP answer that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope.get("path") == DOCS_PATH else CSP
        wanted = ((b"content-security-policy", csp.encode()), (b"x-content-type-options", b"nosniff"),
                  (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY"))

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in wanted if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, stamped)
