"""Settings for the SIPREC server started by ``callvault serve``: off by default, checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from callvault.capture.siprec.service import siprec_settings
from callvault.core.errors import ConfigurationError
from callvault.core.settings import load_settings


def test_not_configured_means_not_started(tmp_path: Path) -> None:
    assert siprec_settings(load_settings(tmp_path, env={})) is None


def test_environment_turns_it_on_and_becomes_the_capture_command_line(tmp_path: Path) -> None:
    cert = tmp_path / "srs.pem"
    cert.write_text("x")
    settings = load_settings(tmp_path, env={"CALLVAULT_SIPREC_LISTEN": "0.0.0.0:5060",
                                            "CALLVAULT_SIPREC_TLS_PORT": "5061", "CALLVAULT_SIPREC_CERT": str(cert),
                                            "CALLVAULT_SIPREC_PROCESSES": "4",
                                            "CALLVAULT_SIPREC_RTP_PORTS": "20000-30000"})
    config = siprec_settings(settings)
    assert config is not None
    assert config.cli_args(tmp_path) == [
        "capture", "siprec", "--listen", "0.0.0.0:5060", "--processes", "4", "--data-dir", str(tmp_path),
        "--tls-port", "5061", "--cert", str(cert), "--rtp-ports", "20000-30000"]


def test_config_file_table_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[siprec]\nlisten = "127.0.0.1:5070"\nprocesses = 2\n')
    config = siprec_settings(load_settings(tmp_path, env={"CALLVAULT_SIPREC_PROCESSES": "3"}))
    assert config is not None and (config.listen, config.processes) == ("127.0.0.1:5070", 3)


@pytest.mark.parametrize(("env", "named"), [
    ({"CALLVAULT_SIPREC_TLS_PORT": "70000"}, "CALLVAULT_SIPREC_TLS_PORT"),
    ({"CALLVAULT_SIPREC_PROCESSES": "zero"}, "CALLVAULT_SIPREC_PROCESSES"),
    ({"CALLVAULT_SIPREC_CERT": "/nonexistent/srs.pem"}, "CALLVAULT_SIPREC_CERT"),
    ({"CALLVAULT_SIPREC_TAP_CERT": "/nonexistent/tap.pem"}, "CALLVAULT_SIPREC_TAP_CERT"),
])
def test_bad_values_stop_serve_with_the_variable_named(tmp_path: Path, env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        siprec_settings(load_settings(tmp_path, env={"CALLVAULT_SIPREC_LISTEN": "127.0.0.1:5060", **env}))
    assert named in str(info.value)


def test_the_live_monitoring_tap_is_passed_on(tmp_path: Path) -> None:
    config = siprec_settings(load_settings(tmp_path, env={"CALLVAULT_SIPREC_LISTEN": "127.0.0.1:5060",
                                                          "CALLVAULT_SIPREC_TAP": "127.0.0.1:5080"}))
    assert config is not None and config.cli_args(tmp_path)[-2:] == ["--tap", "127.0.0.1:5080"]


def test_the_taps_certificate_and_key_are_passed_on(tmp_path: Path) -> None:
    cert, key = tmp_path / "tap.pem", tmp_path / "tap.key"
    cert.write_text("x")
    key.write_text("x")
    config = siprec_settings(load_settings(tmp_path, env={
        "CALLVAULT_SIPREC_LISTEN": "127.0.0.1:5060", "CALLVAULT_SIPREC_TAP": "10.1.2.3:5080",
        "CALLVAULT_SIPREC_TAP_CERT": str(cert), "CALLVAULT_SIPREC_TAP_KEY": str(key)}))
    assert config is not None and config.cli_args(tmp_path)[-6:] == [
        "--tap", "10.1.2.3:5080", "--tap-cert", str(cert), "--tap-key", str(key)]
