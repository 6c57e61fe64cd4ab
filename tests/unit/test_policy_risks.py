"""What the shipped policy files admit, and `callvault policy check`'s warnings about risky rules (issue 23).

An outside tester's view: the example files are what operators copy, so they must not open access from
anywhere, and the checker must say so, with the YAML location and what to do, when a file does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from callvault.cli.main import app
from callvault.demo.local_policy import LOOPBACK, loopback_variant_text
from callvault.policy.loader import load_policy_file, parse_policy_text
from callvault.policy.risks import policy_risks
from tests.conftest import SHIPPED_POLICY_A, SHIPPED_POLICY_B

OFFICE_PROXY = ("10.20.0.5/32",)


def _with(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _check(path: Path, *args: str, proxies: str = "") -> tuple[int, str]:
    result = CliRunner().invoke(app, ["policy", "check", str(path), *args],
                                env={"CALLVAULT_TRUSTED_PROXIES": proxies, "CALLVAULT_DATA_DIR": str(path.parent)})
    return result.exit_code, result.output


@pytest.mark.parametrize("path", [SHIPPED_POLICY_A, SHIPPED_POLICY_B], ids=["A", "B"])
def test_the_shipped_policies_admit_neither_the_internet_nor_loopback(path: Path) -> None:
    network = load_policy_file(path).network
    for outside in ("203.0.113.7", "8.8.8.8", "2001:db8::1", "127.0.0.1", "::1"):
        assert not network.permits(outside), f"{path.name} admits {outside}"
    assert network.permits("10.20.1.2")


def test_policy_a_ships_with_the_company_device_check_on() -> None:
    assert load_policy_file(SHIPPED_POLICY_A).network.require_device_certificate  # A11: company devices


@pytest.mark.parametrize("path", [SHIPPED_POLICY_A, SHIPPED_POLICY_B], ids=["A", "B"])
def test_the_shipped_policies_raise_no_warning_behind_a_configured_proxy(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert policy_risks(parse_policy_text(text), text, trusted_proxies=OFFICE_PROXY) == []
    code, output = _check(path, "--strict", proxies=OFFICE_PROXY[0])
    assert code == 0, output
    assert "warning" not in output


def test_policy_b_hr_receives_misuse_reports_but_reaches_no_recording() -> None:
    doc = load_policy_file(SHIPPED_POLICY_B)
    assert "hr_manager" in doc.misuse.report_to_roles                      # B12
    assert doc.roles["hr_manager"].content_scope == "none"
    assert [p for p, rule in doc.purposes.items() if "hr_manager" in rule.roles] == []


def test_policy_b_takes_access_requests_from_the_crm() -> None:
    assert load_policy_file(SHIPPED_POLICY_B).integrations.crm.file_access_requests  # B6


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "0.0.0.0/1", "2000::/3"])
def test_policy_check_warns_about_a_network_rule_that_admits_almost_anyone(tmp_path: Path, cidr: str) -> None:
    text = _with(SHIPPED_POLICY_B.read_text(encoding="utf-8"), "    - 10.0.0.0/8", f"    - {cidr}")
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if cidr in row)
    policy = tmp_path / "wide.yaml"
    policy.write_text(text, encoding="utf-8")

    code, output = _check(policy)
    assert code == 0, output                                  # a warning alone does not fail the check
    assert "valid" in output
    assert f"network.allow[0] (line {line})" in output
    assert cidr in output and "office" in output              # says what to do instead

    strict, _ = _check(policy, "--strict")
    assert strict == 1


def test_policy_check_warns_about_loopback_unless_the_proxy_is_trusted(tmp_path: Path) -> None:
    text = _with(SHIPPED_POLICY_B.read_text(encoding="utf-8"), "    - 10.0.0.0/8",
                 "    - 10.0.0.0/8\n    - 127.0.0.0/8")
    policy = tmp_path / "loopback.yaml"
    policy.write_text(text, encoding="utf-8")

    code, output = _check(policy)
    assert code == 0, output
    assert "network.allow[1]" in output and "CALLVAULT_TRUSTED_PROXIES" in output

    code, output = _check(policy, "--strict", proxies="127.0.0.1/32")   # the same-host proxy is trusted
    assert code == 0, output
    assert "warning" not in output


def test_policy_check_warns_that_a_device_check_without_a_trusted_proxy_refuses_everyone(tmp_path: Path) -> None:
    code, output = _check(SHIPPED_POLICY_A)
    assert code == 0, output
    assert "network.require_device_certificate" in output and "CALLVAULT_TRUSTED_PROXIES" in output


def test_policy_check_warns_about_a_content_role_without_mfa(tmp_path: Path) -> None:
    text = SHIPPED_POLICY_B.read_text(encoding="utf-8")
    text = _with(text, "    content_scope: own_extension\n    mfa_required: true",
                 "    content_scope: own_extension\n    mfa_required: false")
    policy = tmp_path / "no-mfa.yaml"
    policy.write_text(text, encoding="utf-8")
    code, output = _check(policy, proxies=OFFICE_PROXY[0])
    assert code == 0, output
    assert "roles.specialist.mfa_required" in output


@pytest.mark.parametrize("path", [SHIPPED_POLICY_A, SHIPPED_POLICY_B], ids=["A", "B"])
def test_the_local_variant_admits_loopback_and_keeps_every_other_rule(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    variant = loopback_variant_text(text, source=path.name)
    shipped, local = parse_policy_text(text), parse_policy_text(variant)
    assert local.network.permits("127.0.0.1") and local.network.permits("::1")
    assert not local.network.require_device_certificate
    assert not local.network.permits("203.0.113.7")
    assert set(LOOPBACK) <= set(local.network.allow)
    assert local.model_dump(exclude={"network"}) == shipped.model_dump(exclude={"network"})
    assert "never load this file in production" in variant.lower()
