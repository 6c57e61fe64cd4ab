"""Tampering raises an alarm (issue 24, point 8): the worker verifies what it signs.

The outside tester deleted one audit row (``audit verify`` failed) and the worker still signed the next
checkpoint and moved the anchor forward; a row edited without re-hashing was signed too; and a log
truncated together with its checkpoints passed ``audit verify``.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from callvault.audit import service as audit
from callvault.audit.alarm import AlarmRaised, AuditTampered
from callvault.audit.jobs import checkpoint as checkpoint_job
from callvault.audit.models import AuditAlarm, AuditCheckpoint, AuditEntry
from callvault.cli.main import app
from callvault.notify.models import OutboxMail
from callvault.ops import health
from tests.integration.test_integrity import _disable_append_only
from tests.support.env import CallvaultEnv


def _cli(env: CallvaultEnv, *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)
    return done.exit_code, done.output


def _add(env: CallvaultEnv, n: int) -> None:
    with env.runtime.db.unit_of_work() as session:
        for i in range(n):
            audit.append(session, audit.AuditEvent(actor="lead", action="test.event", details={"i": i}),
                         clock=env.runtime.clock)


def _anchor(env: CallvaultEnv) -> dict[str, object]:
    data: dict[str, object] = json.loads((env.settings.anchor_dir / "latest-checkpoint.json").read_text())
    return data


def _checkpoints(env: CallvaultEnv) -> int:
    with env.runtime.db.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0


@pytest.mark.parametrize("attack, back", [
    ("DELETE FROM audit_entries WHERE seq = {seq}", 6),  # a row the previous checkpoint already covered
    ("UPDATE audit_entries SET reason = 'nothing to see' WHERE seq = {seq}", 2),  # a row about to be signed
])
def test_the_worker_does_not_sign_a_tampered_log_and_raises_the_alarm(isolated_env: CallvaultEnv,
                                                                       attack: str, back: int) -> None:
    env = isolated_env
    _add(env, 6)
    assert checkpoint_job(env.runtime) == 1
    anchored = _anchor(env)
    signed = _checkpoints(env)
    _add(env, 4)
    with env.runtime.db.unit_of_work() as session:
        seq = int(session.scalar(select(func.max(text("seq"))).select_from(text("audit_entries"))) or 0) - back
        _disable_append_only(env, session)
        session.execute(text(attack.format(seq=seq)))
    assert _cli(env, "audit", "verify")[0] == 1
    with pytest.raises(AuditTampered, match=f"#{seq}"):
        checkpoint_job(env.runtime)
    assert _checkpoints(env) == signed and _anchor(env) == anchored  # nothing signed, the anchor stayed
    with env.runtime.db.unit_of_work() as session:
        alarm = session.scalars(select(AuditAlarm)).one()
        assert alarm.acknowledged_at is None and alarm.first_bad_seq == seq
        entry = session.scalars(select(AuditEntry)
                                .where(AuditEntry.action == "audit.tamper_detected")).one()
        assert entry.decision == "alarm"
        mails = list(session.scalars(select(OutboxMail).where(OutboxMail.dedup_key.like("audit-alarm:%"))))
    assert mails and all("tamper" in m.subject for m in mails)
    checks = health.readiness(env.runtime)
    assert health.is_ready(checks) and health.is_degraded(checks) and "tamper alarm" in checks["audit"]
    # It stays raised: the next run refuses at once and mails nobody again.
    _add(env, 1)
    with pytest.raises(AlarmRaised):
        checkpoint_job(env.runtime)
    code, output = _cli(env, "audit", "acknowledge-alarm", "--as", "lead", "--reason", "looked into it, fine")
    assert code != 0 and "administer" in output
    code, output = _cli(env, "audit", "acknowledge-alarm", "--as", "admin", "--reason", "investigated; INC-42")
    assert code == 0, output
    assert not health.is_degraded(health.readiness(env.runtime))
    # Acknowledged but still damaged: the next checkpoint verifies the whole log and alarms again.
    with pytest.raises(AuditTampered):
        checkpoint_job(env.runtime)
    with env.runtime.db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(AuditAlarm)) == 2


def test_a_rebase_resumes_signing_over_an_edited_row(isolated_env: CallvaultEnv) -> None:
    env = isolated_env
    _add(env, 6)
    assert checkpoint_job(env.runtime) == 1
    _add(env, 2)
    with env.runtime.db.unit_of_work() as session:
        _disable_append_only(env, session)
        session.execute(text("UPDATE audit_entries SET reason = 'edited' WHERE seq = (SELECT max(seq) FROM "
                             "audit_entries)"))
    with pytest.raises(AuditTampered):
        checkpoint_job(env.runtime)
    code, output = _cli(env, "audit", "acknowledge-alarm", "--as", "admin", "--rebase",
                        "--reason", "entry 3 edited by a DBA; kept as evidence, INC-43")
    assert code == 0 and "re-based" in output, output
    _add(env, 1)
    assert checkpoint_job(env.runtime) == 1


def test_a_truncated_log_with_its_checkpoints_deleted_fails_verify_against_the_anchor(
        isolated_env: CallvaultEnv) -> None:
    env = isolated_env
    _add(env, 5)
    assert _cli(env, "audit", "checkpoint")[0] == 0
    _add(env, 5)
    assert _cli(env, "audit", "checkpoint")[0] == 0
    with env.runtime.db.unit_of_work() as session:
        size = int(session.scalar(select(func.max(AuditCheckpoint.tree_size))) or 0)
        _disable_append_only(env, session)
        if env.runtime.db.dialect == "postgresql":
            session.execute(text("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"))
        else:
            session.execute(text("DROP TRIGGER IF EXISTS audit_checkpoints_no_delete"))
        session.execute(text("DELETE FROM audit_checkpoints WHERE seq > 1"))
        first = session.scalar(select(AuditCheckpoint.tree_size).where(AuditCheckpoint.seq == 1))
        session.execute(text("DELETE FROM audit_entries WHERE seq > :n"), {"n": first})
    assert size > (first or 0)
    code, output = _cli(env, "audit", "verify")
    assert code == 1, output
    assert "anchored outside the database" in " ".join(output.split())
