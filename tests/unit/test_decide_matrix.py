"""The whole policy matrix, for both example policies: every role, action, scope, purpose, approval and
employee-consent combination, against outcomes worked out from the YAML itself.

The expected outcome is computed by ``expected()`` below straight from the raw YAML (``yaml.safe_load``),
not from callvault's models, so a bug in the schema or in ``decide()`` cannot agree with itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from callvault.policy.decide import (
    Action,
    Actor,
    Grant,
    QualityItemFacts,
    RecordingFacts,
    SubjectMatchFacts,
    decide,
)
from callvault.policy.loader import load_policy_file
from callvault.policy.schema import PURPOSE_VOCABULARY, PolicyDocument

REPO = Path(__file__).resolve().parents[2]
POLICIES = {name: REPO / "examples" / "policies" / f"{name}.yaml" for name in ("policy-a", "policy-b")}
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PURPOSES: tuple[str | None, ...] = (*PURPOSE_VOCABULARY, None, "gossip")
SCOPES = ("own_extension", "other_extension", "own_team_other_extension")
GRANTS = ("none", "valid", "expired", "other_action", "self_approved", "wrong_approver")
CONSENT = (True, False)
REACH = ("none", "sampled", "matched")
"""Whether the recording is in an open QA sample item, or matched to a verified subject request handled by
someone other than its requester: what ``reaches: quality_sample`` / ``matched_request`` purposes need."""
ALL_ACTIONS = ("play", "transcript", "monitor", "download", "export")


@dataclass(frozen=True)
class Case:
    role: str
    action: Action
    scope: str
    purpose: str | None
    grant: str
    consent: bool
    quarantined: bool = False
    reach: str = "none"


def _raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(POLICIES[name].read_text(encoding="utf-8"))
    return data


def expected(raw: dict[str, Any], case: Case) -> bool:
    """What the YAML says, read plainly."""
    role = raw["roles"].get(case.role)
    if role is None:
        return False
    scope = role["content_scope"]
    in_scope = scope == "all" or (scope == "own_extension" and case.scope == "own_extension") or (
        scope == "own_team" and case.scope != "other_extension")
    if case.action == Action.MONITOR:  # live listening: the policy's monitoring section first, then as content
        live = raw.get("monitoring", {})
        if not live.get("enabled") or case.role not in live.get("roles", []):
            return False
        if case.purpose is not None and case.purpose not in live.get("purposes", []):
            return False
    if case.action == Action.VIEW_METADATA:
        return in_scope and (not case.quarantined or bool(role.get("can_administer")))
    if scope == "none" or case.purpose is None:
        return False
    purpose = raw["purposes"].get(case.purpose)
    if purpose is None or case.role not in purpose["roles"] or not in_scope or case.quarantined:
        return False
    if purpose.get("employee_consent_required") and not case.consent:
        return False
    if case.action.value not in purpose.get("actions", ALL_ACTIONS):
        return False
    reaches = purpose.get("reaches", "any_in_scope")
    if reaches == "quality_sample" and (case.reach != "sampled"
                                        or case.role not in raw["quality_review"]["reviewer_roles"]):
        return False
    if reaches == "matched_request" and case.reach != "matched":
        return False
    approval = purpose.get("approval", {})
    if approval.get("required"):
        return case.grant == "valid"
    return True


def build(policy: PolicyDocument, case: Case) -> tuple[Actor, RecordingFacts, tuple[Grant, ...]]:
    actor = Actor(user_id="u-actor", username="actor", role=case.role, extension="2001", team="t1",
                  acknowledged_policy_sha256=policy.content_sha256)
    extension = "2001" if case.scope == "own_extension" else "2002"
    team = "t2" if case.scope == "other_extension" else "t1"
    consents = frozenset({case.purpose}) if case.consent and case.purpose else frozenset()
    recording = RecordingFacts(
        recording_id="r1", extension=extension, agent="agent", team=team, quarantined=case.quarantined,
        employee_consents=consents,
        quality_items=(QualityItemFacts(item_id="i1", open=True),) if case.reach == "sampled" else (),
        subject_matches=(SubjectMatchFacts(request_id="s1"),) if case.reach == "matched" else ())
    rule = policy.purposes.get(case.purpose or "")
    # The role that decides this role's requests (B9: the approver's own goes to the policy's alternates).
    approvers = rule.approval.approvers_for(case.role) if rule else ()
    approver = approvers[0] if approvers else "support_lead"
    action = case.action.value  # a grant names each action it allows: transcript is not play
    base = dict(grant_id="g1", user_id="u-actor", recording_id="r1", purpose=case.purpose or "",
                approved_by_role=approver, actions=frozenset({action}), ends_at=NOW + timedelta(days=1),
                approved_by="u-approver")
    variants: dict[str, dict[str, Any]] = {
        "none": {},
        "valid": base,
        "expired": {**base, "ends_at": NOW - timedelta(seconds=1)},
        "other_action": {**base, "actions": frozenset({"export"} if action != "export" else {"download"})},
        "self_approved": {**base, "approved_by": "u-actor"},
        "wrong_approver": {**base, "approved_by_role": "admin"},
    }
    grants = () if case.grant == "none" else (Grant(**variants[case.grant]),)
    return actor, recording, grants


def _cases(raw: dict[str, Any], action: Action) -> list[Case]:
    out = []
    for role in [*raw["roles"], "stranger"]:
        for scope in SCOPES:
            for purpose in PURPOSES:
                for grant in GRANTS:
                    for consent in CONSENT:
                        for reach in REACH:
                            out.append(Case(role, action, scope, purpose, grant, consent, reach=reach))
        out.append(Case(role, action, "own_extension", "complaint_investigation", "none", True, quarantined=True))
    return out


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("action", list(Action))
def test_every_role_scope_purpose_and_approval_gets_the_outcome_the_yaml_describes(
        policy_name: str, action: Action) -> None:
    raw = _raw(policy_name)
    policy = load_policy_file(POLICIES[policy_name])
    wrong: list[str] = []
    cases = _cases(raw, action)
    for case in cases:
        actor, recording, grants = build(policy, case)
        decision = decide(policy=policy, actor=actor, action=action, recording=recording, purpose=case.purpose,
                          grants=grants, now=NOW)
        if decision.allowed != expected(raw, case):
            wrong.append(f"{case}: decide said {decision.allowed} ({decision.reason})")
        if not decision.reason or (not decision.clauses and decision.allowed):
            wrong.append(f"{case}: no reason or clauses")
    assert not wrong, f"{len(wrong)} of {len(cases)} cases disagree:\n" + "\n".join(wrong[:20])
    assert len(cases) > 1000


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
def test_every_denial_cites_clauses_and_says_what_would_allow_it(policy_name: str) -> None:
    raw = _raw(policy_name)
    policy = load_policy_file(POLICIES[policy_name])
    for case in _cases(raw, Action.PLAY):
        actor, recording, grants = build(policy, case)
        decision = decide(policy=policy, actor=actor, action=Action.PLAY, recording=recording,
                          purpose=case.purpose, grants=grants, now=NOW)
        if decision.allowed:
            assert decision.serves in ("original", "anonymised_derivative")
            continue
        assert decision.clauses, case
        assert decision.serves is None
        if case.grant == "none" and "needs approval" in decision.reason:
            rule = policy.purposes[case.purpose or ""]
            titles = [r.replace("_", " ").title().replace(" Of ", " of ")
                          for r in rule.approval.approvers_for(case.role)]
            assert any(t in decision.reason for t in titles), decision.reason


def test_policy_b_legal_claim_denial_names_the_head_of_customer_success() -> None:
    policy = load_policy_file(POLICIES["policy-b"])
    case = Case("support_lead", Action.PLAY, "other_extension", "legal_claim", "none", True)
    actor, recording, grants = build(policy, case)
    decision = decide(policy=policy, actor=actor, action=Action.PLAY, recording=recording, purpose="legal_claim",
                      grants=grants, now=NOW)
    assert not decision.allowed
    assert "needs approval by Head of Customer Success" in decision.reason
    assert {"B9", "B6"} <= set(decision.clauses)


def test_policy_a_training_serves_only_an_anonymised_copy_and_only_with_consent() -> None:
    policy = load_policy_file(POLICIES["policy-a"])
    with_consent = build(policy, Case("support_lead", Action.PLAY, "other_extension", "training", "none", True))
    without = build(policy, Case("support_lead", Action.PLAY, "other_extension", "training", "none", False))
    yes = decide(policy=policy, actor=with_consent[0], action=Action.PLAY, recording=with_consent[1],
                 purpose="training", now=NOW)
    no = decide(policy=policy, actor=without[0], action=Action.PLAY, recording=without[1], purpose="training",
                now=NOW)
    assert yes.allowed and yes.serves == "anonymised_derivative" and "A6" in yes.clauses
    assert not no.allowed and "consent" in no.reason


def test_a_recording_that_is_not_available_is_never_reached() -> None:
    policy = load_policy_file(POLICIES["policy-a"])
    actor = Actor(user_id="u", username="lead", role="support_lead", acknowledged_policy_sha256=policy.content_sha256)
    for state in ("pending", "destroyed"):
        rec = RecordingFacts(recording_id="r", extension="2001", agent="alice", team="t", state=state)
        assert not decide(policy=policy, actor=actor, action=Action.PLAY, recording=rec, purpose="spot_check").allowed
