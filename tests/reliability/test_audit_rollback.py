"""RELIABILITY scenario 8, rollback or split view: restore an older database and keep operating.

The restored database is internally consistent (its chain and its own checkpoints all verify), so only
a copy of a later checkpoint kept outside it can tell. callvault keeps one: the anchor file
(``callvault.audit.anchor``). The drill: checkpoint, back the database up, write more and checkpoint
again, restore the backup (keys and anchor stay, as the documented restore says), then go on working:
every checkpoint from then on is refused with "history rewritten", an ``alarm`` audit entry and a
CRITICAL log line, through the CLI and through the worker job alike.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from callvault.audit import checkpoints
from callvault.audit import service as audit
from callvault.audit.anchor import ANCHOR_FILE
from callvault.audit.models import AuditEntry
from callvault.cli.main import app
from tests.support.backup import backed_up
from tests.support.env import CallvaultEnv


def _cli(env: CallvaultEnv, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)


def _append(env: CallvaultEnv, n: int, tag: str) -> None:
    with env.runtime.db.unit_of_work() as session:
        for i in range(n):
            audit.append(session, audit.AuditEvent(actor="lead", action="recording.play", decision="allow",
                                                   object_type="recording", object_id=f"{tag}-{i}",
                                                   purpose="spot_check"))


def _size(env: CallvaultEnv) -> int:
    with env.runtime.db.unit_of_work() as session:
        return len(session.scalars(select(AuditEntry.seq)).all())


def _alarms(env: CallvaultEnv) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == "audit.history_rewritten")
                                    .order_by(AuditEntry.seq)))


def test_checkpoints_that_extend_the_anchor_are_published_and_anchored(isolated_env: CallvaultEnv) -> None:
    anchor = isolated_env.settings.anchor_dir / ANCHOR_FILE
    for round_ in range(3):
        _append(isolated_env, 3, f"r{round_}")
        made = _cli(isolated_env, "audit", "checkpoint")
        assert made.exit_code == 0, made.output
        assert json.loads(anchor.read_text(encoding="utf-8")) == json.loads(made.output)
    worker = _cli(isolated_env, "worker", "--once", "--job", "audit.checkpoint")
    assert worker.exit_code == 0, worker.output  # nothing new: nothing published, nothing refused
    assert _alarms(isolated_env) == []


def test_a_restored_older_database_gets_a_history_rewritten_alarm_at_every_next_checkpoint(
        isolated_env: CallvaultEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = isolated_env
    _append(env, 5, "before-backup")
    assert _cli(env, "audit", "checkpoint", "--out", str(tmp_path / "cp1.json")).exit_code == 0
    with backed_up(env) as restore:
        _append(env, 6, "lost")
        second = _cli(env, "audit", "checkpoint", "--out", str(tmp_path / "cp2.json"))
        assert second.exit_code == 0, second.output
        lost_size = json.loads(second.output)["tree_size"]
        restore()
    # The restored database is consistent in itself, but not with the checkpoint anchored outside it
    # (issue 24, point 8): verify names the anchored checkpoint the log no longer holds.
    verified = _cli(env, "audit", "verify")
    assert verified.exit_code == 1 and "anchored outside the database" in " ".join(verified.output.split())
    assert _size(env) == lost_size - 6

    # 1. Straight after the restore: the log is shorter than the anchored checkpoint.
    caplog.set_level(logging.CRITICAL, logger="callvault.audit")
    shrunk = _cli(env, "audit", "checkpoint")
    assert shrunk.exit_code == 1
    assert "history rewritten" in shrunk.output and f"covered {lost_size}" in shrunk.output
    assert any(r.levelno == logging.CRITICAL and "history rewritten" in r.getMessage() for r in caplog.records)
    # 2. Keep operating: the log grows past the lost size with other entries. Not a prefix any more.
    _append(env, 10, "after-restore")
    assert _size(env) > lost_size
    forked = _cli(env, "audit", "checkpoint")
    assert forked.exit_code == 1
    assert "history rewritten" in forked.output and "consistency proof fails" in forked.output
    # 3. The worker's job refuses too, and `worker --once` exits 1.
    job = _cli(env, "worker", "--once", "--job", "audit.checkpoint")
    assert job.exit_code == 1 and "FAILED" in job.output
    # 4. An export, which publishes a checkpoint first, refuses rather than sign the rewritten log.
    export = _cli(env, "audit", "export", "--out", str(tmp_path / "bundle.json"))
    assert export.exit_code == 1 and "history rewritten" in export.output

    alarms = _alarms(env)
    assert len(alarms) == 4
    assert {a.decision for a in alarms} == {"alarm"}
    assert alarms[0].details["anchored_size"] == lost_size and alarms[0].details["log_size"] < lost_size
    with env.runtime.db.unit_of_work() as session:
        latest = checkpoints.latest_checkpoint(session)
        assert latest is not None and latest.seq == 1  # nothing was signed over the rewritten log
    # The operator's saved copy names it as well.
    saved = _cli(env, "audit", "verify", "--checkpoint", str(tmp_path / "cp2.json"))
    assert saved.exit_code == 1 and "saved checkpoint 2" in saved.output


def test_a_database_restored_without_its_newest_checkpoint_is_refused(isolated_env: CallvaultEnv) -> None:
    """Same entries, but a checkpoint published since the backup is gone from the database."""
    env = isolated_env
    _append(env, 4, "a")
    with backed_up(env) as restore:
        assert _cli(env, "audit", "checkpoint").exit_code == 0
        restore()
    refused = _cli(env, "audit", "checkpoint")
    assert refused.exit_code == 1
    assert "history rewritten: the database's newest checkpoint is #0, but checkpoint #1" in refused.output


def test_an_anchor_that_was_tampered_with_is_refused(isolated_env: CallvaultEnv) -> None:
    env = isolated_env
    _append(env, 4, "a")
    assert _cli(env, "audit", "checkpoint").exit_code == 0
    anchor = env.settings.anchor_dir / ANCHOR_FILE
    forged = json.loads(anchor.read_text(encoding="utf-8"))
    forged["root_hash"] = "ab" * 32
    anchor.write_text(json.dumps(forged), encoding="utf-8")
    refused = _cli(env, "audit", "checkpoint")
    assert refused.exit_code == 1
    assert "history rewritten" in refused.output and "valid signature" in refused.output
    anchor.write_text("{not json", encoding="utf-8")
    unreadable = _cli(env, "audit", "checkpoint")
    assert unreadable.exit_code == 3 and "is not JSON" in unreadable.output
