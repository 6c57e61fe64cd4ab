"""`callvault audit verify` finds the first entry an insider changed, removed or forged."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from callvault.audit import service as audit
from callvault.cli.main import app
from tests.integration.test_integrity import _disable_append_only
from tests.support.env import CallvaultEnv


def _verify(env: CallvaultEnv) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", "verify", "--data-dir", str(env.data_dir)], env=env.cli_env)
    return result.exit_code, result.output


def _add_events(env: CallvaultEnv, n: int) -> int:
    """Append ``n`` events; return the seq of the one in the middle."""
    with env.runtime.db.unit_of_work() as session:
        entries = [audit.append(session, audit.AuditEvent(actor="tester", action="test.event", details={"i": i}))
                   for i in range(n)]
    return entries[n // 2].seq


def test_intact_log_verifies(isolated_env: CallvaultEnv) -> None:
    _add_events(isolated_env, 5)
    code, output = _verify(isolated_env)
    assert code == 0, output
    assert "intact" in output


@pytest.mark.parametrize("attack, statement", [
    ("reason rewritten", "UPDATE audit_entries SET reason = 'nothing to see' WHERE seq = {seq}"),
    ("denial turned into an allow", "UPDATE audit_entries SET decision = 'allow' WHERE seq = {seq}"),
    ("entry removed", "DELETE FROM audit_entries WHERE seq = {seq}"),
    ("entry rewritten with a fresh hash", "UPDATE audit_entries SET actor = 'x', "
                                          "entry_hash = '{fake}' WHERE seq = {seq}"),
])
def test_tampering_is_detected_at_the_first_bad_entry(isolated_env: CallvaultEnv, attack: str,
                                                      statement: str) -> None:
    seq = _add_events(isolated_env, 6)
    with isolated_env.runtime.db.unit_of_work() as session:
        _disable_append_only(isolated_env, session)
        session.execute(text(statement.format(seq=seq, fake="f" * 64)))
    code, output = _verify(isolated_env)
    assert code == 1, (attack, output)
    assert f"#{seq}" in output, output
