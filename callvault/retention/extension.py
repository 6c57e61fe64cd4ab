"""What a retention-extension form shows and accepts: the bounds and the date asked for.

``service.extend_retention`` decides and records the extension; this module is the small shared part of
its three edges (API, CLI, web page): the current minimum and maximum for one recording, and "N months"
turned into a keep-until date, so a person can ask the way the regulation speaks ("seven years").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from callvault.core.errors import AccessDenied, FieldProblem, InvalidInput
from callvault.policy.schema import PolicyDocument
from callvault.policy.schema.common import add_months
from callvault.recordings.models import Recording


def may_extend(policy: PolicyDocument, role: str) -> bool:
    """Whether ``role`` is one ``retention.extension.roles`` names (none named: nobody)."""
    return bool(role) and role in policy.retention.extension.roles


def require_extender(policy: PolicyDocument, role: str) -> None:
    """``AccessDenied`` explaining who may, unless ``role`` may extend retention."""
    if not may_extend(policy, role):
        named = ", ".join(policy.retention.extension.roles) or "none"
        reason = f"role {role or '(none)'} may not extend retention: only retention.extension.roles ({named}) may"
        raise AccessDenied(reason, reason=reason, clauses=tuple(c for c in (policy.retention.extension.clause,) if c))


@dataclass(frozen=True)
class Bounds:
    """One recording's retention as an extension form shows it."""

    recording_id: str
    started_at: datetime
    minimum_until: datetime | None
    """The least it must be kept (``retention.min_age_months``); None: no minimum."""
    keep_until: datetime | None
    """An extension or minimum already set on it."""
    destroy_after: datetime | None
    """When it is destroyed as things stand."""
    extension_limit: datetime
    """The furthest keep-until an extension may name (``retention.extension.max_age_months``)."""


def bounds(policy: PolicyDocument, row: Recording) -> Bounds:
    rules = policy.retention
    return Bounds(recording_id=row.id, started_at=row.started_at, minimum_until=rules.minimum_until(row.started_at),
                  keep_until=row.keep_until, destroy_after=row.destroy_after,
                  extension_limit=rules.extension_limit(row.started_at))


def keep_until_from(*, keep_until: date | None, months: int | None, started_at: datetime) -> date:
    """The keep-until date asked for: a date, or a number of months after the call (exactly one)."""
    if (keep_until is None) == (months is None):
        raise InvalidInput("invalid retention extension:", [FieldProblem(
            "keep_until", "give either a keep-until date or a number of months after the call, not both")])
    if months is not None:
        if not 1 <= months <= 240:
            raise InvalidInput("invalid retention extension:", [FieldProblem("months", "must be 1 to 240")])
        return add_months(started_at.date(), months)
    assert keep_until is not None
    return keep_until
