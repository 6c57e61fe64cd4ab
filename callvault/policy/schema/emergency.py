"""Emergency ("break the glass") access: wider than a role's scope, declared, short, and always reviewed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from callvault.policy.schema.common import Identifier, _Model, _no_duplicates


class EmergencyAccessRules(_Model):
    """Who may declare an emergency to reach recordings beyond their role's scope, and who reviews it.

    A declaration names a reason, lasts at most ``max_minutes``, and while it lasts ``decide()`` lets its
    holder ``actions`` on any available recording without a purpose, an approval or the role's scope (each
    access audited with the declaration's id). Every declaration creates a review task for
    ``reviewer_roles`` due ``review_within_days`` later; an overdue review is reported to the misuse
    recipients. Never a quarantined recording's content (no consent evidence: no use at all, A5, B2). Absent from
    a policy: nobody can declare one.
    """

    roles: tuple[Identifier, ...] = Field(min_length=1)
    """Roles that may declare an emergency."""
    max_minutes: int = Field(default=60, ge=1, le=24 * 60)
    """How long a declaration lasts at most (a declaration may ask for less)."""
    reviewer_roles: tuple[Identifier, ...] = Field(min_length=1)
    """Roles that review each declaration afterwards (never the declarer themself)."""
    review_within_days: int = Field(default=7, ge=1, le=90)
    """Days after the declaration by which its review is due; later, it is reported as overdue."""
    actions: tuple[Literal["play", "transcript", "download", "export"], ...] = ("play", "transcript")
    """What a declaration allows; default: listen and read, never take a copy away."""
    serves: Literal["original", "redacted"] = "original"
    """What a declaration's holder hears and reads: the original, or only the redacted copy (personal data toned
    out, as a "minimum necessary" purpose serves). Policy data because it is the policy's call: HIPAA, for one,
    leaves treatment outside minimum necessary (45 CFR 164.502(b)(2)(i))."""
    clause: str = ""
    """The clause of the written policy (or law) this rests on, cited in every audit entry."""

    @field_validator("roles", "reviewer_roles")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "role")


class DisclosureAccountingRules(_Model):
    """Who may read a caller's accounting of disclosures (HIPAA 164.528; GDPR Art. 15(1)(c) recipients).

    The accounting lists every time a caller's recordings left the system or were reached in an emergency,
    with who, when and why: itself personal data about the caller and about staff. So it is deny by
    default: absent from a policy, or with no roles, nobody may read it; each reading is audited.
    """

    roles: tuple[Identifier, ...] = ()
    """Roles that may read (and download as CSV) a caller's accounting; empty: nobody may."""
    clause: str = ""
    """The clause of the written policy (or law) this rests on, cited in every audit entry."""

    @field_validator("roles")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "role")
