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
    return checks


def is_ready(checks: dict[str, str]) -> bool:
    return all(v == "ok" for v in checks.values())
