"""How long recordings are kept and how they are destroyed (A3, A9, B11)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

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


class RetentionExtension(_Model):
    """Keeping a recording past its minimum on request (FCA COBS/SYSC 10A: five years, seven "on request").

    A role named here may set a per-recording "keep until" date, with a reason, audited; it never shortens
    what is already required and can lie at most ``max_age_months`` after the call's start (default: no
    further than the policy's ``retention.max_age_months``)."""

    roles: tuple[Identifier, ...] = ()
    """Roles that may extend a recording's keep-until date; empty: nobody may."""
    max_age_months: int | None = Field(default=None, ge=1, le=240)
    """The furthest keep-until date, in months from the call's start; None: ``retention.max_age_months``."""
    clause: str = ""
    """The clause of the written policy (or regulation) this rests on, for the audit entry."""

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
    min_age_months: int = Field(default=0, ge=0, le=240)
    """The least time every recording is kept (0: no minimum). Nothing destroys or alters a recording
    before it: not the cap of a later policy version, a case resolution, an agent's control or a
    quarantine decision. Destroying early is the violation a regulated firm is judged on."""
    min_age_clause: str = ""
    """The clause or regulation the minimum rests on (e.g. ``FCA SYSC 10A.1.11``), cited in audit entries."""
    extension: RetentionExtension = RetentionExtension()
    write_once: bool = False
    """Blobs must go to an S3 store with Object Lock (``lock_days``) long enough for the minimum;
    callvault refuses to start or to load this policy otherwise."""

    @model_validator(mode="after")
    def _minimum_within_cap(self) -> RetentionRules:
        if self.min_age_months > self.max_age_months:
            raise PydanticCustomError(
                "retention_minimum",
                "min_age_months ({minimum}) is longer than max_age_months ({cap}): no recording could be both "
                "kept that long and destroyed by the cap; raise max_age_months",
                {"minimum": self.min_age_months, "cap": self.max_age_months})
        limit = self.extension.max_age_months
        if limit is not None and limit < self.min_age_months:
            raise PydanticCustomError(
                "retention_minimum", "extension.max_age_months ({limit}) is shorter than min_age_months ({minimum})",
                {"limit": limit, "minimum": self.min_age_months})
        return self

    def minimum_until(self, started_at: datetime) -> datetime | None:
        """The moment a recording made at ``started_at`` may first be destroyed (None: no minimum)."""
        if not self.min_age_months:
            return None
        end = add_months(started_at.date(), self.min_age_months)
        return started_at.replace(year=end.year, month=end.month, day=end.day)

    def extension_limit(self, started_at: datetime) -> datetime:
        """The furthest keep-until date an extension may name for a call made at ``started_at``."""
        end = add_months(started_at.date(), self.extension.max_age_months or self.max_age_months)
        return started_at.replace(year=end.year, month=end.month, day=end.day)

    def expires_at(self, started_at: datetime) -> datetime:
        """The moment a recording made at ``started_at`` reaches the retention cap (timezone kept)."""
        end = add_months(started_at.date(), self.max_age_months)
        return started_at.replace(year=end.year, month=end.month, day=end.day)


