"""`callvault audit verify` finds the first entry an insider changed, removed, inserted, swapped or
forged; `callvault check --deep` finds a changed recording hash (RELIABILITY scenario 7)."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import text, update
from typer.testing import CliRunner

from callvault.audit import service as audit
from callvault.audit.models import AuditEntry
from callvault.capture.ingest import ingest_recording
from callvault.cli.main import app
from callvault.recordings.models import Recording
from tests.integration.test_integrity import _disable_append_only
from tests.support.audio import metadata, wav_bytes
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


def test_a_row_inserted_in_the_middle_is_named_where_the_chain_breaks(isolated_env: CallvaultEnv) -> None:
    """The strongest insert a superuser can make: renumber the rows after seq k, then put a forged entry
    at k that links to k-1 and carries a correct hash of its own. It is self-consistent; the original
    entry k, now k+1, no longer links to it, so verify names #k+1 (and no entry before it)."""
    seq = _add_events(isolated_env, 6)
    with isolated_env.runtime.db.unit_of_work() as session:
        _disable_append_only(isolated_env, session)
        session.execute(text("UPDATE audit_entries SET seq = seq + 100000 WHERE seq >= :k"), {"k": seq})
        session.execute(text("UPDATE audit_entries SET seq = seq - 100000 + 1 WHERE seq >= 100000"))
        previous = session.get(AuditEntry, seq - 1)
        assert previous is not None
        forged = AuditEntry(seq=seq, at=previous.at, actor="admin", actor_role="admin", action="recording.play",
                            object_type="recording", object_id="r-1", purpose="spot_check", decision="allow",
                            reason="purpose allowed", clauses=[], source_ip=None, details={},
                            prev_hash=previous.entry_hash)
        forged.entry_hash = audit.compute_entry_hash(forged)
        session.add(forged)
    code, output = _verify(isolated_env)
    assert code == 1, output
    assert f"first bad entry #{seq + 1}" in output and f"does not link to entry {seq}" in output, output


def test_two_swapped_rows_are_named_at_the_first_of_them_and_the_next_checkpoint_alarms(
        isolated_env: CallvaultEnv) -> None:
    seq = _add_events(isolated_env, 6)
    cli = ["--data-dir", str(isolated_env.data_dir)]
    assert CliRunner().invoke(app, ["audit", "checkpoint", *cli], env=isolated_env.cli_env).exit_code == 0
    with isolated_env.runtime.db.unit_of_work() as session:
        _disable_append_only(isolated_env, session)
        for old, new in ((seq, -1), (seq + 1, seq), (-1, seq + 1)):  # entry k+1 now comes before entry k
            session.execute(update(AuditEntry).where(AuditEntry.seq == old).values(seq=new))
    code, output = _verify(isolated_env)
    assert code == 1, output
    assert f"first bad entry #{seq}" in output, output
    # The alert: the worker's next checkpoint compares with the one anchored outside the database.
    job = CliRunner().invoke(app, ["audit", "checkpoint", *cli], env=isolated_env.cli_env)
    assert job.exit_code == 1 and "history rewritten" in job.output and "consistency proof fails" in job.output


def test_a_changed_recording_hash_is_found_by_the_deep_check(isolated_env: CallvaultEnv) -> None:
    env = isolated_env
    result = ingest_recording(db=env.runtime.db, store=env.runtime.store, keyring=env.runtime.keyring,
                              audio=io.BytesIO(wav_bytes(1.0, seed=77)), metadata=metadata(), actor="test")
    runner = CliRunner()

    def check(*extra: str) -> tuple[int, str]:
        done = runner.invoke(app, ["check", *extra, "--data-dir", str(env.data_dir)], env=env.cli_env)
        return done.exit_code, done.output

    assert check("--deep") == (0, "0 problem(s) found\n")
    with env.runtime.db.unit_of_work() as session:  # no trigger guards recordings: plain SQL will do
        session.execute(update(Recording).where(Recording.id == result.recording_id).values(sha256="0" * 64))
    assert check()[0] == 0  # the quick check reads no audio, so it cannot see this
    code, output = check("--deep")
    assert code == 1
    said = " ".join(output.split())
    assert f"recording {result.recording_id}: recording plaintext SHA-256 is" in said
    assert "tampered or corrupted" in said and "1 problem(s) found" in said
