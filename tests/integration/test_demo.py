"""The quick start's `callvault demo`: a usable install with logins and audible recordings."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile
from sqlalchemy import select
from typer.testing import CliRunner

from callvault.cli.main import app
from callvault.core.clock import FixedClock
from callvault.core.errors import Conflict
from callvault.core.settings import load_settings
from callvault.demo import seed
from callvault.demo.mailbox import DemoMailbox
from callvault.identity import mfa
from callvault.identity import service as identity
from callvault.identity.models import MfaCredential
from callvault.notify import service as notify
from callvault.notify.service import SmtpSettings, send_due
from callvault.policy import service as policy_service
from callvault.policy.decide import Action
from callvault.recordings import playback
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording
from callvault.runtime import build_runtime
from tests.conftest import fresh_database
from tests.support.env import CallvaultEnv


def test_demo_sets_up_logins_and_playable_speech(tmp_path: Path, database_url: str) -> None:
    env = {"CALLVAULT_DATABASE_URL": database_url}
    args = ["demo", "--no-serve", "--recordings", "3", "--data-dir", str(tmp_path / "demo")]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8000/" in result.output
    # The shipped policy admits no loopback address: the demo says that it widens its own copy.
    assert "Demo only" in result.output and "127.0.0.0/8" in result.output
    assert "demo-policy.yaml" in result.output
    for login in ("lead", "alice", "admin", "exec", "it"):
        assert login in result.output
    again = CliRunner().invoke(app, args, env=env)  # a second run reuses the data
    assert again.exit_code == 0, again.output
    assert "0 new demo recordings" in again.output

    runtime = build_runtime(load_settings(tmp_path / "demo", env=env))
    try:
        with runtime.db.unit_of_work() as session:
            rows = list(session.scalars(select(Recording)))
            assert len(rows) == 3
            policy = policy_service.current_policy(session)
            assert policy.network.permits("127.0.0.1") and not policy.network.permits("203.0.113.7")
            lead = identity.actor_for(session, identity.get_user(session, "lead"), policy)
            decision, row = recordings.authorize_content(session, policy=policy, actor=lead, action=Action.PLAY,
                                                         recording_id=rows[0].id, purpose="spot_check")
            assert decision.allowed
            assert row is not None
            reader = playback.open_reader(session, store=runtime.store, keyring=runtime.keyring, row=row)
        audio = b"".join(playback.stream(reader, None, row.sha256))
    finally:
        runtime.close()
    samples, rate = soundfile.read(io.BytesIO(audio))
    assert rate == 8000 and samples.shape[1] == 2
    assert len(samples) / rate > 3  # a few seconds of dialogue
    # Both parties speak: each channel carries real signal somewhere.
    assert np.abs(samples[:, 0]).max() > 0.1 and np.abs(samples[:, 1]).max() > 0.1


def test_demo_with_policy_b_offers_the_approval_flow(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    (tmp_path / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as database_url:
        _demo_b(tmp_path, database_url)


def _demo_b(tmp_path: Path, database_url: str) -> None:
    env = {"CALLVAULT_DATABASE_URL": database_url, "COLUMNS": "60"}
    data_dir = tmp_path / "demo-b"
    result = CliRunner().invoke(app, ["demo", "--policy", "b", "--no-serve", "--recordings", "1",
                                      "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.output
    assert "policy-b.yaml" in result.output
    assert "approve it as 'lead' (support_lead) or 'head' (head_of_customer_success)" in result.output
    # The command that prints a code is on one line even in a narrow terminal: it can be copied as it is.
    assert f"demo-code lead --data-dir {data_dir}" in result.output
    runtime = build_runtime(load_settings(data_dir, env=env))
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
    finally:
        runtime.close()
    assert policy.purposes["complaint_investigation"].approval.required


def test_demo_mailbox_keeps_and_announces_what_the_product_sends(isolated_env: CallvaultEnv,
                                                                tmp_path: Path) -> None:
    announced: list[str] = []
    box = DemoMailbox(tmp_path, announce=announced.append)
    try:
        db = isolated_env.runtime.db
        with db.unit_of_work() as session:
            notify.enqueue(session, to="lead@localhost", subject="Verify your request", body="code inside")
        send_due(db, SmtpSettings.from_env(box.smtp_env))
        messages = box.messages()
    finally:
        box.close()
    assert [m["Subject"] for m in messages] == ["Verify your request"]
    assert announced == ["mail to lead@localhost: Verify your request"]


def test_demo_code_right_after_the_demo_starts_is_accepted(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Enrolment at `demo` start uses the half-minute's code; `demo-code` then gives the next one, which the
    sign-in accepts, instead of the used one, which it refuses (each code is accepted once)."""
    (tmp_path / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as database_url:
        _demo_code_after_start(tmp_path, database_url)


def _demo_code_after_start(tmp_path: Path, database_url: str) -> None:
    env = {"CALLVAULT_DATABASE_URL": database_url}
    data_dir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--recordings", "1", "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.output
    runtime = build_runtime(load_settings(data_dir, env=env))
    try:
        with runtime.db.unit_of_work() as session:
            lead = identity.get_user(session, "lead")
            used = session.get(MfaCredential, lead.id)
            assert used is not None and used.last_used_step is not None
            same_half_minute = datetime.fromtimestamp(used.last_used_step * mfa.STEP_SECONDS + 5, UTC)
            code = seed.current_demo_code(data_dir, "lead", db=runtime.db, now=same_half_minute)
            assert mfa.verify(session, user=lead, code=code, keyring=runtime.keyring,
                              clock=FixedClock(same_half_minute)) == "totp"
        with pytest.raises(Conflict, match="used up; ask again in 25 s"):  # this one and the next are used
            seed.current_demo_code(data_dir, "lead", db=runtime.db, now=same_half_minute)
    finally:
        runtime.close()
