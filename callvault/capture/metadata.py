"""Call metadata as it arrives from telephony (JSON), validated before anything is stored.

The contract is documented in the README ("Metadata JSON"). Every problem names its field, so the
person fixing the export knows where to look.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from callvault.core.errors import FieldProblem, InvalidInput
from callvault.core.instants import instant_problem

CALL_ID_RE = re.compile(r"^[A-Za-z0-9._:@+=/-]{1,200}$")
EXTENSION_RE = re.compile(r"^[0-9*#]{1,16}$")
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ConsentEvidence(BaseModel):
    """What the caller was told (A5, B2): the announcement for inbound, the agent's notice for outbound."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    announcement_played_at: datetime | None = None
    announcement_version: str | None = None
    announcement_ended_at: datetime | None = None
    """When the announcement finished (A14): nothing before it is kept; a call that ended earlier keeps nothing."""
    agent_notice_at: datetime | None = None
    caller_opt_in: bool | None = None
    """The caller's answer where their jurisdiction needs explicit opt-in (``consent.jurisdictions`` mode
    ``opt_in``): true (yes, recorded), false (no: nothing of the call is stored), absent (not asked)."""
    opt_in_at: datetime | None = None
    """When the caller answered."""
    source: Literal["control_api", "standing_rule"] | None = None
    """Where the evidence came from when not from the call's own metadata: events filed through the
    recording-control API, or a standing rule of the policy (``consent.standing_evidence``). Set by the
    server only; metadata naming it is refused (``SERVER_ONLY_CONSENT``)."""
    rule: str | None = None
    """The standing rule's id (``source == "standing_rule"``)."""
    policy: str | None = None
    """``policy_id@version`` whose standing rule vouched for the call: the configuration it rests on."""
    policy_sha256: str | None = None
    """That policy version's content hash, so the evidence names the exact configuration."""

    @field_validator("announcement_played_at", "announcement_ended_at", "agent_notice_at", "opt_in_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a UTC offset, e.g. 2026-11-23T14:05:00-05:00")
        if value is not None and (problem := instant_problem(value)):
            raise ValueError(problem)
        return value


class CallMetadata(BaseModel):
    """One call's metadata. Phone numbers are normalised to E.164."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    call_id: str
    direction: Literal["inbound", "outbound"]
    started_at: datetime
    ended_at: datetime
    extension: str | None = None
    agent: str | None = None
    team: str | None = None
    remote_number: str | None = None
    local_number: str | None = None
    consent: ConsentEvidence | None = None
    case_ref: str | None = None
    crm_ref: str | None = None

    @field_validator("call_id")
    @classmethod
    def _call_id(cls, value: str) -> str:
        if not CALL_ID_RE.match(value):
            raise ValueError("must be 1-200 characters of letters, digits and . _ : @ + = / -")
        return value

    @field_validator("started_at", "ended_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must include a UTC offset, e.g. 2026-11-23T14:05:00-05:00")
        if problem := instant_problem(value):  # year 1 with +14:00 has no UTC; year 9999 no retention end
            raise ValueError(problem)
        return value

    @field_validator("extension")
    @classmethod
    def _extension(cls, value: str | None) -> str | None:
        if value is not None and not EXTENSION_RE.match(value):
            raise ValueError("must be 1-16 digits")
        return value

    @field_validator("agent", "team")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_RE.match(value):
            raise ValueError("must be 1-64 characters of letters, digits, '.', '_' or '-'")
        return value.lower() if value is not None else None

    @field_validator("case_ref", "crm_ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if (value is not None and not (0 < len(value) <= 100)) or (value is not None and not value.isprintable()):
            raise ValueError("must be 1-100 printable characters")
        return value

    @model_validator(mode="after")
    def _times_in_order(self) -> CallMetadata:
        if self.ended_at.astimezone(UTC) < self.started_at.astimezone(UTC):
            raise ValueError("ended_at is before started_at")
        return self

    @property
    def consent_source(self) -> str:
        """Where the call's consent evidence came from: ``metadata`` (the telephony system reported it for
        this call), ``control_api``, ``standing_rule``, or ``none`` (no evidence: quarantined)."""
        if self.consent_state == "missing" or self.consent is None:
            return "none"
        return self.consent.source or "metadata"

    @property
    def consent_state(self) -> str:
        """``announcement``, ``agent_notice`` or ``missing`` — which evidence this call carries."""
        if self.consent is None:
            return "missing"
        if self.direction == "inbound" and self.consent.announcement_played_at is not None:
            return "announcement"
        if self.direction == "outbound" and self.consent.agent_notice_at is not None:
            return "agent_notice"
        return "missing"


SERVER_ONLY_CONSENT = ("source", "rule", "policy", "policy_sha256")
"""Consent fields only callvault writes: metadata claiming a standing rule would bypass the policy."""


def normalise_number(value: str, default_region: str) -> str:
    """E.164 form of a phone number, or ValueError with a message a person can act on."""
    try:
        parsed = phonenumbers.parse(value, None if value.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not a phone number ({exc})") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"{value!r} is not a possible phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(metadata)"


def _huge_number_field(raw: bytes | str) -> str | None:
    """The field whose value is a number too long to read (``"extension": 5555…``), so the refusal names it."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    match = re.search(r'"([A-Za-z_]{1,40})"\s*:\s*-?[0-9]{4300,}', text)
    return match.group(1) if match else None


def parse_metadata(raw: bytes | str | dict[str, Any], *, default_region: str) -> CallMetadata:
    """Parse and validate metadata JSON; raise InvalidInput naming every bad field.

    Why the extra ``except`` clauses: the JSON decoder raises ``RecursionError`` for arrays or objects
    nested a few thousand deep, and a plain ``ValueError`` for a number of more than 4,300 digits (Python's
    integer-conversion limit); both were HTTP 500s before (issue 24).
    """
    if isinstance(raw, bytes | str):
        try:
            data = json.loads(raw)
        except RecursionError as exc:
            raise InvalidInput("metadata is not valid JSON:", [FieldProblem(
                "metadata", "nested too deeply (call metadata is an object of plain fields)")]) from exc
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an integer of thousands of digits
            raise InvalidInput(f"metadata is not valid JSON: {exc}",
                               [FieldProblem(_huge_number_field(raw) or "metadata", f"not valid JSON: {exc}")]) \
                from exc
    else:
        data = raw
    if not isinstance(data, dict):
        raise InvalidInput("metadata must be a JSON object", [FieldProblem("metadata", "must be a JSON object")])
    problems: list[FieldProblem] = []
    consent = data.get("consent")
    if isinstance(consent, dict):
        problems.extend(FieldProblem(f"consent.{key}", "set by callvault from the policy or the control API, "
                                     "never taken from metadata") for key in SERVER_ONLY_CONSENT if key in consent)
    numbers = {}
    for field in ("remote_number", "local_number"):
        value = data.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(FieldProblem(field, "must be a string"))
            continue
        try:
            numbers[field] = normalise_number(value, default_region)
        except ValueError as exc:
            problems.append(FieldProblem(field, str(exc)))
    try:
        meta = CallMetadata.model_validate({**data, **numbers})
    except ValidationError as exc:
        for err in exc.errors():
            loc = _location(err["loc"])
            if loc in ("remote_number", "local_number") and any(p.location == loc for p in problems):
                continue
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling; see the README's metadata format)"
            problems.append(FieldProblem(loc, msg))
        raise InvalidInput("metadata is invalid:", problems) from exc
    if problems:
        raise InvalidInput("metadata is invalid:", problems)
    return meta
