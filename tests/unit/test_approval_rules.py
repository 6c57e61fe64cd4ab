"""Approval rules (B6, B9): who approves when the approver role itself asks, and grants that carry exactly
the actions an approver approved (play, transcript, download, export), each refusal saying what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from callvault.core.errors import FieldProblem, PolicyInvalid
from callvault.policy.decide import GRANTABLE_ACTIONS, Action, Actor, Grant, RecordingFacts, decide
from callvault.policy.loader import load_policy_file, parse_policy_text
from callvault.policy.schema import PolicyDocument

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
B_TEXT = (EXAMPLES / "policy-b.yaml").read_text(encoding="utf-8")
@pytest.fixture(scope="module")
def policy_b() -> PolicyDocument:
    return load_policy_file(EXAMPLES / "policy-b.yaml")


def _head(policy: PolicyDocument, user_id: str = "head-1") -> Actor:
    return Actor(user_id=user_id, username="head", role="head_of_customer_success",
                 acknowledged_policy_sha256=policy.content_sha256)


def _lead(policy: PolicyDocument) -> Actor:
    return Actor(user_id="lead-1", username="lead", role="support_lead",
                 acknowledged_policy_sha256=policy.content_sha256)


REC = RecordingFacts(recording_id="rec1", extension="3002", agent="tina", team="customer_success")


def _grant(user_id: str, *, by_role: str, by: str, actions: tuple[str, ...] = GRANTABLE_ACTIONS,
           purpose: str = "legal_claim") -> Grant:
    return Grant(grant_id="g1", user_id=user_id, recording_id="rec1", purpose=purpose, approved_by_role=by_role,
                 approved_by=by, actions=frozenset(actions))


def _problems(text: str) -> list[FieldProblem]:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy_text(text, source="test.yaml")
    return caught.value.problems


def _legal_claim_approval(replacement: str) -> str:
    """Policy B with legal_claim's approval block replaced by ``replacement``."""
    head, rest = B_TEXT.split("\n  legal_claim:\n", 1)
    body, tail = rest.split("\n  subject_access:", 1)
    kept = body[:body.index("    approval:")]
    return f"{head}\n  legal_claim:\n{kept}{replacement}\n  subject_access:{tail}"


# ------------------------------------------------------------------------------ B9: the approver asks
def test_policy_b_routes_the_heads_own_investigation_to_the_hr_manager(policy_b: PolicyDocument) -> None:
    approval = policy_b.purposes["legal_claim"].approval
    assert approval.approvers_for("head_of_customer_success") == ("hr_manager",)
    assert approval.approvers_for("support_lead") == ("head_of_customer_success",)
    for purpose in ("complaint_investigation", "health_safety_crime", "legal_claim"):
        assert policy_b.purposes[purpose].approval.alternate_roles == ("hr_manager",), purpose


def test_the_head_may_use_their_own_legal_claim_once_the_hr_manager_approves(policy_b: PolicyDocument) -> None:
    head = _head(policy_b)
    without = decide(policy=policy_b, actor=head, action=Action.PLAY, recording=REC, purpose="legal_claim")
    assert not without.allowed and "needs approval by Hr Manager" in without.reason
    by_hr = decide(policy=policy_b, actor=head, action=Action.PLAY, recording=REC, purpose="legal_claim",
                   grants=[_grant("head-1", by_role="hr_manager", by="hr-1")])
    assert by_hr.allowed, by_hr.reason


def test_the_heads_own_grant_is_never_enough_nor_one_from_another_head_under_alternate_roles(
        policy_b: PolicyDocument) -> None:
    head = _head(policy_b)
    own = decide(policy=policy_b, actor=head, action=Action.PLAY, recording=REC, purpose="legal_claim",
                 grants=[_grant("head-1", by_role="head_of_customer_success", by="head-1")])
    peer = decide(policy=policy_b, actor=head, action=Action.PLAY, recording=REC, purpose="legal_claim",
                  grants=[_grant("head-1", by_role="head_of_customer_success", by="head-2")])
    assert not own.allowed and not peer.allowed


def test_an_hr_approval_does_not_count_for_a_team_leaders_legal_claim(policy_b: PolicyDocument) -> None:
    d = decide(policy=policy_b, actor=_lead(policy_b), action=Action.PLAY, recording=REC, purpose="legal_claim",
               grants=[_grant("lead-1", by_role="hr_manager", by="hr-1")])
    assert not d.allowed


def test_a_self_authorised_grant_counts_only_where_the_policy_says_so() -> None:
    policy = parse_policy_text(_legal_claim_approval(
        "    approval: {required: true, approver_roles: [head_of_customer_success],\n"
        "               when_requester_is_approver: self_authorise_and_report}"), source="test.yaml")
    head = _head(policy)
    own = _grant("head-1", by_role="head_of_customer_success", by="head-1")
    assert decide(policy=policy, actor=head, action=Action.PLAY, recording=REC, purpose="legal_claim",
                  grants=[own]).allowed
    # Never for someone who does not hold the approver role, even under this rule.
    lead_own = _grant("lead-1", by_role="support_lead", by="lead-1")
    assert not decide(policy=policy, actor=_lead(policy), action=Action.PLAY, recording=REC, purpose="legal_claim",
                      grants=[lead_own]).allowed


def test_another_holder_is_the_default_and_ignores_a_self_approval(policy_b: PolicyDocument) -> None:
    approval = policy_b.purposes["self_review"].approval
    assert approval.when_requester_is_approver == "another_holder"
    assert approval.approvers_for("support_lead") == ("support_lead", "head_of_customer_success")


@pytest.mark.parametrize(("approval", "location", "words"), [
    ("    approval: {required: true, approver_roles: [head_of_customer_success],\n"
     "               when_requester_is_approver: alternate_roles}",
     "purposes.legal_claim.approval", "alternate_roles"),
    ("    approval: {required: true, approver_roles: [head_of_customer_success], alternate_roles: [hr_manager]}",
     "purposes.legal_claim.approval", "when_requester_is_approver"),
    ("    approval: {required: true, approver_roles: [head_of_customer_success],\n"
     "               when_requester_is_approver: alternate_roles, alternate_roles: [executive]}",
     "purposes.legal_claim.approval.alternate_roles[0]", "executive"),
    ("    approval: {required: true, approver_roles: [head_of_customer_success],\n"
     "               when_requester_is_approver: alternate_roles, alternate_roles: [head_of_customer_success]}",
     "purposes.legal_claim.approval", "already an approver"),
    ("    approval: {required: true, approver_roles: [head_of_customer_success],\n"
     "               when_requester_is_approver: ask_the_board}",
     "purposes.legal_claim.approval.when_requester_is_approver", "another_holder"),
])
def test_an_unclear_fallback_approval_is_refused_naming_the_field(approval: str, location: str, words: str) -> None:
    problems = _problems(_legal_claim_approval(approval))
    found = [p for p in problems if p.location == location]
    assert found, [str(p) for p in problems]
    assert words in found[0].message


# ---------------------------------------------------------------------- grants carry approved actions
def test_transcript_is_its_own_grantable_action() -> None:
    assert GRANTABLE_ACTIONS == ("play", "transcript", "download", "export")


def test_a_grant_for_play_and_transcript_refuses_download_saying_where_to_ask(policy_b: PolicyDocument) -> None:
    lead = _lead(policy_b)
    grants = [_grant("lead-1", by_role="head_of_customer_success", by="head-1", actions=("play", "transcript"))]
    answers = {a: decide(policy=policy_b, actor=lead, action=a, recording=REC, purpose="legal_claim", grants=grants)
               for a in (Action.PLAY, Action.TRANSCRIPT, Action.DOWNLOAD, Action.EXPORT)}
    assert answers[Action.PLAY].allowed and answers[Action.TRANSCRIPT].allowed
    download = answers[Action.DOWNLOAD]
    assert not download.allowed and download.request_actions == ("download",)
    assert "allows only play, transcript, not download" in download.reason
    assert "ask for download on the request page: /access/new?recording=rec1&purpose=legal_claim&actions=download" \
        in download.reason
    assert not answers[Action.EXPORT].allowed


def test_a_play_only_grant_refuses_the_transcript(policy_b: PolicyDocument) -> None:
    grants = [_grant("lead-1", by_role="head_of_customer_success", by="head-1", actions=("play",))]
    d = decide(policy=policy_b, actor=_lead(policy_b), action=Action.TRANSCRIPT, recording=REC, purpose="legal_claim",
               grants=grants)
    assert not d.allowed and d.request_actions == ("transcript",)


def test_without_any_grant_the_refusal_links_the_request_form(policy_b: PolicyDocument) -> None:
    d = decide(policy=policy_b, actor=_lead(policy_b), action=Action.DOWNLOAD, recording=REC, purpose="legal_claim")
    assert not d.allowed and d.request_actions == ("download",)
    assert "/access/new?recording=rec1&purpose=legal_claim&actions=download" in d.reason


def test_a_refusal_no_request_could_lift_offers_no_request(policy_b: PolicyDocument) -> None:
    d = decide(policy=policy_b, actor=_lead(policy_b), action=Action.DOWNLOAD, recording=REC, purpose="no_such")
    assert not d.allowed and d.request_actions == ()
