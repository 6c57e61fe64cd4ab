"""How long recordings are kept and how they are destroyed (A3, A9, B11)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import (
    Field,
)

from callvault.policy.schema.common import _Model, add_months


# ------------------------------------------------------------------------------------------ retention
class RetentionRules(_Model):
    """How long anything is kept and how it is destroyed (A3, A9, B11).

    Months, not days, because both source texts speak in months ("six (6) months", "12 months") and a
    day count would silently drift from the calendar meaning.
    """

    max_age_months: int = Field(ge=1, le=120)
    destroy_on_case_resolution: bool = False
    post_resolution_grace_days: int = Field(default=0, ge=0, le=365)
    erasure: Literal["crypto_shred"] = "crypto_shred"

    def expires_at(self, started_at: datetime) -> datetime:
        """The moment a recording made at ``started_at`` reaches the retention cap (timezone kept)."""
        end = add_months(started_at.date(), self.max_age_months)
        return started_at.replace(year=end.year, month=end.month, day=end.day)


