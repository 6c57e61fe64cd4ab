"""What a purpose reaches and what it allows (issue 23: B6/B8 spot checks, B7/B10 subject access, A9/A13 IT
staff and sharing), decided over the two shipped policy files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from callvault.policy.decide import (
    Action,
    Actor,
    QualityItemFacts,
    RecordingFacts,
    SubjectMatchFacts,
    decide,
    offered_purposes,
)
from callvault.policy.loader import load_policy_file
from callvault.policy.schema import PolicyDocument

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
POLICY_A = load_policy_file(EXAMPLES / "policy-a.yaml")
POLICY_B = load_policy_file(EXAMPLES / "policy-b.yaml")

CALL = RecordingFacts(recording_id="rec1", extension="3001", agent="sam", team="customer_success")
SAMPLED = replace(CALL, quality_items=(QualityItemFacts(item_id="item1", sample_id="s1"),))


def person(policy: PolicyDocument, role: str, *, user_id: str = "u-1", username: str = "pat") -> Actor:
    return Actor(user_id=user_id, username=username, role=role, acknowledged_policy_sha256=policy.content_sha256)


# ---------------------------------------------------------------- B6/B8: spot checks reach the QA sample only
@pytest.mark.parametrize("role", ["support_lead", "qa_reviewer", "head_of_customer_success"])
@pytest.mark.parametrize("action", [Action.PLAY, Action.DOWNLOAD, Action.TRANSCRIPT])
def test_policy_b_spot_check_of_a_call_outside_any_qa_sample_is_refused(role: str, action: Action) -> None:
    d = decide(policy=POLICY_B, actor=person(POLICY_B, role), action=action, recording=CALL, purpose="spot_check")
    assert not d.allowed
    assert "QA sample" in d.reason and "access request" in d.reason
    assert "B8" in d.clauses and d.purpose == "spot_check"


@pytest.mark.parametrize("role", ["support_lead", "qa_reviewer", "head_of_customer_success"])
def test_policy_b_reviewer_spot_checks_a_sampled_call_open_or_scored(role: str) -> None:
    scored = replace(CALL, quality_items=(QualityItemFacts(item_id="item1", open=False),))
    for rec in (SAMPLED, scored):
        d = decide(policy=POLICY_B, actor=person(POLICY_B, role), action=Action.PLAY, recording=rec,
                   purpose="spot_check")
        assert d.allowed, d.reason


def test_policy_b_nobody_spot_checks_their_own_sampled_call() -> None:
    lead = person(POLICY_B, "support_lead", username="Sam")  # the call's agent, whatever the case
    d = decide(policy=POLICY_B, actor=lead, action=Action.PLAY, recording=SAMPLED, purpose="spot_check")
    assert not d.allowed and "own calls" in d.reason


def test_policy_a_support_leadership_may_still_spot_check_any_call() -> None:
    rec = replace(CALL, extension="2001", agent="alice", team="customer_support")
    d = decide(policy=POLICY_A, actor=person(POLICY_A, "support_lead"), action=Action.PLAY, recording=rec,
               purpose="spot_check")
    assert d.allowed and "A13" in d.clauses


# ------------------------------------------------------------ B7/B10: subject access reaches matched requests
@pytest.mark.parametrize("policy,role", [(POLICY_A, "support_lead"), (POLICY_B, "support_lead"),
                                         (POLICY_B, "head_of_customer_success")])
def test_subject_access_to_a_recording_no_request_is_matched_to_is_refused(policy: PolicyDocument, role: str) -> None:
    d = decide(policy=policy, actor=person(policy, role), action=Action.DOWNLOAD, recording=CALL,
               purpose="subject_access")
    assert not d.allowed and "matched to a verified request" in d.reason
    assert {"B7", "B10"} <= set(d.clauses)


@pytest.mark.parametrize("policy", [POLICY_A, POLICY_B])
def test_subject_access_reaches_a_recording_matched_to_a_request_being_handled(policy: PolicyDocument) -> None:
    rec = replace(CALL, subject_matches=(SubjectMatchFacts(request_id="sr1"),))
    for action in (Action.PLAY, Action.EXPORT, Action.DOWNLOAD):
        d = decide(policy=policy, actor=person(policy, "support_lead"), action=action, recording=rec,
                   purpose="subject_access")
        assert d.allowed, (action, d.reason)


def test_an_operator_cannot_handle_their_own_request_through_subject_access() -> None:
    rec = replace(CALL, subject_matches=(SubjectMatchFacts(request_id="sr1", requester_user_id="u-1"),))
    d = decide(policy=POLICY_B, actor=person(POLICY_B, "support_lead", user_id="u-1"), action=Action.PLAY,
               recording=rec, purpose="subject_access")
    assert not d.allowed and "your own request" in d.reason
    other = decide(policy=POLICY_B, actor=person(POLICY_B, "support_lead", user_id="u-2"), action=Action.PLAY,
                   recording=rec, purpose="subject_access")
    assert other.allowed


def test_a_released_request_reaches_its_recordings_only_for_the_person_who_released_it() -> None:
    rec = replace(CALL, subject_matches=(SubjectMatchFacts(request_id="sr1", released_by="u-releaser"),))
    releaser = person(POLICY_B, "support_lead", user_id="u-releaser")
    colleague = person(POLICY_B, "support_lead", user_id="u-2")
    assert decide(policy=POLICY_B, actor=releaser, action=Action.DOWNLOAD, recording=rec,
                  purpose="subject_access").allowed
    assert not decide(policy=POLICY_B, actor=colleague, action=Action.DOWNLOAD, recording=rec,
                      purpose="subject_access").allowed


# ------------------------------------------------------------------- A9/A13: IT staff, listening vs sharing
@pytest.mark.parametrize("purpose", ["health_safety_crime", "regulatory_compliance"])
@pytest.mark.parametrize("action", [Action.PLAY, Action.DOWNLOAD])
def test_policy_a_it_staff_hear_and_receive_no_content(purpose: str, action: Action) -> None:
    d = decide(policy=POLICY_A, actor=person(POLICY_A, "it_staff"), action=action,
               recording=replace(CALL, extension="2001"), purpose=purpose)
    assert not d.allowed and "'it_staff' may not use purpose" in d.reason


def test_policy_a_it_staff_still_see_call_records() -> None:
    d = decide(policy=POLICY_A, actor=person(POLICY_A, "it_staff"), action=Action.VIEW_METADATA,
               recording=replace(CALL, extension="2001"), purpose=None)
    assert d.allowed


@pytest.mark.parametrize("purpose", ["regulatory_compliance"])
def test_policy_a_a_purpose_outside_a13s_sharing_list_plays_but_does_not_download(purpose: str) -> None:
    exec_ = person(POLICY_A, "executive")
    rec = replace(CALL, extension="2001")
    assert decide(policy=POLICY_A, actor=exec_, action=Action.PLAY, recording=rec, purpose=purpose).allowed
    d = decide(policy=POLICY_A, actor=exec_, action=Action.DOWNLOAD, recording=rec, purpose=purpose)
    assert not d.allowed
    assert "allows listening" in d.reason
    assert "complaint_investigation, spot_check, health_safety_crime" in d.reason
    assert "A13" in d.clauses


@pytest.mark.parametrize("purpose", ["complaint_investigation", "spot_check", "health_safety_crime"])
def test_policy_a_the_three_sharing_purposes_may_download(purpose: str) -> None:
    d = decide(policy=POLICY_A, actor=person(POLICY_A, "support_lead"), action=Action.DOWNLOAD,
               recording=replace(CALL, extension="2001"), purpose=purpose)
    assert d.allowed, d.reason


def test_policy_a_specialist_listens_to_own_call_but_cannot_download_it() -> None:
    alice = Actor(user_id="u-a", username="alice", role="specialist", extension="2001",
                  acknowledged_policy_sha256=POLICY_A.content_sha256)
    rec = replace(CALL, extension="2001", agent="alice")
    assert decide(policy=POLICY_A, actor=alice, action=Action.PLAY, recording=rec, purpose="self_review").allowed
    assert not decide(policy=POLICY_A, actor=alice, action=Action.DOWNLOAD, recording=rec,
                      purpose="self_review").allowed


# ------------------------------------------------------------------------------------- pickers offer reach
def test_the_purposes_offered_for_an_unsampled_call_leave_out_spot_check_and_subject_access() -> None:
    lead = person(POLICY_B, "support_lead")
    assert "spot_check" not in offered_purposes(POLICY_B, lead, CALL)
    assert "subject_access" not in offered_purposes(POLICY_B, lead, CALL)
    assert "spot_check" in offered_purposes(POLICY_B, lead, SAMPLED)
    assert "legal_claim" in offered_purposes(POLICY_B, lead, CALL)  # needs approval: offered, decided on use


# ------------------------------------------------------------------------------------------ the schema rules
def _b_with(**purpose_changes: object) -> dict[str, object]:
    data = POLICY_B.model_dump(mode="json")
    data["purposes"]["spot_check"].update(purpose_changes)
    return data


def test_a_purpose_reaching_quality_samples_needs_a_quality_review_section() -> None:
    data = _b_with()
    data["quality_review"] = None
    with pytest.raises(ValidationError) as err:
        PolicyDocument.model_validate(data)
    assert "purposes.spot_check.reaches" in str(err.value).replace("\n", " ").replace(" ", ".")
    assert "no quality_review section" in str(err.value)


def test_a_purpose_reaching_quality_samples_must_name_only_reviewer_roles() -> None:
    with pytest.raises(ValidationError) as err:
        PolicyDocument.model_validate(_b_with(roles=["qa_reviewer", "hr_manager"]))
    assert "'hr_manager' is not one of quality_review.reviewer_roles" in str(err.value)


@pytest.mark.parametrize("changes,message", [
    ({"reaches": "everything"}, "any_in_scope"),
    ({"actions": []}, "at least one action"),
    ({"actions": ["play", "play"]}, "listed more than once"),
    ({"actions": ["listen"]}, "play"),
])
def test_bad_reach_or_actions_are_refused_with_the_field_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        PolicyDocument.model_validate(_b_with(**changes))
    assert message in str(err.value) and "spot_check" in str(err.value)


def test_a_monitoring_purpose_must_allow_live_listening() -> None:
    data = POLICY_A.model_dump(mode="json")
    data["purposes"]["regulatory_compliance"]["actions"] = ["play"]
    with pytest.raises(ValidationError) as err:
        PolicyDocument.model_validate(data)
    assert "monitoring.purposes" in str(err.value) and "regulatory_compliance" in str(err.value)


def test_files_without_the_new_keys_keep_their_meaning() -> None:
    data = POLICY_B.model_dump(mode="json")
    for rule in data["purposes"].values():
        rule.pop("reaches"), rule.pop("actions")
    loose = PolicyDocument.model_validate(data)
    assert all(r.reaches == "any_in_scope" for r in loose.purposes.values())
    assert all("download" in r.actions for r in loose.purposes.values())
