"""How long recordings are kept and how they are destroyed (A3, A9, B11)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import (
    Field,
    field_validator,
)

from callvault.policy.schema.common import Identifier, _Model, _no_duplicates, add_months


# ------------------------------------------------------------------------------------------ retention
class LegalHoldRules(_Model):
    """Who may suspend destruction, and for how long before a person must look again (A3, A9, B9, B11).

    A hold overrides the retention cap, so it is a power over every recording: only the roles named here
    place, renew or release holds (none, unless named), each hold names a review date no further than
    ``max_review_months`` ahead, and a hold whose review date has passed is reported to the misuse
    recipients and, ``lapse_after_overdue_days`` later, lapses (is released by the system, audited) so an
    unattended hold cannot keep a recording forever.
    """

    roles: tuple[Identifier, ...] = ()
    """Roles that may place, renew and release legal holds; empty: nobody may."""
    max_review_months: int = Field(default=6, ge=1, le=24)
    """The furthest review date a hold (or its renewal) may name, in months from the day it is set."""
    lapse_after_overdue_days: int = Field(default=30, ge=1, le=365)
    """Days past its review date after which an unrenewed hold lapses and destruction resumes."""

    @field_validator("roles")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "role")


class RetentionRules(_Model):
    """How long anything is kept and how it is destroyed (A3, A9, B11).

    Months, not days, because both source texts speak in months ("six (6) months", "12 months") and a
    day count would silently drift from the calendar meaning.
    """

    max_age_months: int = Field(ge=1, le=120)
    destroy_on_case_resolution: bool = False
    post_resolution_grace_days: int = Field(default=0, ge=0, le=365)
    erasure: Literal["crypto_shred"] = "crypto_shred"
    legal_hold: LegalHoldRules = LegalHoldRules()

    def expires_at(self, started_at: datetime) -> datetime:
        """The moment a recording made at ``started_at`` reaches the retention cap (timezone kept)."""
        end = add_months(started_at.date(), self.max_age_months)
        return started_at.replace(year=end.year, month=end.month, day=end.day)


