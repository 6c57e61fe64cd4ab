"""Which calls are recorded, what the caller is told, and how the agent controls it (A1-A2, A5, A7, A14, B2-B4)."""

from __future__ import annotations

from typing import Annotated, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from callvault.policy.schema.common import (
    _EXTENSION_ITEM,
    Country,
    Direction,
    Identifier,
    RegionId,
    Text,
    _check_country,
    _duplicates,
    _Model,
    _no_duplicates,
)


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
    mandatory: bool = False
    """Every call in scope must be recorded (a regulated firm, e.g. FCA SYSC 10A): a call the PBX/SBC
    records that was refused, failed or never arrived is an incident, reported by
    ``callvault capture reconcile`` (audit entry, misuse recipients, compliance report), not a silent drop."""
    mandatory_clause: str = ""
    """The clause or regulation that makes recording mandatory, cited in the incident."""

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
    accepted_versions: tuple[Text, ...] = ()
    """Earlier recordings of this prompt still accepted as evidence (A5, B2): a prompt is re-recorded over
    time and calls announced with the previous take are not unannounced. ``version`` is always accepted."""

    @property
    def valid_versions(self) -> tuple[str, ...]:
        """Every version consent evidence may name: the current one, then the accepted earlier ones."""
        return (self.version, *(v for v in self.accepted_versions if v != self.version))


def _e164_number(value: str) -> str:
    """A trunk number in E.164, however it was written; ValueError naming the value otherwise."""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(
            f"{value!r} is not a phone number in international form (+<country code> <number>): {exc}"
        ) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{value!r} is not a valid phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


class StandingEvidence(_Model):
    """Consent evidence the deployment vouches for, per route (A5, B2), instead of per call.

    No vendor SBC sends our per-call extension data, but a site knows from its configuration that every
    inbound call on its support numbers passes the IVR that plays announcement version N for S seconds.
    A call matching a rule (inbound, dialled one of ``numbers``) and carrying no evidence of its own is
    stored with evidence of kind ``standing_rule`` that names this rule and the policy version, exactly as
    if the announcement had been reported: played at the call's start, over after ``announcement_seconds``
    (so a call that ends earlier keeps nothing, A14). Outbound calls have no standing rule: the notice is
    the agent's act, reported from their desktop or through the recording-control API.
    """

    id: Identifier
    """Names the rule on every recording it covers and in the compliance report."""
    numbers: tuple[str, ...] = Field(min_length=1)
    """The dialled numbers (E.164) whose inbound calls pass the IVR."""
    direction: Literal["inbound"] = "inbound"
    prompt_version: Text
    """The announcement version the IVR plays; must be one ``consent.inbound_announcement`` accepts."""
    announcement_seconds: int = Field(ge=1, le=600)
    """How long the announcement runs from the call's start: the audio before its end is not kept."""
    clause: Text | None = None
    """The requirement clause the rule rests on (A5, B2), shown with the evidence."""

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        normalised = tuple(_e164_number(v) for v in value)
        dupes = _duplicates(normalised)
        if dupes:
            raise ValueError(f"number listed more than once: {', '.join(dupes)}")
        return normalised

    def covers(self, *, direction: str, local_number: str | None) -> bool:
        """Whether a call (its direction, its E.164 dialled number) passes this rule's IVR."""
        return direction == self.direction and local_number is not None and local_number in self.numbers


ConsentMode = Literal["notice_at_onboarding", "per_call_announcement", "opt_in"]
"""How callers of a jurisdiction consent: told once when they became customers (no per-call prompt, so a call
without per-call evidence is not quarantined), told on every call (the announcement / agent notice), or asked
and answering yes (all-party-consent states): a "no" means nothing of the call is stored."""
WithoutEvidence = Literal["quarantine", "not_stored", "store_flagged"]
"""What happens to a call without the evidence its rule needs: stored but quarantined (excluded from use until
an administrator resolves it), not stored at all (refused and audited), or stored, usable and flagged."""
_PLACE_RE = r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$"


class JurisdictionRule(_Model):
    """Consent for callers of some countries or US/CA states, as their phone number tells (``where``).

    ``where`` lists ISO 3166 codes: a country (``GB``, ``US``) or a subdivision (``US-CA``). A call's place
    comes from the caller's number (the remote party): phonenumbers gives the country; for a US number the
    area code gives the state (``callvault/capture/data/us_area_codes.yaml``). A rule naming the state wins
    over one naming the country; a call no rule covers keeps the policy's general consent rules."""

    id: Identifier
    where: tuple[Annotated[str, StringConstraints(pattern=_PLACE_RE)], ...] = Field(min_length=1)
    mode: ConsentMode
    without_evidence: WithoutEvidence = "quarantine"
    clause: Text | None = None
    """The law or clause the rule rests on (e.g. ``Cal. Penal Code 632``), shown with every decision."""

    @field_validator("where")
    @classmethod
    def _places(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for place in value:
            _check_country(place.split("-")[0])
        return _no_duplicates(value, "place")


class ConsentRules(_Model):
    """How callers are told and may decline (A5, A14, B2, B4)."""

    inbound_announcement: AnnouncementPrompt
    outbound_agent_notice_required: bool = True
    outbound_notice_text: Text | None = None
    caller_may_decline: bool = True
    missing_evidence_action: WithoutEvidence = "quarantine"
    """A call without evidence that no jurisdiction rule covers: ``quarantine`` (both shipped files), ``not_stored``
    or ``store_flagged``."""
    evidence_tolerance_seconds: int = Field(default=5, ge=0, le=300)
    """How far outside the call (before its start, after its end) an announcement or agent-notice time may
    lie and still count (A5, B2): clocks of the telephony system and the recorder differ by a little. Evidence
    outside the call by more, or naming a prompt version the policy does not list, is no evidence: the
    recording is quarantined with the reason."""
    jurisdictions: tuple[JurisdictionRule, ...] = ()
    """Consent rules by the caller's country or state (``JurisdictionRule``); empty: one rule for every caller."""
    standing_evidence: tuple[StandingEvidence, ...] = ()
    """Routes whose every inbound call passes the announcement (``StandingEvidence``); a call no rule
    covers and that reports no evidence of its own stays quarantined."""

    @property
    def standing_numbers(self) -> frozenset[str]:
        """Every number a standing rule names: capture recognises them as the dialled (local) number."""
        return frozenset(n for rule in self.standing_evidence for n in rule.numbers)

    def standing_rule_for(self, *, direction: str, local_number: str | None) -> tuple[int, StandingEvidence] | None:
        """The first standing rule covering this call, with its index, or None."""
        return next(((i, r) for i, r in enumerate(self.standing_evidence)
                     if r.covers(direction=direction, local_number=local_number)), None)

    @model_validator(mode="after")
    def _standing_rules(self) -> ConsentRules:
        # A rule naming a prompt version the policy does not accept would mint evidence consent_check
        # then refuses: every call on the route quarantined. Say so when the policy is loaded instead.
        valid = self.inbound_announcement.valid_versions
        ids: set[str] = set()
        seen: dict[str, str] = {}
        for rule in self.standing_evidence:
            if rule.prompt_version not in valid:
                raise ValueError(f"standing_evidence {rule.id!r}: prompt_version {rule.prompt_version!r} is not a "
                                 f"version of inbound_announcement ({', '.join(repr(v) for v in valid)})")
            if rule.id in ids:
                raise ValueError(f"standing_evidence id {rule.id!r} is used twice")
            ids.add(rule.id)
            for number in rule.numbers:
                if number in seen:
                    raise ValueError(f"number {number} is in standing_evidence {seen[number]!r} and {rule.id!r}: "
                                     "a call's evidence must come from one rule")
                seen[number] = rule.id
        return self

    def jurisdiction_for(self, place: tuple[str, str | None]) -> JurisdictionRule | None:
        """The rule for a caller in ``place`` (country, subdivision or None): the state's rule, else the country's."""
        country, subdivision = place
        if subdivision is not None:
            found = next((r for r in self.jurisdictions if f"{country}-{subdivision}" in r.where), None)
            if found is not None:
                return found
        return next((r for r in self.jurisdictions if country in r.where), None)

    @model_validator(mode="after")
    def _one_rule_per_place(self) -> ConsentRules:
        seen: dict[str, str] = {}
        for rule in self.jurisdictions:
            if rule.mode == "notice_at_onboarding" and rule.without_evidence != "quarantine":
                raise ValueError(f"jurisdiction {rule.id!r}: notice_at_onboarding needs no per-call evidence, so "
                                 "without_evidence has nothing to act on; remove it")
            for place in rule.where:
                if place in seen:
                    raise ValueError(f"{place} is in jurisdictions {seen[place]!r} and {rule.id!r}: a caller's "
                                     "consent must follow one rule")
                seen[place] = rule.id
        return self

    @model_validator(mode="after")
    def _notice_text(self) -> ConsentRules:
        # The agent's UI shows this text; requiring a notice without saying what to say is unenforceable.
        if self.outbound_agent_notice_required and self.outbound_notice_text is None:
            raise ValueError("outbound_notice_text is needed when outbound_agent_notice_required is true")
        return self


# ------------------------------------------------------------------------------------------- controls
class ControlRules(_Model):
    """Recording control (A7, A14, B4): who files the agent's controls, and how long after the call's end the
    recorded agent may still mark it personal.

    Stopping, pausing or marking a call personal is the agent's act *during* the call: the agent on the call
    files it (their own extension), or the telephony/CTI/desktop integration relays it for them (their button
    press, the IVR's announcement) with an account whose role is in ``integration_roles``. A role that merely
    administers the system may not: an administrator or IT person must never wipe a call in progress.

    The sources give no time after the call's end; a policy that names none allows none (0). Within the
    window only the recorded agent may do it, never while the recording is evidence (a case, a legal hold,
    an open access or caller request, a QA item), and every such marking is reported to
    ``misuse.report_to_roles``.
    """

    personal_after_call_minutes: int = Field(default=0, ge=0, le=24 * 60)
    """Minutes after the call's end in which the recorded agent may still mark it personal (0: never)."""
    agent_may: tuple[Literal["pause", "stop", "personal"], ...] = ("pause", "stop", "personal")
    """Which recording controls exist at all (default: all three). A firm that must record every call
    (``recording_scope.mandatory``) names fewer, e.g. ``[]``: traders may not pause, stop or discard a call.
    ``resume`` always exists (it only ends a pause)."""
    integration_roles: tuple[Identifier, ...] = ()
    """Roles of the accounts a telephony/CTI/desktop integration uses to relay the agent's own controls (stop,
    pause, resume, personal) and the call's consent evidence (announced, notified) for any call. Default none:
    only the agent on the call files them. Such a role must reach no content (``content_scope: none``, in no
    purpose, not in ``monitoring.roles``) and must not administer (``can_administer: false``): it relays, it
    never decides or listens."""

    @field_validator("integration_roles")
    @classmethod
    def _unique_roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "role")


