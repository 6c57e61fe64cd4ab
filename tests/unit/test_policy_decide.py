"""decide(): who may reach which recording, why, and under which clauses."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from callvault.policy.decide import (
    Action,
    Actor,
    Grant,
    QualityItemFacts,
    RecordingFacts,
    Scope,
    allowed_purposes,
    decide,
    visible_scope,
)
from callvault.policy.loader import load_policy_file
from callvault.policy.schema import PolicyDocument

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


POLICY_A = load_policy_file(EXAMPLES / "policy-a.yaml")


@pytest.fixture(scope="module")
def policy_a() -> PolicyDocument:
    return POLICY_A


@pytest.fixture(scope="module")
def policy_b() -> PolicyDocument:
    return load_policy_file(EXAMPLES / "policy-b.yaml")


def actor(role: str, *, ext: str | None = None, team: str | None = None,
          ack: PolicyDocument | str | None = POLICY_A, user_id: str = "u1") -> Actor:
    """An actor who acknowledged ``ack`` (a policy, or a content hash; policy A unless told)."""
    sha256 = ack.content_sha256 if isinstance(ack, PolicyDocument) else ack
    return Actor(user_id=user_id, username=f"{role}-user", role=role, extension=ext, team=team,
                 acknowledged_policy_sha256=sha256)


def recording(ext: str = "2001", *, quarantined: bool = False, consents: frozenset[str] = frozenset(),
              rec_id: str = "rec1") -> RecordingFacts:
    return RecordingFacts(recording_id=rec_id, extension=ext, agent="alice", team="customer_support",
                          quarantined=quarantined, employee_consents=consents)


# ------------------------------------------------------------------------------------- scope
def test_specialist_cannot_play_another_extensions_recording(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("specialist", ext="2002"), action=Action.PLAY,
               recording=recording("2001"), purpose="self_review")
    assert not d.allowed
    assert "own extension" in d.reason and "2002" in d.reason
    assert "A9" in d.clauses
    assert d.serves is None


def test_specialist_can_play_own_recording_for_self_review(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("specialist", ext="2001"), action=Action.PLAY,
               recording=recording("2001"), purpose="self_review")
    assert d.allowed
    assert d.serves == "original"
    assert d.purpose == "self_review"


def test_specialist_without_an_extension_on_file_sees_nothing(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("specialist"), action=Action.PLAY,
               recording=recording("2001"), purpose="self_review")
    assert not d.allowed
    assert visible_scope(policy=policy_a, actor=actor("specialist")) == Scope(kind="none")


def test_specialist_metadata_is_limited_to_own_extension_without_a_purpose(policy_a: PolicyDocument) -> None:
    own = decide(policy=policy_a, actor=actor("specialist", ext="2001"), action=Action.VIEW_METADATA,
                 recording=recording("2001"), purpose=None)
    other = decide(policy=policy_a, actor=actor("specialist", ext="2001"), action=Action.VIEW_METADATA,
                   recording=recording("2002"), purpose=None)
    assert own.allowed and own.serves is None
    assert not other.allowed


def test_support_lead_can_spot_check_without_approval(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("support_lead"), action=Action.PLAY,
               recording=recording(), purpose="spot_check")
    assert d.allowed
    assert d.clauses[0] == "A6"


# ----------------------------------------------------------------------------------- purposes
def test_unknown_purpose_is_denied(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("support_lead"), action=Action.PLAY,
               recording=recording(), purpose="curiosity")
    assert not d.allowed
    assert "Unknown purpose 'curiosity'" in d.reason


@pytest.mark.parametrize("purpose", [None, "", "   "])
def test_missing_purpose_is_denied_and_the_reason_lists_usable_purposes(
    policy_a: PolicyDocument, purpose: str | None
) -> None:
    d = decide(policy=policy_a, actor=actor("support_lead"), action=Action.DOWNLOAD,
               recording=recording(), purpose=purpose)
    assert not d.allowed
    assert "Name a purpose" in d.reason and "spot_check" in d.reason
    assert d.purpose is None


@pytest.mark.parametrize("action", [Action.PLAY, Action.DOWNLOAD, Action.EXPORT, Action.TRANSCRIPT])
def test_every_content_action_needs_a_purpose(policy_a: PolicyDocument, action: Action) -> None:
    assert not decide(policy=policy_a, actor=actor("executive"), action=action, recording=recording(),
                      purpose=None).allowed


def test_a_role_not_listed_for_a_purpose_is_denied(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("it_staff"), action=Action.PLAY, recording=recording(),
               purpose="spot_check")
    assert not d.allowed
    assert "'it_staff' may not use purpose 'spot_check'" in d.reason


def test_allowed_purposes_follow_the_policy(policy_a: PolicyDocument) -> None:
    assert allowed_purposes(policy_a, "specialist") == ["complaint_investigation", "self_review"]
    assert allowed_purposes(policy_a, "admin") == []
    assert allowed_purposes(policy_a, "nobody") == []


# -------------------------------------------------------------------------------------- roles
def test_admin_is_denied_content(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("admin"), action=Action.PLAY, recording=recording(),
               purpose="spot_check")
    assert not d.allowed
    assert "no access to recording content" in d.reason
    assert visible_scope(policy=policy_a, actor=actor("admin")).kind == "none"


def test_unknown_role_is_denied(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("intern"), action=Action.VIEW_METADATA, recording=recording(),
               purpose=None)
    assert not d.allowed
    assert "'intern' is not defined" in d.reason


def test_it_staff_see_the_records_but_no_purpose_gives_them_content(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("it_staff"), action=Action.PLAY, recording=recording(),
               purpose="regulatory_compliance")
    assert not d.allowed and "may not use purpose 'regulatory_compliance'" in d.reason
    assert visible_scope(policy=policy_a, actor=actor("it_staff")).kind == "all"


# ---------------------------------------------------------------------------- acknowledgement
@pytest.mark.parametrize("ack", [None, "0" * 64])
def test_unacknowledged_policy_is_denied(policy_a: PolicyDocument, ack: str | None) -> None:
    d = decide(policy=policy_a, actor=actor("support_lead", ack=ack), action=Action.PLAY,
               recording=recording(), purpose="spot_check")
    assert not d.allowed
    assert "acknowledge" in d.reason
    assert d.clauses == ("A10", "B13")
    assert visible_scope(policy=policy_a, actor=actor("support_lead", ack=ack)).kind == "none"


def test_an_acknowledgement_counts_only_for_the_policy_content_it_was_given_for(
        policy_a: PolicyDocument, policy_b: PolicyDocument) -> None:
    """Policies A and B both say version 2026.12; acknowledging one is not acknowledging the other."""
    assert policy_a.version == policy_b.version
    d = decide(policy=policy_b, actor=actor("support_lead", ack=policy_a), action=Action.PLAY,
               recording=recording(), purpose="spot_check")
    assert not d.allowed and "acknowledge" in d.reason


# ----------------------------------------------------------------------------- consent, quarantine
def test_training_without_employee_consent_is_denied(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("support_lead"), action=Action.PLAY, recording=recording(),
               purpose="training")
    assert not d.allowed
    assert "consent" in d.reason
    assert "A6" in d.clauses


def test_training_with_employee_consent_serves_an_anonymised_derivative(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("support_lead"), action=Action.PLAY,
               recording=recording(consents=frozenset({"training"})), purpose="training")
    assert d.allowed
    assert d.serves == "anonymised_derivative"
    assert "anonymised" in d.reason


def test_consent_to_another_purpose_does_not_count_for_training(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("support_lead"), action=Action.PLAY,
               recording=recording(consents=frozenset({"spot_check"})), purpose="training")
    assert not d.allowed


def test_quarantined_recording_is_denied(policy_a: PolicyDocument) -> None:
    d = decide(policy=policy_a, actor=actor("executive"), action=Action.PLAY,
               recording=recording(quarantined=True), purpose="regulatory_compliance")
    assert not d.allowed
    assert "quarantined" in d.reason
    assert "A5" in d.clauses


def test_quarantined_metadata_is_visible_only_to_administrators(policy_a: PolicyDocument) -> None:
    rec = recording(quarantined=True)
    assert decide(policy=policy_a, actor=actor("it_staff"), action=Action.VIEW_METADATA, recording=rec,
                  purpose=None).allowed
    assert not decide(policy=policy_a, actor=actor("support_lead"), action=Action.VIEW_METADATA,
                      recording=rec, purpose=None).allowed


# ------------------------------------------------------------------------- capture outcomes (issue 25)
def test_a_failed_captures_metadata_is_seen_within_scope_as_any_recordings(policy_a: PolicyDocument) -> None:
    failed = replace(recording("2001"), state="failed")
    owner, colleague = actor("specialist", ext="2001"), actor("specialist", ext="2002")
    assert decide(policy=policy_a, actor=owner, action=Action.VIEW_METADATA, recording=failed, purpose=None).allowed
    denied = decide(policy=policy_a, actor=colleague, action=Action.VIEW_METADATA, recording=failed, purpose=None)
    assert not denied.allowed and "own extension" in denied.reason
    hidden = replace(failed, quarantined=True)
    assert not decide(policy=policy_a, actor=owner, action=Action.VIEW_METADATA, recording=hidden,
                      purpose=None).allowed


@pytest.mark.parametrize("action", [Action.PLAY, Action.DOWNLOAD, Action.TRANSCRIPT])
def test_a_failed_capture_reaches_no_content_action(policy_a: PolicyDocument, action: Action) -> None:
    failed = replace(recording("2001"), state="failed")
    d = decide(policy=policy_a, actor=actor("specialist", ext="2001"), action=action, recording=failed,
               purpose="self_review")
    assert not d.allowed and "failed, not available" in d.reason


@pytest.mark.parametrize("state", ["pending", "destroyed"])
def test_pending_and_destroyed_rows_stay_unreachable_even_as_metadata(policy_a: PolicyDocument, state: str) -> None:
    row = replace(recording("2001"), state=state)
    assert not decide(policy=policy_a, actor=actor("executive"), action=Action.VIEW_METADATA, recording=row,
                      purpose=None).allowed


# ---------------------------------------------------------------------------------- approvals
def _grant(*, user_id: str = "u1", recording_id: str = "rec1", purpose: str = "legal_claim",
           by: str = "head_of_customer_success") -> Grant:
    return Grant(grant_id="g1", user_id=user_id, recording_id=recording_id, purpose=purpose,
                 approved_by_role=by)


def test_approval_required_purpose_is_denied_without_a_grant(policy_b: PolicyDocument) -> None:
    d = decide(policy=policy_b, actor=actor("support_lead", ack=policy_b), action=Action.PLAY, recording=recording(),
               purpose="legal_claim")
    assert not d.allowed
    assert "needs approval from head_of_customer_success" in d.reason
    assert {"B6", "B9"} <= set(d.clauses)


def test_approval_required_purpose_is_allowed_with_a_matching_grant(policy_b: PolicyDocument) -> None:
    d = decide(policy=policy_b, actor=actor("support_lead", ack=policy_b), action=Action.PLAY, recording=recording(),
               purpose="legal_claim", grants=[_grant()])
    assert d.allowed
    assert d.serves == "original"


@pytest.mark.parametrize("grant", [
    _grant(by="support_lead"),             # not an approver role for legal claims (B9)
    _grant(user_id="someone-else"),        # granted to another person
    _grant(recording_id="rec2"),           # for another recording
    _grant(purpose="training"),            # for another purpose
])
def test_a_grant_that_does_not_match_is_not_enough(policy_b: PolicyDocument, grant: Grant) -> None:
    d = decide(policy=policy_b, actor=actor("support_lead", ack=policy_b), action=Action.PLAY, recording=recording(),
               purpose="legal_claim", grants=[grant])
    assert not d.allowed


def test_policy_b_qa_reviewer_spot_checks_a_sampled_call_without_a_request(policy_b: PolicyDocument) -> None:
    sampled = replace(recording(), quality_items=(QualityItemFacts(item_id="i1", open=True),))
    d = decide(policy=policy_b, actor=actor("qa_reviewer", ack=policy_b), action=Action.PLAY, recording=sampled,
               purpose="spot_check")
    assert d.allowed


def test_policy_b_team_leader_approves_internal_requests(policy_b: PolicyDocument) -> None:
    specialist = actor("specialist", ack=policy_b, ext="2001")
    denied = decide(policy=policy_b, actor=specialist, action=Action.PLAY, recording=recording("2001"),
                    purpose="self_review")
    granted = decide(policy=policy_b, actor=specialist, action=Action.PLAY, recording=recording("2001"),
                     purpose="self_review", grants=[_grant(purpose="self_review", by="support_lead")])
    assert not denied.allowed and "support_lead" in denied.reason
    assert granted.allowed
