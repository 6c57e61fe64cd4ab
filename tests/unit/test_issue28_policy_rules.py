"""Issue 28: consent by the caller's jurisdiction, purpose rules that depend on who asks and on the recording,
general deadlines, representatives, misuse report deadlines and quarterly QA samples, read from the two
example policies (a UK investment firm under FCA COBS 11.8, a US patient line under HIPAA)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from callvault.access.accounting import may_read
from callvault.capture import consent_check
from callvault.capture.metadata import CallMetadata, ConsentEvidence
from callvault.core.errors import AccessDenied, PolicyInvalid
from callvault.policy.decide import Action, Actor, EmergencyFacts, Grant, RecordingFacts, decide
from callvault.policy.loader import load_policy_file, parse_policy_text
from callvault.policy.schema import PolicyDocument
from callvault.quality.sampling import period_containing
from callvault.retention.extension import may_extend, require_extender
from callvault.subject_requests.workdays import Calendar

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
CALL_START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def fca() -> PolicyDocument:
    return load_policy_file(EXAMPLES / "policy-finance-fca.yaml")


@pytest.fixture(scope="module")
def hipaa() -> PolicyDocument:
    return load_policy_file(EXAMPLES / "policy-health-hipaa.yaml")


def _actor(policy: PolicyDocument, role: str, user: str, *, extension: str | None = None) -> Actor:
    return Actor(user_id=user, username=user, role=role, extension=extension,
                 acknowledged_policy_sha256=policy.content_sha256)


def _call(remote: str, *, consent: ConsentEvidence | None = None) -> CallMetadata:
    return CallMetadata(call_id="c1", direction="inbound", started_at=CALL_START,
                        ended_at=CALL_START + timedelta(minutes=4), team="patient_line", remote_number=remote,
                        consent=consent)


ANNOUNCED = ConsentEvidence(announcement_played_at=CALL_START, announcement_version="1")


# ----------------------------------------------------------------------------- consent by jurisdiction
def test_a_californian_caller_who_says_no_is_not_recorded_at_all(hipaa: PolicyDocument) -> None:
    declined = _call("+14155550100", consent=ANNOUNCED.model_copy(update={"caller_opt_in": False}))
    found = consent_check.outcome(hipaa, declined)
    assert (found.action, found.rule) == ("not_stored", "all_party_consent_states")
    assert "declined" in (found.reason or "")


def test_a_californian_caller_with_no_answer_on_record_is_not_stored_under_the_all_party_rule(
        hipaa: PolicyDocument) -> None:
    found = consent_check.outcome(hipaa, _call("+14155550100", consent=ANNOUNCED))
    assert found.action == "not_stored"
    assert "opt-in" in (found.reason or "") and "Cal. Penal Code 632" in (found.reason or "")


def test_a_californian_caller_who_opts_in_is_stored_normally(hipaa: PolicyDocument) -> None:
    yes = _call("+14155550100", consent=ANNOUNCED.model_copy(update={"caller_opt_in": True, "opt_in_at": CALL_START}))
    assert consent_check.outcome(hipaa, yes).action == "ok"
    assert consent_check.quarantine_reason(hipaa, yes) is None


def test_a_caller_from_a_one_party_state_keeps_the_general_announcement_rule(hipaa: PolicyDocument) -> None:
    texas = "+12145550100"
    assert consent_check.place_of(texas) == ("US", "TX")
    assert consent_check.outcome(hipaa, _call(texas, consent=ANNOUNCED)).action == "ok"
    assert consent_check.quarantine_reason(hipaa, _call(texas)) == consent_check.MISSING


def test_a_call_from_abroad_without_evidence_is_stored_flagged_not_quarantined(hipaa: PolicyDocument) -> None:
    london = _call("+442079460000")
    assert consent_check.quarantine_reason(hipaa, london) is None
    assert "outside_the_us" in (consent_check.flag_reason(hipaa, london) or "")


def test_a_uk_client_told_at_onboarding_is_not_quarantined_for_want_of_a_per_call_prompt(
        fca: PolicyDocument) -> None:
    client = _call("+442079460000").model_copy(update={"team": "rates"})
    assert consent_check.outcome(fca, client).action == "ok"
    assert consent_check.quarantine_reason(fca, client) is None


def test_the_shipped_policies_keep_quarantining_calls_without_evidence() -> None:
    for name in ("policy-a.yaml", "policy-b.yaml"):
        policy = load_policy_file(EXAMPLES / name)
        assert policy.consent.jurisdictions == ()
        assert (consent_check.quarantine_reason(policy, _call("+14155550100")) or "").startswith(consent_check.MISSING)


def test_a_place_in_two_jurisdiction_rules_is_refused_when_loaded(hipaa: PolicyDocument) -> None:
    text = (EXAMPLES / "policy-health-hipaa.yaml").read_text(encoding="utf-8").replace(
        "where: [CA, GB, MX]", "where: [CA, GB, US-CA]")
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy_text(text, source="two-rules.yaml")
    assert any("US-CA" in p.message for p in caught.value.problems)


# ------------------------------------------------------------------------------------- purpose rules
TRADER_CALL = RecordingFacts(recording_id="r1", extension="4001", agent="tom", team="rates", direction="outbound")


def _grant(user: str, by_role: str, by: str) -> Grant:
    return Grant(grant_id="g", user_id=user, recording_id="r1", purpose="complaint_investigation",
                 approved_by_role=by_role, approved_by=by)


def test_a_traders_complaint_request_is_approved_by_the_desk_head_not_by_compliance(fca: PolicyDocument) -> None:
    approval = fca.purposes["complaint_investigation"].approval
    assert approval.approvers_for("trader") == ("desk_head",)
    assert approval.approvers_for("desk_head") == ("compliance",)
    trader = _actor(fca, "trader", "tom", extension="4001")
    ok = decide(policy=fca, actor=trader, action=Action.PLAY, recording=TRADER_CALL,
                purpose="complaint_investigation", grants=[_grant("tom", "desk_head", "dana")])
    assert ok.allowed
    wrong = decide(policy=fca, actor=trader, action=Action.PLAY, recording=TRADER_CALL,
                   purpose="complaint_investigation", grants=[_grant("tom", "compliance", "cora")])
    assert not wrong.allowed and "Desk Head" in wrong.reason


def test_a_desk_heads_complaint_request_needs_compliance(fca: PolicyDocument) -> None:
    head = _actor(fca, "desk_head", "dana")
    refused = decide(policy=fca, actor=head, action=Action.PLAY, recording=TRADER_CALL,
                     purpose="complaint_investigation", grants=[_grant("dana", "desk_head", "dave")])
    assert not refused.allowed and "Compliance" in refused.reason
    assert decide(policy=fca, actor=head, action=Action.PLAY, recording=TRADER_CALL, purpose="complaint_investigation",
                  grants=[_grant("dana", "compliance", "cora")]).allowed


def test_an_approved_trader_may_listen_but_not_download_for_a_complaint(fca: PolicyDocument) -> None:
    trader = _actor(fca, "trader", "tom", extension="4001")
    refused = decide(policy=fca, actor=trader, action=Action.DOWNLOAD, recording=TRADER_CALL,
                     purpose="complaint_investigation", grants=[_grant("tom", "desk_head", "dana")])
    assert not refused.allowed and "role_actions" in refused.reason
    head = _actor(fca, "desk_head", "dana")
    assert decide(policy=fca, actor=head, action=Action.DOWNLOAD, recording=TRADER_CALL,
                  purpose="complaint_investigation", grants=[_grant("dana", "compliance", "cora")]).allowed


def test_the_rates_desk_review_reaches_only_the_rates_desks_outbound_calls(fca: PolicyDocument) -> None:
    head = _actor(fca, "desk_head", "dana")
    assert decide(policy=fca, actor=head, action=Action.PLAY, recording=TRADER_CALL,
                  purpose="rates_desk_review").allowed
    fx = RecordingFacts(recording_id="r2", extension="5001", agent="fay", team="fx", direction="outbound")
    refused = decide(policy=fca, actor=head, action=Action.PLAY, recording=fx, purpose="rates_desk_review")
    assert not refused.allowed and "team fx" in refused.reason
    inbound = RecordingFacts(recording_id="r3", extension="4001", agent="tom", team="rates", direction="inbound")
    assert not decide(policy=fca, actor=head, action=Action.PLAY, recording=inbound,
                      purpose="rates_desk_review").allowed


def test_role_actions_may_only_narrow_a_purposes_actions() -> None:
    text = (EXAMPLES / "policy-finance-fca.yaml").read_text(encoding="utf-8").replace(
        "role_actions: {trader: [play, transcript]}", "role_actions: {trader: [play, monitor]}").replace(
        "    roles: [trader, desk_head, compliance]\n", "    roles: [trader, desk_head, compliance]\n"
        "    actions: [play, transcript, download]\n")
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy_text(text, source="wider.yaml")
    assert any("monitor" in p.message for p in caught.value.problems)


def test_a_hipaa_spot_check_is_served_only_the_redacted_copy(hipaa: PolicyDocument) -> None:
    manager = _actor(hipaa, "practice_manager", "pam")
    call = RecordingFacts(recording_id="r1", extension="200", agent="nina", team="patient_line")
    decision = decide(policy=hipaa, actor=manager, action=Action.PLAY, recording=call, purpose="spot_check")
    assert decision.allowed and decision.serves == "redacted"
    assert "redacted" in decision.reason
    from callvault.recordings.service import redacted_only
    refusal = redacted_only("r1", decision)
    assert refusal is not None and "/audio/redacted" in refusal.message
    officer = _actor(hipaa, "privacy_officer", "pia")
    assert decide(policy=hipaa, actor=officer, action=Action.PLAY, recording=call,
                  purpose="legal_claim").serves == "original"


# ---------------------------------------------------------------------------------------- deadlines
def _cal(zone: str) -> Calendar:
    return Calendar(region="X", country="US", subdivision="CA", timezone=zone)


def test_a_patients_access_request_is_due_in_thirty_calendar_days_and_sixty_once_extended(
        hipaa: PolicyDocument) -> None:
    deadline = hipaa.subject_requests.effective_deadline
    received = datetime(2026, 12, 20, 18, 0, tzinfo=UTC)
    due_on, due_at = _cal("America/Los_Angeles").due_by(received, deadline)
    assert due_on == date(2027, 1, 19)             # holidays and weekends count: calendar days
    assert due_at == datetime(2027, 1, 20, 8, 0, tzinfo=UTC)
    assert _cal("America/Los_Angeles").due_by(received, deadline, extended=True)[0] == date(2027, 2, 18)


def test_a_uk_clients_request_is_due_in_one_calendar_month_and_three_once_extended(fca: PolicyDocument) -> None:
    deadline = fca.subject_requests.effective_deadline
    received = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    cal = Calendar(region="UK", country="GB", subdivision="ENG", timezone="Europe/London")
    assert cal.due_by(received, deadline)[0] == date(2026, 2, 28)
    assert cal.due_by(received, deadline, extended=True)[0] == date(2026, 4, 30)


def test_the_seven_working_day_key_keeps_its_meaning() -> None:
    policy = load_policy_file(EXAMPLES / "policy-b.yaml")
    assert policy.subject_requests.deadline is None
    assert policy.subject_requests.effective_deadline.working_days == 7
    assert policy.subject_requests.effective_deadline.describe() == "7 working days"


def test_a_deadline_names_exactly_one_unit() -> None:
    text = (EXAMPLES / "policy-health-hipaa.yaml").read_text(encoding="utf-8").replace(
        "deadline: {calendar_days: 30, extension_days: 30}", "deadline: {calendar_days: 30, calendar_months: 1}")
    with pytest.raises(PolicyInvalid):
        parse_policy_text(text, source="two-units.yaml")


def test_representatives_and_the_breach_report_deadline_are_hipaas(hipaa: PolicyDocument) -> None:
    reps = hipaa.subject_requests.representatives
    assert reps.allowed and "healthcare_power_of_attorney" in reps.proof_kinds
    assert hipaa.misuse.report_deadline_days == 60
    assert load_policy_file(EXAMPLES / "policy-a.yaml").misuse.report_deadline_days is None


def test_a_quarterly_sample_covers_the_calendar_quarter_in_the_rules_zone(fca: PolicyDocument) -> None:
    assert fca.quality_review is not None
    rule = fca.quality_review.sampling
    period = period_containing(datetime(2026, 5, 17, 12, 0, tzinfo=UTC), rule)
    assert period.start == datetime(2026, 3, 31, 23, 0, tzinfo=UTC)   # 1 April 00:00 BST
    assert period.end == datetime(2026, 6, 30, 23, 0, tzinfo=UTC)
    assert rule.teams == ("rates", "equities", "fx") and rule.directions == ("outbound",)


# ------------------------------------------------------------------ the examples' minimum, extension, emergency
def test_an_fca_call_is_kept_five_years_and_compliance_alone_may_extend_it_to_seven(fca: PolicyDocument) -> None:
    rules = fca.retention
    assert rules.minimum_until(CALL_START) == CALL_START.replace(year=2031)
    assert rules.expires_at(CALL_START) == CALL_START.replace(year=2031)
    assert rules.extension_limit(CALL_START) == CALL_START.replace(year=2033)
    assert may_extend(fca, "compliance") and not may_extend(fca, "trader") and not may_extend(fca, "desk_head")
    with pytest.raises(AccessDenied, match=r"only retention.extension.roles \(compliance\)"):
        require_extender(fca, "desk_head")


def _declared(actor: Actor, *, ends_at: datetime) -> EmergencyFacts:
    return EmergencyFacts(declaration_id="d1", user_id=actor.user_id, role=actor.role, ends_at=ends_at)


def test_a_hipaa_nurse_reaches_a_colleagues_call_only_under_a_declaration_and_never_takes_a_copy(
        hipaa: PolicyDocument) -> None:
    nurse = _actor(hipaa, "nurse", "nora", extension="201")
    colleagues = RecordingFacts(recording_id="r1", extension="200", agent="nina", team="patient_line")
    now = CALL_START + timedelta(days=1)
    assert not decide(policy=hipaa, actor=nurse, action=Action.PLAY, recording=colleagues,
                      purpose="self_review", now=now).allowed
    declared = _declared(nurse, ends_at=now + timedelta(minutes=30))
    allowed = decide(policy=hipaa, actor=nurse, action=Action.PLAY, recording=colleagues, purpose=None, now=now,
                     emergency=declared)
    assert allowed.allowed and allowed.emergency_declaration == "d1"
    assert "45 CFR 164.312(a)(2)(ii)" in allowed.clauses
    assert not decide(policy=hipaa, actor=nurse, action=Action.DOWNLOAD, recording=colleagues, purpose=None,
                      now=now, emergency=declared).allowed
    assert not decide(policy=hipaa, actor=nurse, action=Action.PLAY, recording=colleagues, purpose=None,
                      now=now + timedelta(minutes=30), emergency=declared).allowed  # the half hour is over


def test_only_the_hipaa_privacy_officer_reads_a_patients_accounting_of_disclosures(hipaa: PolicyDocument) -> None:
    assert may_read(hipaa, "privacy_officer")
    assert not any(may_read(hipaa, role) for role in ("nurse", "practice_manager", "admin"))
    assert hipaa.emergency_access is not None and hipaa.emergency_access.reviewer_roles == ("privacy_officer",)


def test_an_emergency_declaration_never_opens_a_quarantined_recording(hipaa: PolicyDocument) -> None:
    """Outside tester: a declaration served the original of a recording with no consent evidence on record.
    Quarantine (A5, B2) keeps it out of every use until an administrator resolves it; which call it is
    (metadata) the declaration still shows."""
    nurse = _actor(hipaa, "nurse", "nora", extension="201")
    unconsented = RecordingFacts(recording_id="r2", extension="200", agent="nina", team="patient_line",
                                 quarantined=True)
    now = CALL_START + timedelta(days=1)
    declared = _declared(nurse, ends_at=now + timedelta(minutes=30))
    for action in (Action.PLAY, Action.TRANSCRIPT):
        refused = decide(policy=hipaa, actor=nurse, action=action, recording=unconsented, purpose=None, now=now,
                         emergency=declared)
        assert not refused.allowed and "quarantined" in refused.reason, action
    assert decide(policy=hipaa, actor=nurse, action=Action.VIEW_METADATA, recording=unconsented, purpose=None,
                  now=now, emergency=declared).allowed


def test_what_an_emergency_declaration_serves_is_the_policys_word(hipaa: PolicyDocument) -> None:
    """The HIPAA example says why a nurse in an emergency hears the original (treatment is outside minimum
    necessary, 164.502(b)(2)(i)); a policy may instead serve the redacted copy."""
    assert hipaa.emergency_access is not None and hipaa.emergency_access.serves == "original"
    nurse = _actor(hipaa, "nurse", "nora", extension="201")
    colleagues = RecordingFacts(recording_id="r1", extension="200", agent="nina", team="patient_line")
    now = CALL_START + timedelta(days=1)
    declared = _declared(nurse, ends_at=now + timedelta(minutes=30))
    assert decide(policy=hipaa, actor=nurse, action=Action.PLAY, recording=colleagues, purpose=None, now=now,
                  emergency=declared).serves == "original"
    text = (EXAMPLES / "policy-health-hipaa.yaml").read_text()
    stricter = parse_policy_text(text.replace("  serves: original", "  serves: redacted", 1))
    assert stricter.emergency_access is not None and stricter.emergency_access.serves == "redacted"
    stricter_nurse = _actor(stricter, "nurse", "nora", extension="201")
    assert decide(policy=stricter, actor=stricter_nurse, action=Action.PLAY, recording=colleagues, purpose=None,
                  now=now, emergency=_declared(stricter_nurse, ends_at=now + timedelta(minutes=30))
                  ).serves == "redacted"
