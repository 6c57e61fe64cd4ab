"""Whether a call's consent evidence is evidence at all (A5, B2), checked in one place for every way in.

Upload metadata, PBX imports and SIPREC capture all reach ``reserve_recording`` / the SIPREC finish with a
``CallMetadata``; both ask ``quarantine_reason`` here. Evidence counts only when:

* it exists for the call's direction (inbound: the announcement; outbound: the agent's notice);
* an announcement names a prompt version the policy lists (``consent.inbound_announcement.version`` or
  ``accepted_versions``); an announcement that names no version is no evidence of what the caller heard
  (every way in carries one: metadata ``consent.announcement_version``, SIPREC ``announcement-version``, PBX
  ``cv_announcement=<version>``, the control API's ``announced`` ``version``, a standing rule's
  ``prompt_version``);
* its time lies within the call, give or take ``consent.evidence_tolerance_seconds``.

A call that reports no evidence of its own may be covered by a standing rule of the policy
(``consent.standing_evidence``: every inbound call on these numbers passes the IVR playing prompt version N
for S seconds). ``standing_evidence`` mints that evidence; it is then checked like any announcement, and
its ``announcement_ended_at`` makes admission cut the announcement off or keep nothing of a call that ended
during it (A14), as for reported evidence. Evidence the call does report always wins over a rule.

Anything else is stored but quarantined (excluded from normal use, ``decide``) with the reason, which the
administrator resolving the quarantine sees on the recording.

**By jurisdiction** (``consent.jurisdictions``): the caller's place comes from their number (the remote
party): phonenumbers gives the country, and for a US number the area code gives the state
(``data/us_area_codes.yaml``, data). The rule for that state, else for that country, says what counts:
``notice_at_onboarding`` needs no per-call evidence (never quarantined); ``per_call_announcement`` is the
check above; ``opt_in`` needs the caller's yes (``consent.caller_opt_in``), and a no stores nothing. A call
without the evidence its rule needs gets the rule's ``without_evidence`` (``quarantine``, ``not_stored`` -
refused at admission and audited - or ``store_flagged``: stored, usable, flagged with the reason); a call no
rule covers gets ``consent.missing_evidence_action``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import phonenumbers
import yaml

from callvault.capture.metadata import CallMetadata, ConsentEvidence
from callvault.policy.schema import JurisdictionRule, PolicyDocument

AREA_CODES = Path(__file__).with_name("data") / "us_area_codes.yaml"


@functools.lru_cache(maxsize=1)
def _us_area_codes() -> dict[str, str]:
    loaded = yaml.safe_load(AREA_CODES.read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in loaded.items()}


def place_of(number: str | None) -> tuple[str, str | None] | None:
    """The caller's country and, for a US number, state (``("US", "CA")``), from an E.164 number; None when
    the number is missing or belongs to no country."""
    if not number:
        return None
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    # An unassigned or fictional range (Ofcom's 07700 900xxx) still tells the country by its country code.
    country = phonenumbers.region_code_for_number(parsed) or phonenumbers.region_code_for_country_code(
        parsed.country_code or 0)
    if not country or country == "ZZ":
        return None
    if country == "US":
        return country, _us_area_codes().get(str(parsed.national_number)[:3])
    return country, None


def jurisdiction_of(policy: PolicyDocument, meta: CallMetadata) -> JurisdictionRule | None:
    """The ``consent.jurisdictions`` rule for this call's caller, or None (the general rules apply)."""
    if not policy.consent.jurisdictions:
        return None
    place = place_of(meta.remote_number)
    return policy.consent.jurisdiction_for(place) if place is not None else None


Outcome = Literal["ok", "quarantine", "not_stored", "store_flagged"]


@dataclass(frozen=True)
class ConsentOutcome:
    """What the policy does with this call's consent evidence, and why (None when it holds)."""

    action: Outcome
    reason: str | None = None
    rule: str | None = None
    """The jurisdiction rule applied, if any."""


def outcome(policy: PolicyDocument, meta: CallMetadata) -> ConsentOutcome:
    """The consent decision for a call: stored plainly, quarantined, not stored, or stored and flagged."""
    rule = jurisdiction_of(policy, meta)
    if rule is None:
        reason = _evidence_problem(policy, meta)
        return ConsentOutcome("ok") if reason is None else ConsentOutcome(policy.consent.missing_evidence_action,
                                                                          reason)
    cited = f"consent.jurisdictions {rule.id!r}" + (f" ({rule.clause})" if rule.clause else "")
    if rule.mode == "notice_at_onboarding":
        return ConsentOutcome("ok", rule=rule.id)
    if rule.mode == "opt_in":
        answer = meta.consent.caller_opt_in if meta.consent is not None else None
        if answer is False:
            return ConsentOutcome("not_stored", f"the caller declined to be recorded; {cited} needs their "
                                                "opt-in, so nothing of the call is kept", rule.id)
        if answer is None:
            return ConsentOutcome(rule.without_evidence, f"no opt-in from the caller was recorded, and {cited} "
                                                         "needs the caller's explicit yes", rule.id)
        return ConsentOutcome("ok", rule=rule.id)
    reason = _evidence_problem(policy, meta)
    if reason is None:
        return ConsentOutcome("ok", rule=rule.id)
    return ConsentOutcome(rule.without_evidence, f"{reason} ({cited})", rule.id)

MISSING = "no consent evidence: neither an announcement (inbound) nor an agent notice (outbound) was reported"


def standing_evidence(policy: PolicyDocument, meta: CallMetadata) -> ConsentEvidence | None:
    """Evidence of kind ``standing_rule`` for a call without evidence of its own that a rule covers, else None.

    The announcement is taken as played from the call's start for the rule's ``announcement_seconds``
    (the IVR answers the call before anyone else does). The evidence names the rule and the policy version
    and hash it comes from, so a later change of the IVR's configuration does not rewrite what an
    earlier call rests on.
    """
    if meta.consent_state != "missing":
        return None
    found = policy.consent.standing_rule_for(direction=meta.direction, local_number=meta.local_number)
    if found is None:
        return None
    _, rule = found
    return ConsentEvidence(
        announcement_played_at=meta.started_at, announcement_version=rule.prompt_version,
        announcement_ended_at=meta.started_at + timedelta(seconds=rule.announcement_seconds),
        source="standing_rule", rule=rule.id, policy=f"{policy.policy_id}@{policy.version}",
        policy_sha256=policy.content_sha256,
    )


def _outside(at: datetime, meta: CallMetadata, tolerance: timedelta) -> bool:
    return at < meta.started_at - tolerance or at > meta.ended_at + tolerance


def quarantine_reason(policy: PolicyDocument, meta: CallMetadata) -> str | None:
    """Why this call's recording must be quarantined, or None when it is not (its evidence holds, or the policy
    stores it flagged; a call the policy does not store at all was refused at admission)."""
    found = outcome(policy, meta)
    return found.reason if found.action == "quarantine" else None


def flag_reason(policy: PolicyDocument, meta: CallMetadata) -> str | None:
    """Why this call is stored flagged (``without_evidence: store_flagged``), else None."""
    found = outcome(policy, meta)
    return found.reason if found.action == "store_flagged" else None


def _evidence_problem(policy: PolicyDocument, meta: CallMetadata) -> str | None:
    """What is wrong with this call's per-call evidence (announcement or agent notice), or None."""
    if meta.consent_state == "missing" or meta.consent is None:
        if meta.direction == "inbound" and policy.consent.standing_evidence:
            return (f"{MISSING}, and no consent.standing_evidence rule covers inbound calls to "
                    f"{meta.local_number or '(no dialled number known)'}")
        return MISSING
    rules = policy.consent
    tolerance = timedelta(seconds=rules.evidence_tolerance_seconds)
    window = (f"the call ran {meta.started_at.isoformat()} to {meta.ended_at.isoformat()} "
              f"(tolerance {rules.evidence_tolerance_seconds} s, consent.evidence_tolerance_seconds)")
    if meta.consent_state == "announcement":
        prompt = rules.inbound_announcement
        version = meta.consent.announcement_version
        listed = ", ".join(repr(v) for v in prompt.valid_versions)
        if version is None or not version.strip():
            return (f"the announcement evidence names no announcement version (consent.announcement_version), so "
                    f"nothing says the caller heard prompt {prompt.prompt_id}; the policy lists {listed}")
        if version not in prompt.valid_versions:
            return (f"consent.announcement_version {version!r} is not a version of prompt {prompt.prompt_id} "
                    f"the policy lists ({listed})")
        played = meta.consent.announcement_played_at
        if played is not None and _outside(played, meta, tolerance):
            return f"consent.announcement_played_at {played.isoformat()} is outside the call: {window}"
    notice = meta.consent.agent_notice_at
    if meta.consent_state == "agent_notice" and notice is not None and _outside(notice, meta, tolerance):
        return f"consent.agent_notice_at {notice.isoformat()} is outside the call: {window}"
    return None
