"""Shared pieces of the policy schema: the vocabularies, the field types and the strict base model."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from datetime import date
from typing import Annotated, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
)

ROLE_VOCABULARY: tuple[str, ...] = (
    "executive",
    "support_lead",
    "head_of_customer_success",
    "hr_manager",
    "it_staff",
    "specialist",
    "qa_reviewer",
    "admin",
    "telephony_integration",
)
"""Stable role ids the example policies use, so integrations can rely on them. A policy may add its own."""

PURPOSE_VOCABULARY: tuple[str, ...] = (
    "complaint_investigation",
    "spot_check",
    "health_safety_crime",
    "regulatory_compliance",
    "training",
    "staff_performance",
    "abusive_call",
    "crm_transcription_check",
    "legal_claim",
    "subject_access",
    "self_review",
)
"""Stable purpose ids the example policies use. A policy may add its own (any slug)."""

ContentScope = Literal["all", "own_extension", "own_team", "none"]
Serves = Literal["original", "anonymised_derivative", "redacted"]
"""``redacted``: only the audio and transcript with personal data masked (minimum necessary, HIPAA 164.502(b))."""
Reach = Literal["any_in_scope", "quality_sample", "matched_request"]
"""Which recordings a purpose can open, within the role's scope (``PurposeRule.reaches``)."""
ContentActionName = Literal["play", "transcript", "monitor", "download", "export"]
"""The content actions a purpose may allow (``PurposeRule.actions``): listening, or sharing a copy."""
CONTENT_ACTION_NAMES: tuple[ContentActionName, ...] = ("play", "transcript", "monitor", "download", "export")
SHARING_ACTION_NAMES: frozenset[str] = frozenset({"download", "export"})
"""Actions that let a copy leave the system (A13's "sharing of information")."""
Direction = Literal["inbound", "outbound"]

_SLUG_RE = r"^[a-z][a-z0-9_]*(-[a-z0-9_]+)*$"
_ID_RE = r"^[a-z][a-z0-9_]*$"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
"""Non-empty human text; a blank description or notice is as good as a missing one."""
PolicySlug = Annotated[str, StringConstraints(pattern=_SLUG_RE, max_length=100)]
"""A policy id: lower case, digits, ``_`` and ``-`` (``smartsimple-support``)."""
Identifier = Annotated[str, StringConstraints(pattern=_ID_RE, max_length=64)]
"""A role or purpose id: lower case, digits and ``_`` (``support_lead``), stable for integrations."""
ClauseId = Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,3}[0-9]{1,3}[a-z]?$")]
"""A requirement id such as ``A6`` or ``B9``; decisions cite them so an auditor can trace the rule."""
RegionId = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$")]
"""A region label such as ``AU-NZ``; upper case so it reads like the country codes it groups."""


def _check_country(value: str) -> str:
    """ISO 3166-1 alpha-2, checked against phonenumbers' region list so no extra dependency is needed."""
    code = value.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. CA, AU, GB)")
    return code


Country = Annotated[str, AfterValidator(_check_country)]


def _check_timezone(value: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. America/Toronto, UTC)") from exc
    return value


def _check_hhmm(value: str) -> str:
    if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]|24:00", value):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (24-hour)")
    return value

_EXTENSION_ITEM = re.compile(r"^(?P<start>[0-9]+)(?:-(?P<end>[0-9]+))?$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def add_months(day: date, months: int) -> date:
    """``day`` plus whole calendar months, clamped to the month's last day.

    Clamping *down* (31 August + 6 months = 28/29 February) is deliberate: retention limits say
    "no more than N months", so rounding must never keep anything longer.
    """
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return day.replace(year=year, month=month + 1, day=min(day.day, last))


def _duplicates(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dupes: list[str] = []
    for item in items:
        if item in seen and item not in dupes:
            dupes.append(item)
        seen.add(item)
    return dupes


def _no_duplicates(items: tuple[str, ...], what: str) -> tuple[str, ...]:
    dupes = _duplicates(items)
    if dupes:
        raise ValueError(f"{what} listed more than once: {', '.join(dupes)}")
    return items


class _Model(BaseModel):
    """Base for every policy model: unknown keys rejected, instances immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


