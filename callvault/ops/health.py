"""Liveness and readiness, for load balancers and orchestrators.

Liveness (``/healthz``) answers from the process alone: a database outage must not get every node
restarted. Readiness (``/readyz``) says whether this node can do its work: the database answers, its
schema is at the migrations' head (a node must not serve an old or a newer schema), and the
key-encryption keys can be read (without them nothing can be stored or played).
"""

from __future__ import annotations

import functools

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from callvault.audit import alarm
from callvault.core.errors import CallvaultError
from callvault.core.migrate import alembic_config
from callvault.runtime import Runtime
from callvault.storage.keys import load_keyring


@functools.cache
def _script_heads(database_url: str) -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())


def readiness(runtime: Runtime) -> dict[str, str]:
    """Each check's verdict: ``ok`` or a short reason (no secrets, no paths beyond what operators set)."""
    checks: dict[str, str] = {}
    try:
        with runtime.db.engine.connect() as conn:
            current = frozenset(MigrationContext.configure(conn).get_current_heads())
        checks["database"] = "ok"
        expected = _script_heads(runtime.settings.database_url)
        if current == expected:
            checks["migrations"] = "ok"
        else:
            checks["migrations"] = (f"schema at {', '.join(sorted(current)) or 'nothing'}, code expects "
                                    f"{', '.join(sorted(expected))}: run `callvault migrate`")
    except Exception as exc:  # any driver error means "not ready"; the reason goes to the log, not the probe
        checks["database"] = f"unreachable ({type(exc).__name__})"
        checks["migrations"] = "unknown"
    try:
        load_keyring(runtime.settings.key_dir, runtime.settings.env)
        checks["keys"] = "ok"
    except (CallvaultError, OSError) as exc:
        checks["keys"] = f"unreadable ({type(exc).__name__})"
    checks["audit"] = audit_check(runtime) if checks["database"] == "ok" else "unknown"
    return checks


DEGRADING = frozenset({"audit"})
"""Checks whose failure degrades the node but keeps it in service: a tamper alarm stops checkpoint
signing, but taking every node out of the load balancer would also stop recording calls."""


def audit_check(runtime: Runtime) -> str:
    """``ok``, or that a tamper alarm is raised (no detail: ``/readyz`` is unauthenticated)."""
    try:
        with runtime.db.read_only() as session:
            raised = alarm.open_alarm(session)
    except Exception as exc:  # the database check above reports the outage itself
        return f"unknown ({type(exc).__name__})"
    if raised is None:
        return "ok"
    return (f"tamper alarm #{raised.id} raised: checkpoints are not signed until an administrator runs "
            "`callvault audit acknowledge-alarm`")


def is_ready(checks: dict[str, str]) -> bool:
    return all(v == "ok" for k, v in checks.items() if k not in DEGRADING)


def is_degraded(checks: dict[str, str]) -> bool:
    """Ready, but a degrading check (``DEGRADING``) is not ``ok``."""
    return any(checks.get(k, "ok") != "ok" for k in DEGRADING)
