"""What a caller may ask for, who hears of misuse, and whom the notice names (A8, A12, B7, B10, B12)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from callvault.policy.schema.common import (
    _EMAIL_RE,
    Country,
    Identifier,
    RegionId,
    Text,
    _check_hhmm,
    _check_timezone,
    _Model,
    _no_duplicates,
)


# --------------------------------------------------------------------------------------- subject rights
class SubjectRequestRegion(_Model):
    """A working-day calendar: country and optional subdivision, as the ``holidays`` package names them."""

    country: Country
    subdivision: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,3}$")] | None = None
    timezone: Annotated[str, AfterValidator(_check_timezone)] | None = None
    """IANA zone in which the region's working day starts and ends (e.g. ``Australia/Sydney``); without
    it, the zone phonenumbers gives for the requester's number, else UTC."""


class IdentityCheck(_Model):
    """How a caller proves a phone number is theirs when no code can be sent to it (B7: "their own"
    recordings). The reviewer checks the facts the caller gave against the recordings before release."""

    call_time_window_minutes: int = Field(default=120, ge=15, le=12 * 60)
    """A recording matches the stated call time if it started this close to it (same local date when
    the caller gave no time)."""
    min_facts_confirmed: int = Field(default=2, ge=1, le=3)
    """How many facts (call time, agent's first name, reason) the releasing reviewer must confirm."""


class Deadline(_Model):
    """When a caller's request must be answered: exactly one of working days (B7: 7), calendar days (HIPAA
    164.524(b)(2): 30, CCPA 1798.130: 45) or calendar months (GDPR Art. 12(3): one), and how far a written
    extension may push it (HIPAA: 30 days once; GDPR: two months more; none unless named)."""

    working_days: int | None = Field(default=None, ge=1, le=60)
    calendar_days: int | None = Field(default=None, ge=1, le=366)
    calendar_months: int | None = Field(default=None, ge=1, le=12)
    extension_days: int = Field(default=0, ge=0, le=366)
    """Calendar days a written extension adds (with ``calendar_days``)."""
    extension_months: int = Field(default=0, ge=0, le=12)
    """Calendar months a written extension adds (with ``calendar_months``)."""

    @model_validator(mode="after")
    def _one_unit(self) -> Deadline:
        given = [k for k in ("working_days", "calendar_days", "calendar_months") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of working_days, calendar_days or calendar_months")
        if self.extension_days and self.calendar_days is None:
            raise ValueError("extension_days goes with calendar_days; with calendar_months use extension_months")
        if self.extension_months and self.calendar_months is None:
            raise ValueError("extension_months goes with calendar_months; with calendar_days use extension_days")
        return self

    @property
    def extendable(self) -> bool:
        return bool(self.extension_days or self.extension_months)

    def describe(self) -> str:
        if self.working_days is not None:
            return f"{self.working_days} working days"
        if self.calendar_days is not None:
            return f"{self.calendar_days} calendar days"
        return f"{self.calendar_months} calendar month{'s' if self.calendar_months != 1 else ''}"


class RepresentativeRules(_Model):
    """Whether someone may ask on a caller's behalf (HIPAA 164.502(g): a personal representative), and which
    proof of authority staff must check and record on the request before it goes on."""

    allowed: bool = False
    proof_kinds: tuple[Identifier, ...] = ()
    """The documents staff may accept, e.g. ``healthcare_power_of_attorney``, ``court_order``, ``parent_of_minor``."""

    @model_validator(mode="after")
    def _proof(self) -> RepresentativeRules:
        if self.allowed and not self.proof_kinds:
            raise ValueError("representatives are allowed but no proof_kinds are named; name the documents "
                             "staff must check")
        _no_duplicates(self.proof_kinds, "proof kind")
        return self


class SubjectRequestRules(_Model):
    """Callers' (and operators') requests for their own recordings (B7, B10)."""

    enabled: bool = True
    deadline_working_days: int | None = Field(default=None, ge=1, le=60)
    """The original key (B7: 7 working days); ``deadline: {working_days: 7}`` says the same."""
    deadline: Deadline | None = None
    representatives: RepresentativeRules = RepresentativeRules()
    delivery: Literal["email_link"] = "email_link"
    regions: dict[RegionId, SubjectRequestRegion] = Field(default_factory=dict)
    default_region: RegionId | None = None
    identity_check: IdentityCheck = Field(default_factory=IdentityCheck)

    @model_validator(mode="after")
    def _complete(self) -> SubjectRequestRules:
        if not self.enabled:
            return self
        problems: list[str] = []
        if self.deadline_working_days is not None and self.deadline is not None:
            problems.append("give deadline or deadline_working_days, not both")
        elif self.deadline_working_days is None and self.deadline is None:
            problems.append("deadline (or deadline_working_days) is needed when requests are enabled")
        if not self.regions:
            problems.append("at least one region calendar is needed to count working days")
        if self.default_region is None:
            problems.append("default_region is needed when requests are enabled")
        elif self.regions and self.default_region not in self.regions:
            problems.append(
                f"default_region {self.default_region} is not one of the regions: {', '.join(self.regions)}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def effective_deadline(self) -> Deadline:
        """The deadline, whichever key gave it (7 working days when requests are off and none is named)."""
        if self.deadline is not None:
            return self.deadline
        return Deadline(working_days=self.deadline_working_days or 7)


# --------------------------------------------------------------------------------- misuse, notice, people
class MisuseDetection(_Model):
    """Thresholds of the misuse detection rules the worker runs over the audit log (B12).

    Every rule looks at one calendar day in ``timezone``; a hit raises one report per rule, user and day.
    """

    enabled: bool = True
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    """IANA zone the working hours and days are in, e.g. ``America/Toronto``."""
    working_hours: tuple[Annotated[str, AfterValidator(_check_hhmm)], Annotated[str, AfterValidator(_check_hhmm)]] = (
        "07:00", "19:00")
    """Start and end (HH:MM, end exclusive); content access outside them raises ``outside_hours``."""
    working_days: tuple[Annotated[int, Field(ge=1, le=7)], ...] = (1, 2, 3, 4, 5)
    """ISO weekdays (1 = Monday) that are working days."""
    volume_factor: float = Field(default=3.0, gt=1.0, le=100.0)
    """Recordings played in a day above this multiple of the user's daily average is unusual..."""
    volume_min_recordings: int = Field(default=20, ge=1)
    """...when it is also at least this many distinct recordings."""
    baseline_days: int = Field(default=28, ge=1, le=365)
    denials_per_day: int = Field(default=5, ge=1)
    """Denied requests by one user in a day that raise ``repeated_denials``."""
    probing_extensions: int = Field(default=2, ge=1)
    """Distinct other extensions a specialist was denied in a day that raise ``extension_probing``."""
    bulk_download_recordings: int = Field(default=10, ge=1)
    """Distinct recordings downloaded or exported within ``bulk_download_minutes`` that raise ``bulk_download``."""
    bulk_download_minutes: int = Field(default=60, ge=1, le=1440)

    @model_validator(mode="after")
    def _hours_in_order(self) -> MisuseDetection:
        if self.working_hours[0] >= self.working_hours[1]:
            raise ValueError("working_hours must be [start, end] with start before end, e.g. [\"08:00\", \"18:00\"]")
        return self


class MisuseRules(_Model):
    """Who receives reports of suspected misuse (B12)."""

    report_to_roles: tuple[Identifier, ...] = Field(min_length=1)
    detection: MisuseDetection = MisuseDetection()
    report_deadline_days: int | None = Field(default=None, ge=1, le=365)
    """Calendar days from a report's filing by which it must be closed (HIPAA 164.404(b): breach notice
    within 60 days of discovery); open reports past it are shown overdue. None: no deadline."""

    @field_validator("report_to_roles")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "role")


class Contact(_Model):
    """A person or office to contact; at least one way to reach them."""

    role_title: Text
    name: Text | None = None
    phone: Text | None = None
    email: Text | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL_RE.match(value):
            raise ValueError(f"{value!r} is not an email address")
        return value


class NoticeRules(_Model):
    """The public notice (B2, linked from "Contact us") and the contact for objections (A15)."""

    public_title: Text
    public_text: Text
    objection_contact: Contact | None = None
    caller_requests: tuple[Literal["copy", "erasure"], ...] = Field(default=("copy",), min_length=1)
    """What the notice promises callers may ask for, and so what the public request form offers: ``copy``
    (listen to or receive copies, B7) and, only where the notice promises it, ``erasure`` (deletion of
    their recordings). The form never offers a right the notice does not give."""


