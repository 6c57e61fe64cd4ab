"""Refuse a NUL character (U+0000) in any text a request carries, before a route reads or writes anything.

Why: PostgreSQL text cannot hold NUL, so such a value reached the database and came back as a 500
(psycopg ``DataError``) on the pre-authentication routes ``/auth/token`` and ``/auth/password-reset``
(the long schemathesis run, 2026-12-07), while SQLite stored or compared it. No field of callvault means
to hold a NUL, so every request gets one answer on both databases: 422 naming where it was (``agent``,
``recording_ids.1``), or the HTML error page for a browser.

Checked: the path, query parameters, JSON bodies (every key and string, nested) and URL-encoded forms.
Multipart and audio bodies are left to their routes (uploads stream; their metadata is parsed and checked
by the ingest pipeline, which refuses a NUL in any metadata field with 422 naming it: its fields are
identifiers, numbers and dates). A body is read here only when the route would read it whole anyway (JSON and
URL-encoded forms, bounded by the body limit), with ``body()``, which Starlette keeps for the route.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.requests import HTTPConnection

from callvault.core.errors import FieldProblem, InvalidInput

NUL = "\x00"
MESSAGE = "must not contain the NUL character (U+0000)"


def _first_nul(value: Any, where: str = "") -> str | None:
    """The dotted location of the first string (or key) holding a NUL, else None."""
    if isinstance(value, str):
        return where if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{where}.{key}" if where else str(key)
            if NUL in str(key):
                return here
            found = _first_nul(item, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_nul(item, f"{where}.{i}" if where else str(i))
            if found is not None:
                return found
    return None


def _pairs(pairs: list[tuple[str, str]]) -> str | None:
    return next((name.replace(NUL, "") or "request" for name, value in pairs if NUL in name or NUL in value), None)


async def _form_pairs(request: Request) -> list[tuple[str, str]]:
    """A URL-encoded body's fields, read so that the route can still read it its own way.

    A route with form parameters has had its form parsed by FastAPI before this dependency runs (the
    stream is consumed; the parsed form is kept on the request). Any other route (the Twilio callback,
    which checks its signature over the raw body) has not: read it with body(), which Starlette keeps, so
    the route's own body() or form() still works; form() here would have left body() a consumed stream.
    """
    try:
        raw = await request.body()
    except RuntimeError:  # already parsed for the route's form parameters
        form = await request.form()
        return [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
    return parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True)


async def refuse_nul(connection: HTTPConnection) -> None:
    """An app-wide dependency (runs before every route's own): InvalidInput (422) naming the NUL's place.

    Typed ``HTTPConnection`` because app-wide dependencies also run for the WebSocket route (live
    listening); that one is left to its own checks (a refusal there is a close code, not a 422)."""
    if not isinstance(connection, Request):
        return
    request = connection
    where: str | None = "path" if NUL in request.url.path else None
    where = where or _pairs(parse_qsl(request.url.query, keep_blank_values=True))
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if where is None and (content_type == "application/json" or content_type.endswith("+json")):
        try:
            where = _first_nul(json.loads(await request.body()))
        except ValueError:
            where = None  # not JSON: the route's own validation says so
    elif where is None and content_type == "application/x-www-form-urlencoded":
        where = _pairs(await _form_pairs(request))
    if where is not None:
        raise InvalidInput("the request is invalid", [FieldProblem(where or "request", MESSAGE)])
