"""The policy file as typed data: every enforceable clause of a call-recording policy.

Why pydantic models rather than free-form YAML: the product must *enforce* the written policy, so a
policy that is ambiguous (a purpose naming a role that does not exist, an approval with no approver,
a network rule that is not a network) must be refused when it is loaded, not discovered when someone
is wrongly let in or locked out. Every model forbids unknown keys (a misspelt key would otherwise be
silently ignored, and an ignored rule is an unenforced rule) and is frozen (the policy in force must
not change under a running request).

Cross-references (roles named by purposes, the network rules and the misuse routing; trunk regions
needing a working-day calendar) are checked on the whole document and reported with the exact
location, e.g. ``purposes.training.roles[1]``, so the loader can point at the YAML line.
"""

from __future__ import annotations

import calendar
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "PURPOSE_VOCABULARY",
    "ROLE_VOCABULARY",
    "AnnouncementPrompt",
    "ApprovalRule",
    "ConsentRules",
    "Contact",
    "ContentScope",
    "ControlRules",
    "MisuseDetection",
    "MisuseRules",
    "MonitoringRules",
    "NetworkRules",
    "NoticeRules",
    "PolicyDocument",
    "PurposeRule",
    "QualityReviewRules",
    "RecordingScope",
    "RetentionRules",
    "ReviewRules",
    "RoleRule",
    "SamplingRule",
    "ScopeCheck",
    "Scorecard",
    "ScorecardQuestion",
    "ScorecardSection",
    "Serves",
    "SubjectRequestRegion",
    "SubjectRequestRules",
    "TrainingLibraryRules",
    "TrunkNumber",
    "add_months",
    "canonical_sha256",
]

ROLE_VOCABULARY: tuple[str, ...] = (
    "executive",
    "support_lead",
    "head_of_customer_success",
    "hr_manager",
    "it_staff",
    "specialist",
    "qa_reviewer",
    "admin",
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
Serves = Literal["original", "anonymised_derivative"]
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


# --------------------------------------------------------------------------------------------- review
class ReviewRules(_Model):
    """When the policy must be looked at again (B13)."""

    interval_months: int = Field(ge=1, le=120)
    also_on_significant_change: bool = True


# ---------------------------------------------------------------------------------------------- roles
class RoleRule(_Model):
    """What a role may reach. ``content_scope`` bounds which recordings; purposes bound why (A9)."""

    description: Text
    content_scope: ContentScope
    can_administer: bool = False
    """Runs the system (users, policy, quarantine). Grants no content access by itself."""
    mfa_required: bool = False


# ------------------------------------------------------------------------------------------- purposes
class ApprovalRule(_Model):
    """Whether using a purpose needs someone else's approval first (B6, B9)."""

    required: bool = False
    approver_roles: tuple[Identifier, ...] = ()

    @field_validator("approver_roles")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "approver role")

    @model_validator(mode="after")
    def _consistent(self) -> ApprovalRule:
        # Both directions are refused: an approval nobody can give locks the purpose for good, and
        # approvers on a purpose that needs no approval suggest the author expected a check that won't happen.
        if self.required and not self.approver_roles:
            raise ValueError("approval is required but no approver_roles are named; name at least one role")
        if not self.required and self.approver_roles:
            raise ValueError(
                "approver_roles are named but required is false; set required: true or remove them"
            )
        return self


class PurposeRule(_Model):
    """One reason a recording may be retrieved, who may name it, and on what conditions (A6, A13, B5)."""

    description: Text
    clause_ids: tuple[ClauseId, ...] = Field(min_length=1)
    roles: tuple[Identifier, ...] = Field(min_length=1)
    approval: ApprovalRule = ApprovalRule()
    employee_consent_required: bool = False
    """The recorded employee must have consented to this purpose (A6: training)."""
    serves: Serves = "original"
    """What the purpose may be given: the original audio, or only an anonymised derivative (A6)."""

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "role")

    @field_validator("clause_ids")
    @classmethod
    def _unique_clauses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "clause id")


# ------------------------------------------------------------------------------------ recording scope
class TrunkNumber(_Model):
    """A recorded public number (B3). Stored in E.164 so it compares equal however it was written."""

    number: str
    region: RegionId
    countries: tuple[Country, ...] = ()
    """Where callers on this number are expected to be; informational, used to pick calendars and reports."""

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str) -> str:
        try:
            parsed = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException as exc:
            raise ValueError(
                f"{value!r} is not a phone number in international form (+<country code> <number>): {exc}"
            ) from exc
        if not phonenumbers.is_valid_number(parsed):
            raise ValueError(f"{value!r} is not a valid phone number")
        return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))

    @field_validator("countries")
    @classmethod
    def _unique_countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "country")


def _check_extension_item(value: str) -> str:
    match = _EXTENSION_ITEM.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not an extension (digits) or a range like 2000-2099")
    start, end = match.group("start"), match.group("end")
    if end is not None:
        if len(start) != len(end):
            raise ValueError(f"range {value!r}: both ends must have the same number of digits")
        if int(start) > int(end):
            raise ValueError(f"range {value!r} runs backwards")
    return value.strip()


ExtensionItem = Annotated[str, AfterValidator(_check_extension_item)]
"""An extension (``2001``) or an inclusive range of same-length extensions (``2000-2099``)."""


def _extension_matches(item: str, extension: str) -> bool:
    start, _, end = item.partition("-")
    if not end:
        return extension == start
    # Same length as the bounds: "200" is not inside "2000-2099" even though 200 < 2099 numerically.
    return len(extension) == len(start) and int(start) <= int(extension) <= int(end)


class ScopeCheck(_Model):
    """Whether a call may be recorded, and why not (logged without content when refused, A1/A8)."""

    in_scope: bool
    reason: str
    clauses: tuple[str, ...] = ()


class RecordingScope(_Model):
    """Which calls are recorded (A1, A8, B1, B3). Every listed dimension must match; empty means any.

    Requiring *all* configured dimensions is the conservative reading: a call is only stored when it is
    clearly covered, since storing an out-of-scope call cannot be undone by deleting it later.
    """

    teams: tuple[Identifier, ...] = ()
    directions: tuple[Direction, ...] = ("inbound", "outbound")
    extensions: tuple[ExtensionItem, ...] = ()
    excluded_extensions: tuple[ExtensionItem, ...] = ()
    """Private lines (A8): never recorded, even inside an included range."""
    trunk_numbers: tuple[TrunkNumber, ...] = ()

    @field_validator("directions")
    @classmethod
    def _directions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one direction (inbound, outbound) must be recorded")
        return _no_duplicates(value, "direction")

    @field_validator("teams")
    @classmethod
    def _unique_teams(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "team")

    @field_validator("trunk_numbers")
    @classmethod
    def _unique_numbers(cls, value: tuple[TrunkNumber, ...]) -> tuple[TrunkNumber, ...]:
        dupes = _duplicates(t.number for t in value)
        if dupes:
            raise ValueError(f"trunk number listed more than once: {', '.join(dupes)}")
        return value

    def extension_excluded(self, extension: str | None) -> bool:
        """True for a private line (A8)."""
        if not extension:
            return False
        return any(_extension_matches(i, extension) for i in self.excluded_extensions)

    def trunk_for(self, number: str | None) -> TrunkNumber | None:
        """The configured trunk an E.164 number belongs to, if any."""
        if not number:
            return None
        return next((t for t in self.trunk_numbers if t.number == number), None)

    def check(
        self, *, direction: str, team: str | None, extension: str | None, trunk_number: str | None
    ) -> ScopeCheck:
        """Decide whether a call is within the recording scope. ``trunk_number`` must be E.164."""
        if direction not in self.directions:
            return ScopeCheck(
                in_scope=False, reason=f"{direction} calls are not recorded", clauses=("A1", "B3")
            )
        if self.extension_excluded(extension):
            return ScopeCheck(
                in_scope=False, reason=f"extension {extension} is a private line and is never recorded",
                clauses=("A8",),
            )
        if self.teams and team not in self.teams:
            return ScopeCheck(
                in_scope=False, reason=f"team {team or '(none)'} is not a recorded team", clauses=("A1", "B1")
            )
        if self.extensions and not (
            extension and any(_extension_matches(i, extension) for i in self.extensions)
        ):
            return ScopeCheck(
                in_scope=False, reason=f"extension {extension or '(none)'} is not a recorded extension",
                clauses=("A1",),
            )
        if self.trunk_numbers and self.trunk_for(trunk_number) is None:
            return ScopeCheck(
                in_scope=False, reason=f"number {trunk_number or '(none)'} is not a recorded number",
                clauses=("B3",),
            )
        return ScopeCheck(in_scope=True, reason="call is within the recording scope")


# -------------------------------------------------------------------------------------------- consent
class AnnouncementPrompt(_Model):
    """The pre-recorded announcement inbound callers hear (A5, B2); evidence cites id and version."""

    prompt_id: Identifier
    version: Text
    text: Text


class ConsentRules(_Model):
    """How callers are told and may decline (A5, A14, B2, B4)."""

    inbound_announcement: AnnouncementPrompt
    outbound_agent_notice_required: bool = True
    outbound_notice_text: Text | None = None
    caller_may_decline: bool = True
    missing_evidence_action: Literal["quarantine"] = "quarantine"

    @model_validator(mode="after")
    def _notice_text(self) -> ConsentRules:
        # The agent's UI shows this text; requiring a notice without saying what to say is unenforceable.
        if self.outbound_agent_notice_required and self.outbound_notice_text is None:
            raise ValueError("outbound_notice_text is needed when outbound_agent_notice_required is true")
        return self


# ------------------------------------------------------------------------------------------- controls
class ControlRules(_Model):
    """Recording control after the call (A7, A14, B4): how long the recorded agent may still mark it personal.

    Marking a call personal destroys it, so it is the agent's act *during* the call. The sources give no
    time after the call's end; a policy that names none allows none (0). Within the window only the
    recorded agent may do it, never while the recording is evidence (a case, a legal hold, an open access
    or caller request, a QA item), and every such marking is reported to ``misuse.report_to_roles``.
    """

    personal_after_call_minutes: int = Field(default=0, ge=0, le=24 * 60)
    """Minutes after the call's end in which the recorded agent may still mark it personal (0: never)."""


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


# -------------------------------------------------------------------------------------------- network
def _check_cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        # strict=True: "10.20.0.1/16" is refused rather than widened silently to 10.20.0.0/16.
        raise ValueError(
            f"{value!r} is not a network in CIDR form (e.g. 10.20.0.0/16 or ::1/128): {exc}"
        ) from exc
    return str(network)


Cidr = Annotated[str, AfterValidator(_check_cidr)]


class NetworkRules(_Model):
    """Where content may be reached from (A11). ``per_role`` narrows ``allow`` for those roles."""

    allow: tuple[Cidr, ...] = Field(min_length=1)
    per_role: dict[Identifier, tuple[Cidr, ...]] = Field(default_factory=dict)
    require_device_certificate: bool = False
    """Company devices only (A11): needs a client certificate verified by the trusted reverse proxy."""

    def permits(self, address: str, role: str | None = None) -> bool:
        """Whether a client address may reach the system, for ``role`` if given. Bad addresses: no."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False

        def inside(cidrs: Iterable[str]) -> bool:
            return any(ip in ipaddress.ip_network(c) for c in cidrs)

        if not inside(self.allow):
            return False
        if role is not None and role in self.per_role:
            return inside(self.per_role[role])
        return True


# --------------------------------------------------------------------------------------- subject rights
class SubjectRequestRegion(_Model):
    """A working-day calendar: country and optional subdivision, as the ``holidays`` package names them."""

    country: Country
    subdivision: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,3}$")] | None = None
    timezone: Annotated[str, AfterValidator(_check_timezone)] | None = None
    """IANA zone in which the region's working day starts and ends (e.g. ``Australia/Sydney``); without
    it, the zone phonenumbers gives for the requester's number, else UTC."""


class SubjectRequestRules(_Model):
    """Callers' (and operators') requests for their own recordings (B7, B10)."""

    enabled: bool = True
    deadline_working_days: int | None = Field(default=None, ge=1, le=60)
    delivery: Literal["email_link"] = "email_link"
    regions: dict[RegionId, SubjectRequestRegion] = Field(default_factory=dict)
    default_region: RegionId | None = None

    @model_validator(mode="after")
    def _complete(self) -> SubjectRequestRules:
        if not self.enabled:
            return self
        problems: list[str] = []
        if self.deadline_working_days is None:
            problems.append("deadline_working_days is needed when requests are enabled")
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


# ------------------------------------------------------------------------------------- transcription
class TranscriptionRules(_Model):
    """Speech-to-text of recordings (A6, B5) and removal of card data from them (PCI DSS)."""

    enabled: bool = False
    """The worker transcribes new recordings only when this is true."""
    engine: Literal["faster_whisper", "pocketsphinx"] = "faster_whisper"
    redact_card_data: bool = True
    """Spoken card numbers and security codes, and keyed DTMF tones, are removed from the stored audio
    and transcript (not just hidden); the recording notes that a removal happened."""



# ------------------------------------------------------------------------------------- quality review
Period = Literal["day", "week", "month"]
Stratum = Literal["team", "direction"]
Answer = Literal["yes", "no", "na"]


class SamplingRule(_Model):
    """How calls are drawn at random for review (B8): N per agent per period, or a percentage.

    Exactly one of ``calls_per_agent`` and ``percent`` is given: a rule with both would leave the
    reviewer guessing which one the auditor will check.
    """

    period: Period = "week"
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    """IANA zone in which a period starts and ends (a week starts on Monday at 00:00)."""
    calls_per_agent: int | None = Field(default=None, ge=1, le=1000)
    percent: float | None = Field(default=None, gt=0, le=100)
    """Of each agent's calls in the period, rounded up (so an agent with any call gets one reviewed)."""
    stratify_by: tuple[Stratum, ...] = ("team", "direction")
    """Each agent's sample is spread over these groups in proportion to their calls."""

    @model_validator(mode="after")
    def _one_size(self) -> SamplingRule:
        if (self.calls_per_agent is None) == (self.percent is None):
            raise ValueError("give exactly one of calls_per_agent (N calls per agent per period) or percent")
        _no_duplicates(self.stratify_by, "stratum")
        return self


class ScorecardQuestion(_Model):
    """One yes/no question; ``auto_fail``: answering no fails the whole review whatever the rest scores."""

    id: Identifier
    text: Text
    weight: float = Field(default=1.0, gt=0, le=100)
    auto_fail: bool = False
    allow_na: bool = False
    """Whether "not applicable" is an answer (the question then leaves the section's total)."""


class ScorecardSection(_Model):
    """A group of questions; its score (0-100) counts ``weight`` in the review's total."""

    id: Identifier
    title: Text
    weight: float = Field(gt=0, le=100)
    questions: tuple[ScorecardQuestion, ...] = Field(min_length=1)


class Scorecard(_Model):
    """The form reviewers fill in for a sampled call (B8)."""

    id: Identifier
    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    title: Text
    pass_mark: float = Field(default=80.0, ge=0, le=100)
    sections: tuple[ScorecardSection, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Scorecard:
        dupes = _duplicates(s.id for s in self.sections)
        if dupes:
            raise ValueError(f"section id listed more than once: {', '.join(dupes)}")
        dupes = _duplicates(q.id for s in self.sections for q in s.questions)
        if dupes:
            raise ValueError(f"question id listed more than once: {', '.join(dupes)}")
        return self


class TrainingLibraryRules(_Model):
    """Anonymised training clips (A6): who may browse them and how long they are kept."""

    purpose: Identifier = "training"
    """The purpose the library serves; it must serve only an anonymised derivative."""
    library_roles: tuple[Identifier, ...] = Field(min_length=1)
    retention_months: int = Field(ge=1, le=120)
    """Clips are crypto-shredded this long after they were made (their own retention, not the call's)."""


class QualityReviewRules(_Model):
    """Random quality review of calls (B8) and the training library built from reviewed calls (A6)."""

    purpose: Identifier = "spot_check"
    """The purpose a reviewer's listening is decided and audited under (implied by the queue)."""
    reviewer_roles: tuple[Identifier, ...] = Field(min_length=1)
    sampling: SamplingRule
    scorecard: Scorecard
    training: TrainingLibraryRules | None = None

    @field_validator("reviewer_roles")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "role")

# -------------------------------------------------------------------------------------- integrations
class CrmIntegrationRules(_Model):
    """What a CRM connector may do on the CRM's word (B5, B6, A9). Everything is off unless named.

    The connector never reaches content. It acts through the same services as a person: a request it
    files is checked as if the linked requester filed it, an approval it relays is checked against
    the linked approver's role (and no self-approval), so these switches only say whether the
    organisation lets the CRM carry those decisions at all. Ending grants and reopening cases only
    reduce access or keep recordings longer, so a configured connector may always do them.
    """

    file_access_requests: bool = False
    """A ticket asking for recordings becomes an access request filed by the ticket's requester (B6)."""
    relay_approvals: bool = False
    """An approval recorded on the ticket by a linked approver approves the request (B6, B9)."""
    resolve_cases: bool = False
    """A resolved ticket resolves the case of the same reference, starting its grace period (A9)."""


class IntegrationRules(_Model):
    crm: CrmIntegrationRules = CrmIntegrationRules()


# ---------------------------------------------------------------------------------------- monitoring
class MonitoringRules(_Model):
    """Live monitoring of calls in progress (A7, A13): who may listen, why, to whom, and what the agent sees.

    Off unless a policy turns it on. A listener names one of ``purposes`` (each still checked by
    ``decide()`` against the purpose's roles and the role's scope); a purpose that needs an approval
    per recording, the employee's consent or an anonymised copy cannot be used live and is refused
    when the policy is loaded. Monitoring ends at once when the call is paused, stopped or marked
    personal (A7: "leave the line immediately").
    """

    enabled: bool = False
    roles: tuple[Identifier, ...] = ()
    """Roles that may listen live (each still needs a purpose open to it)."""
    purposes: tuple[Identifier, ...] = ()
    default_purpose: Identifier | None = None
    """Offered first in the live view (policy A: ``spot_check``)."""
    parties: Literal["both", "agent"] = "both"
    """What a listener hears: both parties, or only the agent's side."""
    notify_agent: bool = True
    """The agent sees that they are monitored, and by whom."""
    clause_ids: tuple[ClauseId, ...] = ("A7",)

    @model_validator(mode="after")
    def _consistent(self) -> MonitoringRules:
        if self.enabled and (not self.roles or not self.purposes):
            raise ValueError("monitoring is enabled but names no roles or no purposes; name both, or disable it")
        if self.default_purpose is not None and self.default_purpose not in self.purposes:
            raise ValueError(f"default_purpose {self.default_purpose!r} is not one of monitoring.purposes")
        return self


# ------------------------------------------------------------------------------------------- document
def _error(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("policy_reference", "{detail}", {"detail": message}), loc=loc, input=value
    )


class PolicyDocument(_Model):
    """A whole call-recording policy, as loaded from one YAML file."""

    policy_id: PolicySlug
    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    title: Text
    organisation: Text
    effective_from: date
    jurisdiction: Text
    """Where the policy applies, e.g. ``CA-ON`` or ``AU, GB``."""
    laws: tuple[Text, ...] = ()
    source: Text
    """Which written policy this file expresses, so a reviewer can compare clause by clause."""
    review: ReviewRules
    acknowledgement_required: bool = True
    roles: dict[Identifier, RoleRule] = Field(min_length=1)
    purposes: dict[Identifier, PurposeRule] = Field(min_length=1)
    recording_scope: RecordingScope
    consent: ConsentRules
    controls: ControlRules = ControlRules()
    retention: RetentionRules
    network: NetworkRules
    subject_requests: SubjectRequestRules
    misuse: MisuseRules
    notice: NoticeRules
    contacts: tuple[Contact, ...] = ()
    transcription: TranscriptionRules = TranscriptionRules()
    quality_review: QualityReviewRules | None = None
    integrations: IntegrationRules = IntegrationRules()
    monitoring: MonitoringRules = MonitoringRules()

    _sha256: str | None = PrivateAttr(default=None)

    @property
    def content_sha256(self) -> str:
        """The hash that names this document's content: the one its stored version carries
        (``policy_versions.sha256``, computed when it was loaded) when it came from the database, else
        ``canonical_sha256``, computed once (``decide`` asks on every call).

        An acknowledgement counts for this hash alone (A10, B13): another policy that reuses the version
        string is other content and needs its own, while the same content loaded again keeps it. The
        stored hash is preferred so that a later release whose schema adds a defaulted key (which changes
        the canonical form) does not void every acknowledgement of a policy nobody changed. A copy made
        with ``model_copy(update=...)`` keeps this document's hash: parse a changed policy instead."""
        if self._sha256 is None:
            self._sha256 = canonical_sha256(self)
        return self._sha256

    def stored_as(self, sha256: str) -> PolicyDocument:
        """This document, as the stored version whose hash is ``sha256`` (returns ``self``)."""
        self._sha256 = sha256
        return self

    @model_validator(mode="after")
    def _cross_references(self) -> PolicyDocument:
        """Every role named anywhere must be defined; each problem is reported at its own location."""
        errors: list[InitErrorDetails] = []
        known = set(self.roles)
        listing = ", ".join(sorted(known))

        def need_role(loc: tuple[str | int, ...], role: str) -> None:
            if role not in known:
                errors.append(_error(loc, f"unknown role {role!r}; the roles defined are: {listing}", role))

        for pid, purpose in self.purposes.items():
            for i, role in enumerate(purpose.roles):
                need_role(("purposes", pid, "roles", i), role)
                rule = self.roles.get(role)
                if rule is not None and rule.content_scope == "none":
                    errors.append(_error(
                        ("purposes", pid, "roles", i),
                        f"role {role!r} has content_scope none, so it could never use purpose {pid!r}",
                        role,
                    ))
            for i, role in enumerate(purpose.approval.approver_roles):
                need_role(("purposes", pid, "approval", "approver_roles", i), role)
        for i, role in enumerate(self.monitoring.roles):
            need_role(("monitoring", "roles", i), role)
        for i, pid in enumerate(self.monitoring.purposes):
            used = self.purposes.get(pid)
            if used is None:
                errors.append(_error(("monitoring", "purposes", i), f"unknown purpose {pid!r}; the purposes "
                                     f"defined are: {', '.join(sorted(self.purposes))}", pid))
            elif used.approval.required or used.employee_consent_required or used.serves != "original":
                errors.append(_error(("monitoring", "purposes", i), f"purpose {pid!r} needs an approval, the "
                                     "employee's consent or an anonymised copy, none of which a live call can "
                                     "have; remove it from monitoring.purposes", pid))
        for role in self.network.per_role:
            need_role(("network", "per_role", role), role)
        for i, role in enumerate(self.misuse.report_to_roles):
            need_role(("misuse", "report_to_roles", i), role)
        if self.quality_review is not None:
            errors.extend(self._quality_review_errors(need_role))
        if self.subject_requests.enabled:
            for i, trunk in enumerate(self.recording_scope.trunk_numbers):
                if trunk.region not in self.subject_requests.regions:
                    errors.append(_error(
                        ("recording_scope", "trunk_numbers", i, "region"),
                        f"region {trunk.region!r} has no working-day calendar in subject_requests.regions",
                        trunk.region,
                    ))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def _quality_review_errors(self, need_role: Any) -> list[InitErrorDetails]:
        """The review purpose must exist and be open to every reviewer role; likewise the training library."""
        qr = self.quality_review
        assert qr is not None
        errors: list[InitErrorDetails] = []

        def need_purpose(loc: tuple[str | int, ...], pid: str, roles: tuple[str, ...], what: str) -> None:
            rule = self.purposes.get(pid)
            if rule is None:
                errors.append(_error(loc, f"unknown purpose {pid!r}; the purposes defined are: "
                                          f"{', '.join(self.purposes)}", pid))
                return
            for i, role in enumerate(roles):
                if role not in rule.roles:
                    errors.append(_error((*loc[:-1], what, i), f"role {role!r} may not use purpose {pid!r} "
                                         f"(open to: {', '.join(rule.roles)})", role))

        for i, role in enumerate(qr.reviewer_roles):
            need_role(("quality_review", "reviewer_roles", i), role)
        need_purpose(("quality_review", "purpose"), qr.purpose, qr.reviewer_roles, "reviewer_roles")
        if qr.training is not None:
            for i, role in enumerate(qr.training.library_roles):
                need_role(("quality_review", "training", "library_roles", i), role)
            need_purpose(("quality_review", "training", "purpose"), qr.training.purpose, qr.training.library_roles,
                         "library_roles")
            rule = self.purposes.get(qr.training.purpose)
            if rule is not None and rule.serves != "anonymised_derivative":
                errors.append(_error(("quality_review", "training", "purpose"),
                                     f"purpose {qr.training.purpose!r} serves the original audio; the training "
                                     "library needs a purpose that serves only an anonymised derivative (A6)",
                                     qr.training.purpose))
        return errors

    def review_due_on(self) -> date:
        """When the next scheduled review falls due (B13)."""
        return add_months(self.effective_from, self.review.interval_months)


def canonical_sha256(doc: PolicyDocument) -> str:
    """Hash of the canonical JSON form: comments, key order and number formatting don't change it."""
    canonical = json.dumps(doc.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
