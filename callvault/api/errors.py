"""The one place where callvault's exception tree becomes HTTP responses (see core.errors)."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callvault.core.errors import (
    AccessDenied,
    AuthenticationFailed,
    CallvaultError,
    ConfigurationError,
    Conflict,
    IntegrityError,
    InvalidInput,
    NotFound,
    StepUpRequired,
)
from callvault.recordings.playback import RangeNotSatisfiable

log = logging.getLogger("callvault.api")

TOO_LARGE_BODY = json.dumps({"error": "too_large", "message": "the request body is larger than this endpoint "
                             "accepts; nothing was read or stored"}).encode()


class TooLargeAsJson:
    """ASGI middleware: a 413 answered in plain text becomes callvault's JSON error.

    Why: Starlette's body limiter (``max_body_size``) answers ``Content Too Large`` in text, and when the
    declared length is over the limit it even replaces whatever the route answered; every other refusal
    of the API is JSON with an ``error`` code a client can branch on.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replacing = False

        async def send_json(message: Message) -> None:
            nonlocal replacing
            if message["type"] == "http.response.start" and message["status"] == 413:
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"content-type", b"content-length")]
                if len(headers) != len(message.get("headers", [])) and not any(
                        k.lower() == b"content-type" and v.startswith(b"application/json")
                        for k, v in message.get("headers", [])):
                    replacing = True
                    message = {**message, "headers": [*headers, (b"content-type", b"application/json"),
                                                      (b"content-length", str(len(TOO_LARGE_BODY)).encode())]}
            elif replacing and message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": TOO_LARGE_BODY}
            await send(message)

        await self.app(scope, receive, send_json)

STATUS = [
    (RangeNotSatisfiable, 416, "range_not_satisfiable"),
    (InvalidInput, 422, "invalid_input"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (AuthenticationFailed, 401, "authentication_failed"),
    (StepUpRequired, 403, "step_up_required"),
    (AccessDenied, 403, "access_denied"),
    (IntegrityError, 500, "integrity_error"),
    (ConfigurationError, 503, "unavailable"),
]


def error_response(exc: CallvaultError) -> JSONResponse:
    status, code = next(((s, c) for cls, s, c in STATUS if isinstance(exc, cls)), (500, "error"))
    body: dict[str, object] = {"error": code, "message": exc.message}
    if isinstance(exc, InvalidInput):
        body["problems"] = [{"location": p.location, "message": p.message, "line": p.line} for p in exc.problems]
    if isinstance(exc, AccessDenied) or (isinstance(exc, Conflict) and hasattr(exc, "clauses")):
        # A refusal with a rule behind it (the policy engine's, or a conflict such as a legal hold) names it.
        body["reason"] = getattr(exc, "reason", "")
        body["clauses"] = list(getattr(exc, "clauses", ()))
    if isinstance(exc, IntegrityError):
        log.error("integrity failure: %s", exc.message)
    if isinstance(exc, ConfigurationError):
        log.error("service unavailable: %s", exc.message)
        body["message"] = "the service is temporarily unavailable; try again shortly"
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _html(request: Request, status: int, reason: str, allow: str = "") -> Response | None:
    """A browser page asking for a page gets an HTML error page (issue 26: no raw JSON in the browser).

    Imported late: the web edge builds on the API's dependencies, not the other way round."""
    from callvault.web.common import error_page, wants_html

    if not wants_html(request):
        return None
    return error_page(request, status, reason, allow)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CallvaultError)
    async def _callvault_error(request: Request, exc: CallvaultError) -> Response:
        response = error_response(exc)
        if isinstance(exc, InvalidInput) and exc.problems:
            reason = "; ".join(f"{p.location}: {p.message}" for p in exc.problems)
        else:
            reason = getattr(exc, "reason", "") or exc.message
        if isinstance(exc, ConfigurationError):
            reason = "the service is temporarily unavailable; try again shortly"
        return _html(request, response.status_code, reason, "Go back and try again.") or response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"location": ".".join(str(p) for p in err["loc"] if p not in ("body", "query", "path")) or "request",
             "message": err["msg"], "line": None}
            for err in exc.errors()
        ]
        page = _html(request, 422, "; ".join(f"{p['location']}: {p['message']}" for p in problems),
                     "Go back, fix the form and send it again.")
        return page or JSONResponse({"error": "invalid_input", "message": "the request is invalid",
                                     "problems": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if 300 <= exc.status_code < 400:  # the pages' "sign in first" redirects (page_caller)
            return Response(status_code=exc.status_code, headers=getattr(exc, "headers", None))
        page = _html(request, exc.status_code, str(exc.detail))
        if page is not None:
            return page
        if exc.status_code == 413:  # a route's max_body_size, enforced while the body is read
            return JSONResponse({"error": "too_large", "message": "the request body is larger than this endpoint "
                                 "accepts; nothing was stored"}, status_code=413)
        return JSONResponse({"error": "http_error", "message": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(OSError)
    async def _storage_error(_request: Request, exc: OSError) -> JSONResponse:
        # Disk full, I/O error, object store unreachable: nothing was stored (ingest discards partial
        # work), so the client may retry later.
        log.error("storage unavailable: %s", exc)
        return JSONResponse({"error": "storage_unavailable",
                             "message": "recording storage is unavailable right now; nothing was stored, retry later"},
                            status_code=503, headers={"Retry-After": "30"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        page = _html(request, 500, "something went wrong on our side; it was logged", "Try again in a moment.")
        return page or JSONResponse({"error": "internal_error",
                                     "message": "something went wrong on our side; it was logged"}, status_code=500)
