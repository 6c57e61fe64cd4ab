"""Log lines a log pipeline can read: one JSON object per line, each carrying the id of the request
it belongs to (``CALLVAULT_JSON_LOGS=1``; plain text otherwise).

The request id lives in a context variable, set by the edge for the duration of one request, so any
logger anywhere below it (services, SQL errors, uvicorn) stamps it without being passed it.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("callvault_request_id", default=None)


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token (8-128 of ``A-Z a-z 0-9 . _ : -``: it ends up
    in logs and headers, so nothing that could forge a log line or a header), else a fresh one."""
    if header and _SANE_ID.match(header):
        return header
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``placeholder`` outside a request: null in JSON, ``-`` in text)."""

    def __init__(self, placeholder: str | None = None) -> None:
        super().__init__()
        self.placeholder = placeholder

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or self.placeholder
        return True


JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d %(request_id)s"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def formatter_config(json_logs: bool) -> dict[str, Any]:
    if json_logs:
        return {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": JSON_FIELDS,
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}}
    return {"format": TEXT_FORMAT}


def logging_config(json_logs: bool, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document for callvault and uvicorn (``uvicorn.run(log_config=...)``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter, "placeholder": None if json_logs else "-"}},
        "formatters": {"default": formatter_config(json_logs)},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "default", "filters": ["request_id"]}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            # callvault logs each request itself (with its id, route and duration): no second access line.
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            # /readyz reads the schema version through Alembic, which says so at INFO on every probe.
            "alembic.runtime.migration": {"level": "WARNING"},
        },
    }


def configure(json_logs: bool, level: str = "INFO") -> None:
    """Install the configuration in this process (the worker, the SIPREC server, serve's workers).

    JSON replaces whatever handlers there were (the operator asked for it); plain text only fills in
    when nothing is configured yet, like ``logging.basicConfig``, so a host application keeps its own."""
    import logging.config

    if json_logs:
        logging.config.dictConfig(logging_config(True, level))
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
