"""OIDC settings are checked at start-up, and the claim rules (role mapping, MFA proof) are plain functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from callvault.core.errors import ConfigurationError
from callvault.core.settings import OidcSettings, load_settings
from callvault.identity.oidc import idp_proved_mfa, mapped_role

BASE = {"CALLVAULT_OIDC_ISSUER": "https://id.example.com/realms/office/", "CALLVAULT_OIDC_CLIENT_ID": "cv",
        "CALLVAULT_OIDC_CLIENT_SECRET": "s3cret"}


def test_no_issuer_means_no_sso(tmp_path: Path) -> None:
    assert load_settings(tmp_path, env={}).oidc is None


def test_a_full_configuration_is_read_from_the_environment(tmp_path: Path) -> None:
    oidc = load_settings(tmp_path, env={
        **BASE, "CALLVAULT_OIDC_ROLE_MAP": "cv-leads=support_lead, cv-agents=specialist",
        "CALLVAULT_OIDC_MFA_AMR": "mfa,hwk", "CALLVAULT_OIDC_PROVISIONING": "JIT"}).oidc
    assert oidc is not None
    assert oidc.issuer == "https://id.example.com/realms/office"  # trailing slash dropped, as providers do
    assert oidc.role_map == (("cv-leads", "support_lead"), ("cv-agents", "specialist"))
    assert oidc.mfa_amr == ("mfa", "hwk") and oidc.provisioning == "jit"
    assert "s3cret" not in repr(oidc)


def test_the_role_map_may_be_a_toml_table_and_keeps_its_order(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('oidc_issuer = "https://id.example.com"\noidc_client_id = "cv"\n'
                                          '[oidc_role_map]\ncv-admins = "it_staff"\ncv-agents = "specialist"\n')
    oidc = load_settings(tmp_path, env={"CALLVAULT_OIDC_CLIENT_SECRET": "x"}).oidc
    assert oidc is not None and oidc.role_map == (("cv-admins", "it_staff"), ("cv-agents", "specialist"))


@pytest.mark.parametrize(("env", "message"), [
    ({**BASE, "CALLVAULT_OIDC_ISSUER": "http://id.example.com"}, "must be an https:// URL"),
    ({k: v for k, v in BASE.items() if k != "CALLVAULT_OIDC_CLIENT_SECRET"}, "CALLVAULT_OIDC_CLIENT_SECRET"),
    ({**BASE, "CALLVAULT_OIDC_ROLE_MAP": "cv-leads"}, "is not CLAIM_VALUE=ROLE"),
    ({**BASE, "CALLVAULT_OIDC_PROVISIONING": "always"}, "CALLVAULT_OIDC_PROVISIONING"),
    ({**BASE, "CALLVAULT_JSON_LOGS": "maybe"}, "CALLVAULT_JSON_LOGS must be true or false"),
])
def test_a_bad_configuration_fails_naming_the_variable(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(tmp_path, env=env)


def test_plain_http_is_allowed_only_for_a_provider_on_loopback(tmp_path: Path) -> None:
    oidc = load_settings(tmp_path, env={**BASE, "CALLVAULT_OIDC_ISSUER": "http://127.0.0.1:9000"}).oidc
    assert oidc is not None and oidc.issuer == "http://127.0.0.1:9000"


SETTINGS = OidcSettings(issuer="https://id.example.com", client_id="cv", client_secret="x",
                        role_map=(("cv-admins", "it_staff"), ("cv-agents", "specialist")), mfa_acr=("urn:mfa",))


@pytest.mark.parametrize(("claims", "role"), [
    ({"groups": ["cv-agents", "cv-admins"]}, "it_staff"),  # the map's order decides, not the token's
    ({"roles": "cv-agents"}, "specialist"),
    ({"groups": ["marketing"]}, None),
    ({}, None),
])
def test_the_first_mapping_the_token_carries_wins(claims: dict[str, object], role: str | None) -> None:
    assert mapped_role(SETTINGS, claims) == role


def test_without_a_map_no_claim_names_a_role() -> None:
    """Issue 24: a provider-side claim must not pick a callvault role unless the administrator mapped it."""
    plain = OidcSettings(issuer="https://id.example.com", client_id="cv", client_secret="x")
    assert mapped_role(plain, {"roles": ["executive"]}) is None
    assert mapped_role(plain, {"groups": ["support_lead"]}) is None


@pytest.mark.parametrize(("claims", "proved"), [
    ({"amr": ["pwd", "mfa"]}, True),
    ({"amr": ["pwd"]}, False),
    ({"amr": "mfa"}, True),
    ({"acr": "urn:mfa"}, True),
    ({"acr": "urn:password"}, False),
    ({}, False),
])
def test_mfa_is_proved_only_by_accepted_amr_or_acr(claims: dict[str, object], proved: bool) -> None:
    assert idp_proved_mfa(SETTINGS, claims) is proved
