"""Whether a call's consent evidence is evidence at all (A5, B2), checked in one place for every way in.

Upload metadata, PBX imports and SIPREC capture all reach ``reserve_recording`` / the SIPREC finish with a
``CallMetadata``; both ask ``quarantine_reason`` here. Evidence counts only when:

* it exists for the call's direction (inbound: the announcement; outbound: the agent's notice);
* an announcement names a prompt version the policy lists (``consent.inbound_announcement.version`` or
  ``accepted_versions``); evidence without a version is taken as the prompt in force (the recording-control
  API's ``announced`` event carries none);
* its time lies within the call, give or take ``consent.evidence_tolerance_seconds``.

A call that reports no evidence of its own may be covered by a standing rule of the policy
(``consent.standing_evidence``: every inbound call on these numbers passes the IVR playing prompt version N
for S seconds). ``standing_evidence`` mints that evidence; it is then checked like any announcement, and
its ``announcement_ended_at`` makes admission cut the announcement off or keep nothing of a call that ended
during it (A14), as for reported evidence. Evidence the call does report always wins over a rule.

Anything else is stored but quarantined (excluded from normal use, ``decide``) with the reason, which the
administrator resolving the quarantine sees on the recording.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from callvault.capture.metadata import CallMetadata, ConsentEvidence
from callvault.policy.schema import PolicyDocument

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
    """Why this call's recording must be quarantined, or None when its consent evidence holds."""
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
