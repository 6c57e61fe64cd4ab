"""Refusals on record: a service's ``AccessDenied`` appended to the audit log in a unit of work of its own.

Why a separate unit of work: a service raises inside the request's ``unit_of_work``, which then rolls back,
so an entry appended there would vanish with the refusal. The edges (API, CLI, web) wrap the call in
``on_record`` so every "no" to emergency access, its reviews, the accounting of disclosures and retention
extensions is kept, as the policy's deny-by-default asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import AccessDenied

Guard = AbstractContextManager[None]
"""What ``on_record`` returns (for the edges' small wrappers)."""


def _printable(text: str) -> str:
    """``text`` without control characters: an id or number from a URL is kept as typed, but a NUL would be
    refused by PostgreSQL and turn the refusal into a server error."""
    return "".join(c if c.isprintable() else "?" for c in text)


@contextmanager
def on_record(
    db: Database, *, actor: str, actor_role: str, action: str, object_type: str = "", object_id: str = "",
    source_ip: str | None = None, clock: Clock = system_clock,
) -> Iterator[None]:
    """Run the body; an ``AccessDenied`` it raises is audited (``decision="deny"``, its reason and clauses),
    committed, and raised again for the edge to answer."""
    try:
        yield
    except AccessDenied as exc:
        with db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=actor, actor_role=actor_role, action=action, decision="deny", object_type=object_type,
                object_id=_printable(object_id)[:200], reason=exc.reason[:1000], clauses=exc.clauses,
                source_ip=source_ip), clock=clock)
        raise
