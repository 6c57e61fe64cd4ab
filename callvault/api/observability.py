"""Operations endpoints and the request-context middleware (docs/operations.md).

- ``RequestContext`` (outermost middleware): gives every request an id (``X-Request-ID`` when sane,
  else a new one), echoes it in the response, times the request for the latency histogram and logs
  one line per request. It decides nothing, so it may sit outside ``NetworkGuard``: a request the
  guard refuses still gets an id and a log line.
- ``/healthz`` liveness and ``/readyz`` readiness: outside the network allow-list (load balancers),
  and they say nothing about recordings or people.
- ``/metrics``: behind the network allow-list, and then only from loopback or with
  ``Authorization: Bearer $CALLVAULT_METRICS_TOKEN`` (a scraper is not a person with an account).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callvault.api.deps import bearer_token, get_runtime, source_ip
from callvault.ops import health
from callvault.ops.logs import REQUEST_ID_HEADER, request_id_from, request_id_var
from callvault.ops.metrics import HttpMetrics
from callvault.runtime import Runtime

log = logging.getLogger("callvault.http")
router = APIRouter(include_in_schema=False)


def _route_template(scope: Scope) -> str:
    """The matched route as a template (``/api/v1/recordings/{recording_id}``), never the raw path: the
    path carries ids. Rebuilt from the path and its parameters, since an included router's route
    knows only its own part of the path. Unmatched paths (404s, scanners) share one label."""
    if scope.get("route") is None:
        return "(unmatched)"
    params = {str(v): k for k, v in (scope.get("path_params") or {}).items()}
    segments = str(scope.get("path", "")).split("/")
    return "/".join("{" + params[seg] + "}" if seg in params else seg for seg in segments)


class RequestContext:
    """ASGI middleware: request id, latency histogram, one log line per request (see the module doc)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == REQUEST_ID_HEADER.encode()),
                    None)
        request_id = request_id_from(sent)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER.encode()]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.observe(method=method, route=route, status=status, seconds=seconds)
            log.info("%s %s %s %.1f ms", method, route, status, seconds * 1000,
                     extra={"method": method, "route": route, "status": status,
                            "duration_ms": round(seconds * 1000, 1), "client_ip": scope["state"].get("client_ip")})
            request_id_var.reset(token)


@router.get("/healthz")
def healthz() -> JSONResponse:
    """Liveness: the process answers. No database call (an outage must not restart every node)."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
def readyz(runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """Readiness: database reachable, schema at head, keys readable; 503 with each check's verdict otherwise.

    An open audit tamper alarm answers 200 with ``status: degraded`` (the node still records and serves;
    monitoring should page on it), see docs/operations.md."""
    checks = health.readiness(runtime)
    ready = health.is_ready(checks)
    if not ready:
        log.warning("not ready: %s", checks)
    status = "unready" if not ready else "degraded" if health.is_degraded(checks) else "ready"
    if status == "degraded":
        log.error("degraded: %s", checks)
    return JSONResponse({"status": status, "checks": checks},
                        status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@router.get("/metrics")
async def metrics(request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    """Prometheus exposition: from loopback, or with the metrics bearer token."""
    token = runtime.settings.metrics_token
    sent = bearer_token(request) or ""
    # Loopback counts only for a direct request: one relayed by a local reverse proxy (X-Forwarded-For)
    # may come from anywhere.
    direct_local = _loopback(source_ip(request)) and "x-forwarded-for" not in request.headers
    allowed = direct_local or bool(token and sent and hmac.compare_digest(sent, token))
    if not allowed:
        return JSONResponse({"error": "access_denied",
                             "message": "metrics are served to loopback or with 'Authorization: Bearer "
                                        "$CALLVAULT_METRICS_TOKEN'"}, status_code=403)
    body = await run_in_threadpool(generate_latest, request.app.state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
