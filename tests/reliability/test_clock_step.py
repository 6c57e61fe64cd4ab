"""RELIABILITY scenario 22: the clock steps back an hour (a bad NTP server, a VM restored from a
snapshot). The log is ordered by ``seq``, not by time, so it keeps chaining and verifying; checkpoints
are never dated before the one they follow (verification would call that tampering); the step back is
put on the audit record once; and one-time codes are never accepted twice."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select

from callvault.audit import checkpoints
from callvault.audit import service as audit
from callvault.audit.anchor import CheckpointAnchor, publish_anchored
from callvault.audit.models import AuditEntry
from callvault.audit.signing import load_signer, signing_key_path
from callvault.core.clock import FixedClock
from callvault.identity import mfa
from callvault.identity import service as identity
from tests.support.env import CallvaultEnv


def _start() -> datetime:
    """Five minutes after now, i.e. after anything the fixture's set-up wrote (taken per test: at import
    time it would be minutes stale by the time a test runs late in a whole-suite run)."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)


def _play(env: CallvaultEnv, clock: FixedClock, tag: str) -> int:
    with env.runtime.db.unit_of_work() as session:
        return audit.append(session, audit.AuditEvent(actor="lead", action="recording.play", decision="allow",
                                                      object_type="recording", object_id=tag,
                                                      purpose="spot_check"), clock=clock).seq


def _checkpoint(env: CallvaultEnv, clock: FixedClock) -> dict[str, object]:
    signer = load_signer(signing_key_path(env.settings.key_dir, env.settings.env))
    data = publish_anchored(env.runtime.db, signer=signer, anchor=CheckpointAnchor(env.settings.anchor_dir),
                            clock=clock)
    assert data is not None
    return data


def test_after_the_clock_steps_back_the_log_still_chains_verifies_and_says_so_once(
        isolated_env: CallvaultEnv, caplog: pytest.LogCaptureFixture) -> None:
    env = isolated_env
    START = _start()
    clock = FixedClock(START)
    before = [_play(env, clock, "before-1")]
    clock.at += timedelta(seconds=10)
    before.append(_play(env, clock, "before-2"))
    first = _checkpoint(env, clock)

    caplog.set_level(logging.WARNING, logger="callvault.audit")
    clock.at -= timedelta(hours=1)  # the step
    after = [_play(env, clock, "after-1"), _play(env, clock, "after-2")]
    assert any("clock went backwards" in r.getMessage() for r in caplog.records)
    second = _checkpoint(env, clock)
    clock.at += timedelta(minutes=5)
    _play(env, clock, "after-3")
    third = _checkpoint(env, clock)

    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        result = checkpoints.verify_log(session, public_key=load_signer(
            signing_key_path(env.settings.key_dir, env.settings.env)).public_key)
    assert result.intact, result.problem
    assert result.checkpoints_checked == 3
    by_id = {r.object_id: r for r in rows if r.action == "recording.play"}
    # Ordered by seq, whatever the times say: the later events have later seqs and earlier times.
    assert before + after == sorted(before + after)
    assert by_id["after-1"].seq > by_id["before-2"].seq and by_id["after-1"].at < by_id["before-2"].at
    # Checkpoints are never dated before the previous one.
    assert first["published_at"] <= second["published_at"] <= third["published_at"]  # type: ignore[operator]
    # The step is on the record once, not at every checkpoint while the clock catches up.
    alarms = [r for r in rows if r.action == "audit.clock_went_back"]
    assert len(alarms) == 1
    assert alarms[0].decision == "alarm" and 3590 <= alarms[0].details["seconds_behind"] <= 3610


def test_small_differences_between_clocks_raise_nothing(isolated_env: CallvaultEnv) -> None:
    START = _start()
    clock = FixedClock(START)
    _play(isolated_env, clock, "a")
    clock.at -= timedelta(seconds=2)  # two nodes a little apart: within tolerance
    _play(isolated_env, clock, "b")
    _checkpoint(isolated_env, clock)
    with isolated_env.runtime.db.unit_of_work() as session:
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "audit.clock_went_back")).all() == []


def test_one_time_codes_are_never_replayed_across_a_step_back(isolated_env: CallvaultEnv,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """What callvault does: the newest accepted step is kept, so after a step back every code is
    refused until the clock catches up (any of them may have been used and seen an hour ago); recovery
    codes keep working meanwhile. Fail-safe rather than replayable."""
    env = isolated_env
    totp = pyotp.TOTP(env.totp_secrets["lead"], interval=mfa.STEP_SECONDS)
    START = _start()
    clock = FixedClock(START)

    def verify(code: str) -> str | None:
        with env.runtime.db.unit_of_work() as session:
            user = identity.get_user(session, "lead")
            return mfa.verify(session, user=user, code=code, keyring=env.runtime.keyring, clock=clock)

    hour_ago = totp.at(START - timedelta(hours=1))
    assert verify(hour_ago) is None  # not in the window now
    assert verify(totp.at(START)) == "totp"
    assert verify(totp.at(START)) is None  # replay
    clock.at = START - timedelta(hours=1)
    caplog.set_level(logging.WARNING, logger="callvault.identity")
    assert verify(totp.at(clock.at)) is None  # maybe the code someone saw an hour ago: refused
    assert verify(totp.at(START)) is None  # the newest used code: outside the window and used
    assert any("clock is 3600 s behind" in r.getMessage() for r in caplog.records)
    with env.runtime.db.unit_of_work() as session:
        user = identity.get_user(session, "lead")
        recovery = mfa._new_recovery_codes(session, user, clock)
    assert verify(recovery[0]) == "recovery_code"
    clock.at = START + timedelta(seconds=mfa.STEP_SECONDS)  # caught up
    assert verify(totp.at(clock.at)) == "totp"
    assert verify(totp.at(clock.at)) is None
