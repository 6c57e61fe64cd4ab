"""The range of dates and times callvault accepts from outside (metadata, search filters, sample periods).

Why a range at all: Python's ``datetime`` ends at years 1 and 9999, so ``0001-01-01T00:00:00+14:00``
cannot be turned into UTC and a call starting in 9999 cannot have its retention end computed; both raised
``OverflowError`` deep inside a request (HTTP 500). No call recording predates 1970 or is kept into the
tenth millennium, so anything outside ``EARLIEST``..``LATEST`` is refused where it arrives, naming its field.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""Exclusive. Far enough from year 9999 that a retention of centuries still fits in a ``datetime``."""
RANGE_TEXT = "must be between 1970-01-01 and 8999-12-31 (UTC)"


def instant_problem(value: datetime) -> str | None:
    """Why ``value`` (with an offset) is outside the accepted range, or None. Never raises."""
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return RANGE_TEXT
    return None if EARLIEST <= utc < LATEST else RANGE_TEXT


def day_problem(value: date) -> str | None:
    """Why the calendar day ``value`` is outside the accepted range, or None."""
    return None if EARLIEST.date() <= value < LATEST.date() else RANGE_TEXT
