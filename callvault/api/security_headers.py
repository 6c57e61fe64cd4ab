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

``CrossSiteGuard`` is that Origin check (RELIABILITY 17): a state-changing request that carries the session
cookie but says it comes from a page of another site is refused with 403 before any handler runs.
"""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request, cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callvault.api.deps import HOST_PREFIX, SAFE_METHODS, SESSION_COOKIE
from callvault.core.errors import AccessDenied
from callvault.runtime import Runtime

log = logging.getLogger("callvault.api")

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


CROSS_SITE_REFUSAL: Final = ("this request came from a page of another site (its Origin is not this server), so "
                             "it was refused and nothing was changed; use callvault's own pages")


def own_origin_hosts(headers: dict[str, str], public_url: str | None) -> frozenset[str]:
    """The ``host[:port]`` this server answers as: the request's ``Host`` (what the browser asked for; nginx
    passes it through, see deploy/), the same rule as the live WebSocket's Origin check, and the host of
    ``CALLVAULT_PUBLIC_URL`` when set (for a proxy that rewrites ``Host``)."""
    hosts = {headers.get("host", "").lower()}
    if public_url:
        hosts.add(urlsplit(public_url).netloc.lower())
    return frozenset(h for h in hosts if h)


def cross_site(headers: dict[str, str], public_url: str | None) -> bool:
    """Whether the browser says this request comes from another site: an ``Origin`` naming another host
    (``null``, from a sandboxed frame or a ``data:`` page, is another site too), or, where the browser sent
    no ``Origin``, ``Sec-Fetch-Site: cross-site``. A request saying neither is a non-browser client's."""
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin.strip())
        return parts.scheme not in ("http", "https") or parts.netloc.lower() not in own_origin_hosts(
            headers, public_url)
    return headers.get("sec-fetch-site", "").strip().lower() == "cross-site"


def carries_session_cookie(headers: dict[str, str]) -> bool:
    """Whether the request carries the web session cookie under either of its names (``__Host-`` or not):
    the ambient credential a forged form would borrow."""
    cookies = cookie_parser(headers.get("cookie", ""))
    return bool(cookies.get(SESSION_COOKIE) or cookies.get(HOST_PREFIX + SESSION_COOKIE))


class CrossSiteGuard:
    """ASGI middleware: refuse (403) a POST/PUT/PATCH/DELETE that carries the session cookie and comes from
    a page of another site, before the body is read or any handler runs.

    Why, when every such request already needs the session's CSRF token and the cookie is SameSite=Strict:
    defence in depth. A sibling subdomain is the *same site*, so the Strict cookie reaches us from its pages;
    a leaked or guessed token would then be all that stands between a forged form and the person's account.
    The browser's ``Origin`` cannot be forged by a page, so a form or ``fetch`` from elsewhere is refused here
    whatever token it holds. Requests without the cookie (bearer-token API clients, CRM webhooks, the public
    caller-request form and API) carry no ambient credential and pass; so do requests saying nothing about
    their origin (non-browser clients).

    Not audited, like the live WebSocket's Origin refusal and the CSRF refusal: the refusal names no
    resolved user (the cookie is not looked up, so a flood of forged posts costs no database work); it is
    logged with the path and the Origin for the operator.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET") in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for key, value in scope.get("headers", []):
            name, text = key.decode("latin-1").lower(), value.decode("latin-1")
            headers[name] = f"{headers[name]}; {text}" if name == "cookie" and name in headers else text
        public_url = self.runtime.settings.env.get("CALLVAULT_PUBLIC_URL") or None
        if not (carries_session_cookie(headers) and cross_site(headers, public_url)):
            await self.app(scope, receive, send)
            return
        log.warning("cross-site %s %s refused (Origin %r, Sec-Fetch-Site %r)", scope.get("method"),
                    scope.get("path", "")[:200], headers.get("origin", "")[:200], headers.get("sec-fetch-site", ""))
        response = _refusal(Request(scope, receive))
        await response(scope, receive, send)


def _refusal(request: Request) -> Response:
    """The 403 in the form the asker reads: the HTML refusal page for a browser asking for a page, else the
    API's JSON error. Imported late: the web edge builds on the API, not the other way round."""
    from callvault.api.errors import error_response
    from callvault.web.common import error_page, wants_html

    if wants_html(request):
        return error_page(request, 403, CROSS_SITE_REFUSAL, "Open callvault itself and use its own form.")
    return error_response(AccessDenied(CROSS_SITE_REFUSAL))
