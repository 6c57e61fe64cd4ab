"""The command line as an operator uses it: init, policy, users, ingest (file and folder), audit."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from callvault.cli.main import app
from callvault.recordings.models import Recording
from tests.conftest import POLICY_A, POLICY_B
from tests.support.audio import metadata, wav_bytes
from tests.support.env import CallvaultEnv


def run(env: CallvaultEnv, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)
    return result.exit_code, result.output


def test_init_creates_a_private_key_file_and_loads_the_policy(env: CallvaultEnv) -> None:
    keys = [p for p in (env.data_dir / "keys").iterdir() if p.suffix == ".kek"]
    assert len(keys) == 1
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600
    code, output = run(env, "policy", "show", "--json")
    assert code == 0
    shown = json.loads(output)
    assert shown["policy"]["policy_id"] == "smartsimple-support"
    assert "training" in shown["policy"]["purposes"]


def test_policy_check_accepts_both_example_policies() -> None:
    for policy in (POLICY_A, POLICY_B):
        result = CliRunner().invoke(app, ["policy", "check", str(policy)])
        assert result.exit_code == 0, result.output
        assert "valid" in result.output


def test_policy_check_reports_every_error_with_its_location(tmp_path: Path) -> None:
    broken = POLICY_A.read_text().replace("content_scope: own_extension", "content_scope: everything")
    broken = broken.replace("acknowledgement_required:", "acknowledgment_requierd:")
    bad = tmp_path / "bad.yaml"
    bad.write_text(broken)
    result = CliRunner().invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 2
    assert "content_scope" in result.output
    assert "acknowledgment_requierd" in result.output
    assert "line" in result.output
    assert "Traceback" not in result.output


def test_policy_check_shows_who_files_recording_controls_and_refuses_an_integration_role_with_content(
        tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["policy", "check", str(POLICY_A)])
    assert result.exit_code == 0, result.output
    assert "telephony_integration (controls.integration_roles)" in result.output
    assert "administering roles may not" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY_A.read_text().replace("integration_roles: [telephony_integration]",
                                                "integration_roles: [it_staff]"))
    result = CliRunner().invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 2, result.output
    assert "controls.integration_roles" in result.output and "content_scope all" in result.output
    assert "can administer" in result.output


def test_policy_check_on_a_missing_or_non_yaml_file_is_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(b"\xff\xfe{{{:")
    for path in (tmp_path / "missing.yaml", garbage):
        result = CliRunner().invoke(app, ["policy", "check", str(path)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output


def test_users_add_creates_an_account_that_can_sign_in(env: CallvaultEnv, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("a-long-enough-password\n")
    code, output = run(env, "users", "add", "carol", "--role", "specialist", "--extension", "2004",
                       "--team", "customer_support", "--password-file", str(pw))
    assert code == 0, output
    code, output = run(env, "users", "add", "dora", "--role", "wizard", "--password-file", str(pw))
    assert code == 2
    assert "wizard" in output and "specialist" in output


def test_ingest_a_file_prints_its_id_and_rejects_bad_metadata(env: CallvaultEnv, tmp_path: Path) -> None:
    audio = tmp_path / "call.wav"
    audio.write_bytes(wav_bytes(1.0))
    meta = tmp_path / "call.json"
    meta.write_text(json.dumps(metadata(call_id="cli-1")))
    code, output = run(env, "ingest", str(audio), "--metadata", str(meta))
    assert code == 0, output
    rec_id = output.strip().splitlines()[0]
    with env.runtime.db.unit_of_work() as session:
        assert session.get(Recording, rec_id) is not None
    meta.write_text(json.dumps(metadata(call_id="cli-2", direction="upward")))
    code, output = run(env, "ingest", str(audio), "--metadata", str(meta))
    assert code == 2
    assert "direction" in output


def test_ingest_a_folder_imports_pairs_and_reports_failures(env: CallvaultEnv, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    for i in range(4):
        (folder / f"call{i}.wav").write_bytes(wav_bytes(0.5, seed=40 + i))
        (folder / f"call{i}.json").write_text(json.dumps(metadata(call_id=f"folder-{i}")))
    (folder / "broken.wav").write_bytes(b"not audio")
    (folder / "broken.json").write_text(json.dumps(metadata(call_id="folder-broken")))
    (folder / "orphan.wav").write_bytes(wav_bytes(0.5))
    code, output = run(env, "ingest", str(folder))
    assert code == 2
    assert "4 new" in output and "2 failed" in output
    assert "broken.wav" in output and "orphan.wav" in output
    with env.runtime.db.unit_of_work() as session:
        stored = session.scalar(select(func.count()).select_from(Recording).where(
            Recording.call_id.like("folder-%")))
    assert stored == 4
    code, output = run(env, "ingest", str(folder))  # rerun: nothing new, nothing duplicated
    assert "0 new, 4 already stored" in output


def test_audit_verify_and_check_pass_on_a_healthy_install(env: CallvaultEnv) -> None:
    assert run(env, "audit", "verify")[0] == 0
    code, output = run(env, "check", "--deep")
    assert code == 0, output


def test_commands_on_a_missing_data_dir_explain_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "verify", "--data-dir", str(tmp_path / "nowhere")],
                                env={"CALLVAULT_DATABASE_URL": ""})
    assert result.exit_code == 3
    assert "callvault init" in result.output


def test_installed_entry_point_runs() -> None:
    exe = Path(sys.executable).parent / "callvault"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0
    for command in ("init", "ingest", "serve", "demo", "audit", "policy", "users"):
        assert command in proc.stdout


@pytest.mark.parametrize("bad_env, message", [
    ({"CALLVAULT_DATABASE_URL": "mysql://nope"}, "not supported"),
])
def test_bad_configuration_is_reported_not_raised(tmp_path: Path, bad_env: dict[str, str], message: str) -> None:
    result = CliRunner().invoke(app, ["audit", "verify", "--data-dir", str(tmp_path)], env=bad_env)
    assert result.exit_code == 3
    assert message in result.output
