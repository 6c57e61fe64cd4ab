"""A person's own settings kept on their account (not in a browser cookie), so every server node and every
browser they sign in from shows the same thing: today, the time zone pages show times in.

The zone is an IANA name validated against the system's zone database (``zoneinfo``); None means "the
policy's zone" (the first one the policy names), which is what a person who never chose one sees.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import FieldProblem, InvalidInput
from callvault.identity.models import User


def parse_zone(name: str | None) -> ZoneInfo | None:
    """The zone called ``name``, or None when it is empty or not an IANA zone name (never raises)."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def set_timezone(session: Session, *, user: User, zone: str | None, source_ip: str | None = None,
                 clock: Clock = system_clock) -> str | None:
    """Store the person's zone (empty: back to the policy's), audited ``account.timezone_changed``.

    A name that is not an IANA zone is refused naming the field and an example, never stored."""
    name = (zone or "").strip() or None
    if name is not None and parse_zone(name) is None:
        raise InvalidInput("unknown time zone", [FieldProblem(
            "timezone", f"“{name[:64]}” is not a time zone name; use one like America/Toronto or Australia/Sydney")])
    previous = user.timezone
    user.timezone = name
    audit.append(session, audit.AuditEvent(
        actor=user.username, actor_role=user.role, action="account.timezone_changed", decision="allow",
        object_type="user", object_id=user.username, source_ip=source_ip,
        details={"from": previous, "to": name}), clock=clock)
    session.flush()
    return name
