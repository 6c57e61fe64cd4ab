"""The FastAPI application: JSON API under /api/v1 (OpenAPI at /api/v1/openapi.json) and the web pages."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.formparsers import MultiPartParser
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from callvault.api import (
    observability,
    routes_access,
    routes_audit,
    routes_auth,
    routes_capture_imports,
    routes_capture_incidents,
    routes_control,
    routes_emergency,
    routes_extension,
    routes_integrations,
    routes_live,
    routes_oversight,
    routes_quality,
    routes_recordings,
    routes_retention,
    routes_transcription,
    routes_users,
)
from callvault.api.deps import NetworkGuard
from callvault.api.errors import TooLargeAsJson, install_error_handlers
from callvault.api.security_headers import CrossSiteGuard, SecurityHeaders
from callvault.api.text_guard import refuse_nul
from callvault.ops.metrics import build_registry
from callvault.retention.reapply import reapply_at_start
from callvault.retention.write_once import check_at_start
from callvault.runtime import Runtime
from callvault.web import pages, subject_pages

DEFAULT_BODY_LIMIT = 1024 * 1024
"""Every request body's limit unless its route sets its own (``max_body_size``): JSON and web forms are
small, and a body is refused from its declared length or, chunked, as it streams in, before sign-in or
parsing, so no stranger can make a node hold hundreds of megabytes (RELIABILITY: request abuse). Routes
that take more: recording uploads (``CALLVAULT_MAX_UPLOAD_BYTES``, at most 4 GiB); routes that take less:
the public caller-request form (16 KiB) and the signed webhooks (16-64 KiB)."""


def create_app(runtime: Runtime) -> FastAPI:
    """Build the app for one runtime. No module-level state: tests build as many as they like."""
    # Uploads stay in memory up to the upload limit, so plaintext audio never lands in a temp file.
    MultiPartParser.spool_max_size = runtime.settings.max_upload_bytes + 1
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The pool FastAPI runs sync dependencies and handlers in (settings.DEFAULT_SERVER_THREADS: why small).
        anyio.to_thread.current_default_thread_limiter().total_tokens = runtime.settings.server_threads
        _app.state.upload_limiter = anyio.CapacityLimiter(routes_recordings.UPLOAD_THREADS)
        # A restored database must not serve erased calls again: the key-destruction list decides.
        await anyio.to_thread.run_sync(lambda: check_at_start(runtime.db, runtime.store, clock=runtime.clock))
        await anyio.to_thread.run_sync(lambda: reapply_at_start(runtime.db, runtime.store, runtime.keyring,
                                                                clock=runtime.clock))
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="callvault",
        version="0.1.0",
        description="Call recording that enforces a written call-recording policy.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        dependencies=[Depends(refuse_nul)],  # text with U+0000: 422 on both databases (api/text_guard.py)
    )
    app.state.runtime = runtime
    app.state.live_relays = routes_live.LocalRelays()
    install_error_handlers(app)
    app.include_router(routes_auth.router, prefix="/api/v1")
    app.include_router(routes_users.router, prefix="/api/v1")
    app.include_router(routes_recordings.router, prefix="/api/v1")
    app.include_router(routes_audit.router, prefix="/api/v1")
    app.include_router(routes_oversight.router, prefix="/api/v1")
    app.include_router(routes_retention.router, prefix="/api/v1")
    app.include_router(routes_extension.router, prefix="/api/v1")
    app.include_router(routes_emergency.router, prefix="/api/v1")
    app.include_router(routes_control.router, prefix="/api/v1")
    app.include_router(routes_live.router, prefix="/api/v1")
    app.include_router(routes_access.router, prefix="/api/v1")
    app.include_router(routes_transcription.router, prefix="/api/v1")
    app.include_router(routes_quality.router, prefix="/api/v1")
    app.include_router(routes_capture_imports.router, prefix="/api/v1")
    app.include_router(routes_capture_incidents.router, prefix="/api/v1")
    app.include_router(routes_integrations.router, prefix="/api/v1")
    app.include_router(subject_pages.router)
    app.include_router(pages.router)
    app.include_router(observability.router)
    app.mount("/static", StaticFiles(directory=str(pages.STATIC_DIR)), name="static")
    registry, http_metrics = build_registry(runtime.db, siprec_stats=runtime.settings.siprec_stats,
                                            clock=runtime.clock, counters=runtime.counters)
    app.state.metrics_registry = registry
    # Added last = runs first. NetworkGuard (A11) runs before anything that reads data or decides;
    # RequestContext only stamps an id and times the request, so it wraps even the guard's refusals.
    # The body limit sits outside the guard and inside RequestContext (which logs its 413s); routes with
    # their own ``max_body_size`` narrow or widen it. TooLargeAsJson, outermost, turns Starlette's plain
    # text 413 into callvault's JSON error. SecurityHeaders (CSP, no framing, nosniff) wraps it all,
    # so refusals and errors carry them too. CrossSiteGuard (a cookie-carrying POST from another site's page:
    # 403) reads only headers, so it runs before the guard's database read and before any body is read.
    app.add_middleware(NetworkGuard, runtime=runtime)
    app.add_middleware(CrossSiteGuard, runtime=runtime)
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=DEFAULT_BODY_LIMIT)
    app.add_middleware(observability.RequestContext, metrics=http_metrics)
    app.add_middleware(TooLargeAsJson)
    app.add_middleware(SecurityHeaders)
    return app


def create_app_from_environment() -> FastAPI:
    """App factory for multi-process serving (``callvault serve --workers N``): settings from the environment."""
    from callvault.core.settings import load_settings
    from callvault.ops import logs
    from callvault.runtime import build_runtime

    settings = load_settings()
    logs.configure(settings.json_logs)
    app = create_app(build_runtime(settings))
    settle_heap()
    return app


def settle_heap() -> None:
    """Set what the server process holds after start-up (modules, the app, SQLAlchemy's mappers) aside
    from the garbage collector, so its full collections walk only what requests allocate.

    Why: the ORM makes many short-lived container objects per request, which triggers collections;
    a full one walking every module and mapper stalled requests for tens of milliseconds at a time
    (the long tail of ``bench.http``)."""
    gc.collect()
    gc.freeze()
