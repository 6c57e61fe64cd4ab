"""Whether a call's consent evidence is evidence at all (A5, B2), checked in one place for every way in.

Upload metadata, PBX imports and SIPREC capture all reach ``reserve_recording`` / the SIPREC finish with a
``CallMetadata``; both ask ``quarantine_reason`` here. Evidence counts only when:

* it exists for the call's direction (inbound: the announcement; outbound: the agent's notice);
* an announcement names a prompt version the policy lists (``consent.inbound_announcement.version`` or
  ``accepted_versions``); evidence without a version is taken as the prompt in force (the recording-control
  API's ``announced`` event carries none);
* its time lies within the call, give or take ``consent.evidence_tolerance_seconds``.

Anything else is stored but quarantined (excluded from normal use, ``decide``) with the reason, which the
administrator resolving the quarantine sees on the recording.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from callvault.capture.metadata import CallMetadata
from callvault.policy.schema import PolicyDocument

MISSING = "no consent evidence: neither an announcement (inbound) nor an agent notice (outbound) was reported"


def _outside(at: datetime, meta: CallMetadata, tolerance: timedelta) -> bool:
    return at < meta.started_at - tolerance or at > meta.ended_at + tolerance


def quarantine_reason(policy: PolicyDocument, meta: CallMetadata) -> str | None:
    """Why this call's recording must be quarantined, or None when its consent evidence holds."""
    if meta.consent_state == "missing" or meta.consent is None:
        return MISSING
    rules = policy.consent
    tolerance = timedelta(seconds=rules.evidence_tolerance_seconds)
    window = (f"the call ran {meta.started_at.isoformat()} to {meta.ended_at.isoformat()} "
              f"(tolerance {rules.evidence_tolerance_seconds} s, consent.evidence_tolerance_seconds)")
    if meta.consent_state == "announcement":
        prompt = rules.inbound_announcement
        version = meta.consent.announcement_version
        if version is not None and version not in prompt.valid_versions:
            return (f"consent.announcement_version {version!r} is not a version of prompt {prompt.prompt_id} "
                    f"the policy lists ({', '.join(repr(v) for v in prompt.valid_versions)})")
        played = meta.consent.announcement_played_at
        if played is not None and _outside(played, meta, tolerance):
            return f"consent.announcement_played_at {played.isoformat()} is outside the call: {window}"
    notice = meta.consent.agent_notice_at
    if meta.consent_state == "agent_notice" and notice is not None and _outside(notice, meta, tolerance):
        return f"consent.agent_notice_at {notice.isoformat()} is outside the call: {window}"
    return None
