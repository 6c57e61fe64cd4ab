"""Policy files: the two example policies load, and broken files are refused with a location and line."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from callvault.core.errors import FieldProblem, PolicyInvalid
from callvault.policy.loader import load_policy_file, parse_policy_text, policy_sha256, policy_to_json
from callvault.policy.schema import PURPOSE_VOCABULARY, ROLE_VOCABULARY, PolicyDocument, add_months

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
POLICY_A = EXAMPLES / "policy-a.yaml"
POLICY_B = EXAMPLES / "policy-b.yaml"


def _problems(text: str) -> list[FieldProblem]:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy_text(text, source="test.yaml")
    return caught.value.problems


def _problem_at(problems: list[FieldProblem], location: str) -> FieldProblem:
    matches = [p for p in problems if p.location == location]
    assert matches, f"no problem at {location}; got {[str(p) for p in problems]}"
    return matches[0]


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def _a_text() -> str:
    return POLICY_A.read_text(encoding="utf-8")


def _with(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# ------------------------------------------------------------------------------------- the examples
def test_policy_a_loads_with_its_six_month_retention_and_private_line() -> None:
    doc = load_policy_file(POLICY_A)
    assert doc.policy_id == "smartsimple-support"
    assert doc.retention.max_age_months == 6
    assert doc.retention.destroy_on_case_resolution is True
    assert doc.recording_scope.extension_excluded("2099")
    assert doc.purposes["training"].serves == "anonymised_derivative"
    assert doc.purposes["training"].employee_consent_required is True
    assert doc.roles["admin"].content_scope == "none"
    assert doc.notice.objection_contact is not None
    assert doc.notice.objection_contact.email is None


def test_policy_b_loads_with_normalised_trunk_numbers_and_seven_working_days() -> None:
    doc = load_policy_file(POLICY_B)
    numbers = {t.number: t.region for t in doc.recording_scope.trunk_numbers}
    assert numbers == {"+61281979000": "AU-NZ", "+442036953777": "UK-EU-NA"}
    assert doc.subject_requests.deadline_working_days == 7
    assert doc.retention.max_age_months == 12
    assert doc.review.interval_months == 24
    assert set(doc.misuse.report_to_roles) == {"head_of_customer_success", "hr_manager"}
    assert doc.purposes["legal_claim"].approval.approver_roles == ("head_of_customer_success",)


def test_example_policies_use_only_the_shared_vocabulary() -> None:
    for path in (POLICY_A, POLICY_B):
        doc = load_policy_file(path)
        assert set(doc.roles) <= set(ROLE_VOCABULARY)
        assert set(doc.purposes) <= set(PURPOSE_VOCABULARY)


def test_policy_hash_ignores_comments_and_key_order_but_not_content() -> None:
    text = _a_text()
    doc = parse_policy_text(text)
    reordered = yaml.safe_dump(dict(reversed(list(yaml.safe_load(text).items()))), sort_keys=False)
    assert policy_sha256(parse_policy_text(reordered)) == policy_sha256(doc)
    changed = parse_policy_text(_with(text, "max_age_months: 6", "max_age_months: 5"))
    assert policy_sha256(changed) != policy_sha256(doc)


def test_effective_policy_json_lists_purposes_with_their_approvers() -> None:
    data = policy_to_json(load_policy_file(POLICY_B))
    assert data["effective_from"] == "2024-01-01"
    assert data["purposes"]["legal_claim"]["approval"] == {
        "required": True, "approver_roles": ["head_of_customer_success"],
        "when_requester_is_approver": "alternate_roles", "alternate_roles": ["hr_manager"],
        "approver_roles_by_requester": {},  # issue 28: none in policy B, every requester goes to the same role
    }


def test_retention_cap_counts_calendar_months_and_never_rounds_up() -> None:
    doc = load_policy_file(POLICY_A)
    started = datetime(2024, 8, 31, 9, 30, tzinfo=UTC)
    assert doc.retention.expires_at(started) == datetime(2025, 2, 28, 9, 30, tzinfo=UTC)
    assert add_months(date(2024, 1, 15), 24) == date(2026, 1, 15)


def test_recording_scope_refuses_private_lines_other_extensions_and_unknown_numbers() -> None:
    a = load_policy_file(POLICY_A).recording_scope
    assert a.check(direction="inbound", team="customer_support", extension="2001", trunk_number=None).in_scope
    private = a.check(direction="inbound", team="customer_support", extension="2099", trunk_number=None)
    assert not private.in_scope and private.clauses == ("A8",)
    other = a.check(direction="inbound", team="customer_support", extension="3001", trunk_number=None)
    assert not other.in_scope
    assert not a.check(direction="outbound", team="sales", extension="2001", trunk_number=None).in_scope
    b = load_policy_file(POLICY_B).recording_scope
    assert b.check(direction="inbound", team="sales", extension="17", trunk_number="+442036953777").in_scope
    unknown = b.check(direction="inbound", team="sales", extension="17", trunk_number="+442000000000")
    assert not unknown.in_scope and unknown.clauses == ("B3",)


def test_network_rule_admits_only_listed_networks() -> None:
    net = load_policy_file(POLICY_A).network
    assert net.permits("10.20.3.4")
    assert not net.permits("127.0.0.1") and not net.permits("::1")  # A11: the office network only
    assert not net.permits("8.8.8.8")
    assert not net.permits("not-an-address")


# ------------------------------------------------------------------------------------ refused files
def test_an_unknown_key_is_rejected_naming_its_location_and_line() -> None:
    text = _with(_a_text(), "    content_scope: own_extension",
                 "    content_scope: own_extension\n    colour: blue")
    problem = _problem_at(_problems(text), "roles.specialist.colour")
    assert "unknown key" in problem.message
    assert problem.line == _line_of(text, "colour: blue")


def test_an_unknown_top_level_key_is_rejected() -> None:
    problem = _problem_at(_problems(_a_text() + "\nretension: {max_age_months: 1}\n"), "retension")
    assert "unknown key" in problem.message


def test_a_purpose_naming_an_unknown_role_is_rejected_at_that_role() -> None:
    text = _with(_a_text(), "roles: [executive, support_lead]\n    employee_consent_required",
                 "roles: [executive, team_boss]\n    employee_consent_required")
    problem = _problem_at(_problems(text), "purposes.training.roles[1]")
    assert "team_boss" in problem.message and "support_lead" in problem.message
    assert problem.line == _line_of(text, "team_boss")


def test_an_approval_with_no_approver_is_rejected() -> None:
    text = _with(_a_text(), "    roles: [executive, support_lead]\n  health_safety_crime",
                 "    roles: [executive, support_lead]\n"
                 "    approval: {required: true}\n  health_safety_crime")
    problem = _problem_at(_problems(text), "purposes.spot_check.approval")
    assert "approver" in problem.message


def test_an_approver_role_that_does_not_exist_is_rejected() -> None:
    text = _with(_a_text(), "    roles: [executive, support_lead]\n  health_safety_crime",
                 "    roles: [executive, support_lead]\n"
                 "    approval: {required: true, approver_roles: [director]}\n  health_safety_crime")
    _problem_at(_problems(text), "purposes.spot_check.approval.approver_roles[0]")


def test_a_purpose_open_to_a_role_without_content_access_is_rejected() -> None:
    text = _with(_a_text(), "roles: [executive, support_lead]\n  health_safety_crime",
                 "roles: [executive, admin]\n  health_safety_crime")
    problem = _problem_at(_problems(text), "purposes.spot_check.roles[1]")
    assert "content_scope none" in problem.message


def test_a_bad_cidr_is_rejected_with_its_location_and_line() -> None:
    text = _with(_a_text(), "    - 10.20.0.0/16", "    - 10.20.0.300/16")
    problem = _problem_at(_problems(text), "network.allow[0]")
    assert "CIDR" in problem.message
    assert problem.line == _line_of(text, "10.20.0.300/16")


def test_a_cidr_with_host_bits_is_rejected_rather_than_widened() -> None:
    text = _with(_a_text(), "    - 10.20.0.0/16", "    - 10.20.0.1/16")
    _problem_at(_problems(text), "network.allow[0]")


def test_a_bad_phone_number_is_rejected_with_its_location() -> None:
    text = POLICY_B.read_text(encoding="utf-8")
    text = _with(text, "number: +61 2 8197 9000", "number: +61 2 8197")
    problem = _problem_at(_problems(text), "recording_scope.trunk_numbers[0].number")
    assert "not a valid phone number" in problem.message
    assert problem.line == _line_of(text, "number: +61 2 8197")


def test_a_phone_number_without_country_code_is_rejected() -> None:
    text = _with(POLICY_B.read_text(encoding="utf-8"), "number: +44 20 3695 3777", "number: 020 3695 3777")
    problem = _problem_at(_problems(text), "recording_scope.trunk_numbers[1].number")
    assert "international form" in problem.message


def test_shipped_policies_declare_standing_ivr_evidence_for_their_inbound_numbers() -> None:
    a = load_policy_file(POLICY_A).consent
    assert a.standing_rule_for(direction="inbound", local_number="+16135550150") is not None
    assert a.standing_rule_for(direction="outbound", local_number="+16135550150") is None
    b = load_policy_file(POLICY_B).consent
    for number in ("+61281979000", "+442036953777"):
        found = b.standing_rule_for(direction="inbound", local_number=number)
        assert found is not None and found[1].prompt_version == "1" and found[1].clause == "B2"


def test_a_standing_rule_on_a_number_the_policy_does_not_record_is_rejected_with_its_location() -> None:
    text = _with(POLICY_B.read_text(encoding="utf-8"), '"+44 20 3695 3777"]', '"+44 20 3695 3778"]')
    problem = _problem_at(_problems(text), "consent.standing_evidence[0].numbers[1]")
    assert "not among recording_scope.trunk_numbers" in problem.message


def test_a_standing_rule_naming_a_prompt_version_the_policy_does_not_accept_is_rejected() -> None:
    text = _with(POLICY_B.read_text(encoding="utf-8"), 'prompt_version: "1"', 'prompt_version: "2"')
    problems = _problems(text)
    assert any("prompt_version '2' is not a version of inbound_announcement" in p.message for p in problems)


def test_a_standing_rule_number_must_be_international() -> None:
    text = _with(_a_text(), '["+1 613 555 0150"]', '["613 555 0150"]')
    problem = _problem_at(_problems(text), "consent.standing_evidence[0].numbers")
    assert "international form" in problem.message


def test_an_unquoted_version_number_is_rejected_with_advice_to_quote_it() -> None:
    text = _with(_a_text(), 'version: "2026.12"', "version: 2026.12")
    problem = _problem_at(_problems(text), "version")
    assert "quotes" in problem.message


def test_a_missing_section_is_named() -> None:
    data = yaml.safe_load(_a_text())
    del data["retention"]
    problem = _problem_at(_problems(yaml.safe_dump(data)), "retention")
    assert "missing" in problem.message


def test_a_yaml_syntax_error_gives_a_line() -> None:
    text = _with(_a_text(), "  it_staff:\n", "  it_staff: [unclosed\n")
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].line is not None
    assert "YAML syntax error" in problems[0].message


def test_a_duplicate_key_is_rejected_instead_of_silently_overriding() -> None:
    text = _a_text() + "\nacknowledgement_required: false\n"
    problem = _problem_at(_problems(text), "acknowledgement_required")
    assert "more than once" in problem.message
    assert problem.line == len(text.splitlines())


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "42\n"])
def test_a_document_that_is_not_a_mapping_is_rejected(text: str) -> None:
    assert "mapping" in _problems(text)[0].message


def test_all_problems_are_reported_at_once() -> None:
    text = _with(_a_text(), "    - 10.20.0.0/16", "    - nonsense")
    text = _with(text, "max_age_months: 6", "max_age_months: 0")
    locations = {p.location for p in _problems(text)}
    assert {"network.allow[0]", "retention.max_age_months"} <= locations


def test_the_error_message_lists_every_problem_for_the_cli() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy_text(_with(_a_text(), "    - 10.20.0.0/16", "    - nonsense"), source="a.yaml")
    assert caught.value.message.startswith("Policy a.yaml is invalid:")
    assert "network.allow[0] (line" in caught.value.message


def test_a_missing_file_is_reported_without_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid, match="does not exist"):
        load_policy_file(tmp_path / "nope.yaml")


def test_a_directory_is_not_a_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid, match="directory"):
        load_policy_file(tmp_path)


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"policy_id: caf\xe9\n")
    with pytest.raises(PolicyInvalid, match="not UTF-8"):
        load_policy_file(path)


def test_policy_models_are_frozen() -> None:
    doc = load_policy_file(POLICY_A)
    with pytest.raises(ValueError, match="frozen"):
        doc.version = "2"  # type: ignore[misc]
    assert isinstance(doc, PolicyDocument)


# ------------------------------------------------------------------------------------- live monitoring
def test_policy_a_offers_live_monitoring_to_leadership_for_its_listed_reasons_and_b_does_not() -> None:
    a = load_policy_file(POLICY_A).monitoring
    assert a.enabled and set(a.roles) == {"executive", "support_lead"}
    assert a.default_purpose == "spot_check" and "training" not in a.purposes  # caller anonymity cannot hold live
    assert a.notify_agent and a.parties == "both"
    assert not load_policy_file(POLICY_B).monitoring.enabled


def test_monitoring_with_a_purpose_a_live_call_cannot_satisfy_is_refused_at_its_line() -> None:
    text = _with(_a_text(), "purposes: [spot_check, complaint_investigation,", "purposes: [spot_check, training,")
    problem = _problem_at(_problems(text), "monitoring.purposes[1]")
    assert "anonymised copy" in problem.message
    assert problem.line == _line_of(text, "purposes: [spot_check, training,")


def test_monitoring_naming_an_unknown_role_or_purpose_is_refused() -> None:
    text = _with(_a_text(), "roles: [executive, support_lead]\n  purposes: [spot_check",
                 "roles: [executive, supervisor]\n  purposes: [spot_check, gossip")
    problems = _problems(text)
    assert "unknown role 'supervisor'" in _problem_at(problems, "monitoring.roles[1]").message
    assert "unknown purpose 'gossip'" in _problem_at(problems, "monitoring.purposes[1]").message


def test_monitoring_enabled_without_roles_is_refused() -> None:
    text = _with(_a_text(), "roles: [executive, support_lead]\n  purposes: [spot_check",
                 "roles: []\n  purposes: [spot_check")
    assert any("names no roles" in p.message for p in _problems(text))


def test_both_policies_let_the_agent_mark_a_call_personal_for_a_short_site_chosen_time_after_it() -> None:
    for path in (POLICY_A, POLICY_B):
        text = path.read_text(encoding="utf-8")
        assert load_policy_file(path).controls.personal_after_call_minutes == 15
        comment = text[:text.index("personal_after_call_minutes")].rsplit("controls:", 1)[0].rsplit("\n\n", 1)[-1]
        assert "site choice" in comment and "not in the source" in comment, path.name


def test_a_policy_without_a_window_allows_no_marking_after_the_call_and_a_negative_one_is_refused() -> None:
    text = _with(_a_text(), "  personal_after_call_minutes: 15\n", "")
    text = _with(text, "  integration_roles: [telephony_integration]\n", "")
    assert parse_policy_text(_with(text, "controls:\n", ""), source="a").controls.personal_after_call_minutes == 0
    problems = _problems(_with(_a_text(), "personal_after_call_minutes: 15", "personal_after_call_minutes: -5"))
    assert _problem_at(problems, "controls.personal_after_call_minutes").line == _line_of(
        _a_text(), "personal_after_call_minutes")


# ------------------------------------------------ who relays the agent's controls (issue 23, finding 6)
def test_both_policies_let_only_a_content_free_integration_role_relay_the_agents_controls() -> None:
    for path in (POLICY_A, POLICY_B):
        doc = load_policy_file(path)
        assert doc.controls.integration_roles == ("telephony_integration",), path.name
        rule = doc.roles["telephony_integration"]
        assert rule.content_scope == "none" and not rule.can_administer, path.name
        text = path.read_text(encoding="utf-8")
        comment = text[:text.index("  integration_roles:")].rsplit("personal_after_call_minutes", 1)[-1]
        assert "site choice" in comment and "not in the source" in comment, path.name


def test_a_policy_naming_no_integration_role_has_none() -> None:
    text = _with(_a_text(), "  integration_roles: [telephony_integration]\n", "")
    assert parse_policy_text(text, source="a").controls.integration_roles == ()


def test_an_integration_role_must_exist() -> None:
    text = _with(_a_text(), "integration_roles: [telephony_integration]", "integration_roles: [pbx_bot]")
    problem = _problem_at(_problems(text), "controls.integration_roles[0]")
    assert "unknown role 'pbx_bot'" in problem.message
    assert problem.line == _line_of(text, "integration_roles: [pbx_bot]")


@pytest.mark.parametrize(("role", "why"), [("it_staff", "content_scope all"), ("admin", "can administer"),
                                           ("support_lead", "content_scope all")])
def test_an_integration_role_with_content_or_administration_is_refused(role: str, why: str) -> None:
    text = _with(_a_text(), "integration_roles: [telephony_integration]", f"integration_roles: [{role}]")
    problem = _problem_at(_problems(text), "controls.integration_roles[0]")
    assert why in problem.message and "content_scope: none" in problem.message and "A14" in problem.message


def test_an_integration_role_in_monitoring_is_refused() -> None:
    text = _with(_a_text(), "roles: [executive, support_lead]\n  purposes: [spot_check",
                 "roles: [executive, telephony_integration]\n  purposes: [spot_check")
    problem = _problem_at(_problems(text), "controls.integration_roles[0]")
    assert "monitoring.roles" in problem.message


def test_an_integration_role_named_twice_is_refused() -> None:
    text = _with(_a_text(), "integration_roles: [telephony_integration]",
                 "integration_roles: [telephony_integration, telephony_integration]")
    assert any(p.location.startswith("controls.integration_roles") for p in _problems(text))
