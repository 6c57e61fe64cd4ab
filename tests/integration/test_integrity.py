"""Tampering and crashes: refused, detected, and cleaned up — never served, never half-stored."""

from __future__ import annotations

import io
import os
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from callvault.audit import service as audit
from callvault.capture import ingest as ingest_module
from callvault.capture.ingest import ingest_recording, reap_stale_ingests
from callvault.cli.main import app
from callvault.core.clock import FixedClock, system_clock
from callvault.recordings.integrity import find_problems
from callvault.recordings.models import Recording
from callvault.storage.keys import Keyring
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer


def _flip_byte(env: CallvaultEnv, rec_id: str, offset: int) -> None:
    blob_key = next(k for k in env.runtime.store.iter_keys() if rec_id in k)
    path = env.runtime.store.root / blob_key  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(data))


def test_tampered_ciphertext_is_refused_not_served(server: LiveServer, env: CallvaultEnv) -> None:
    audio = wav_bytes(4.0, seed=21)
    with server.client("admin") as admin:
        rec_id = upload(admin, audio, metadata()).json()["id"]
    _flip_byte(env, rec_id, 200)  # inside the first chunk
    with server.client("lead") as lead:
        resp = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"})
    assert resp.status_code == 500
    assert resp.json()["error"] == "integrity_error"
    assert audio[:100] not in resp.content


def test_tampering_late_in_the_file_breaks_the_stream_instead_of_serving_forged_audio(
        server: LiveServer, env: CallvaultEnv) -> None:
    audio = wav_bytes(10.0, seed=22)
    with server.client("admin") as admin:
        rec_id = upload(admin, audio, metadata()).json()["id"]
    _flip_byte(env, rec_id, 250_000)
    with server.client("lead") as lead, pytest.raises(httpx.HTTPError):
        resp = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"})
        assert resp.content != audio  # a complete, forged body would be a failure
        raise AssertionError("tampered audio was served in full")
    problems = find_problems(db=env.runtime.db, store=env.runtime.store, keyring=env.runtime.keyring,
                             stale_after=timedelta(hours=1), deep=True)
    assert any(rec_id in p and "chunk" in p for p in problems)


def _rows(env: CallvaultEnv) -> int:
    with env.runtime.db.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(Recording)) or 0)


def test_failure_while_writing_the_blob_leaves_no_row_and_no_blob(env: CallvaultEnv,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rows, blobs = _rows(env), sorted(env.runtime.store.iter_keys())

    def broken_encrypt(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ingest_module, "encrypt_audio", broken_encrypt)
    with pytest.raises(OSError):
        ingest_recording(db=env.runtime.db, store=env.runtime.store, keyring=env.runtime.keyring,
                         audio=io.BytesIO(wav_bytes(1.0)), metadata=metadata(), actor="test")
    assert _rows(env) == rows
    assert sorted(env.runtime.store.iter_keys()) == blobs


def test_ingest_killed_midway_is_invisible_and_reaped_later(env: CallvaultEnv,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate kill -9 after the blob is written but before the row is finalised."""
    rows, blobs = _rows(env), sorted(env.runtime.store.iter_keys())

    class Killed(BaseException):
        """Stands in for SIGKILL: nothing after this point runs, not even cleanup."""

    original_discard = ingest_module._discard
    monkeypatch.setattr(Keyring, "wrap", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    monkeypatch.setattr(ingest_module, "_discard", lambda *a, **k: None)
    meta = metadata(call_id="killed-1")
    with pytest.raises(Killed):
        ingest_recording(db=env.runtime.db, store=env.runtime.store, keyring=env.runtime.keyring,
                         audio=io.BytesIO(wav_bytes(1.0)), metadata=meta, actor="test")
    monkeypatch.setattr(ingest_module, "_discard", original_discard)
    monkeypatch.undo()
    # The partial ingest is not a recording anyone can find...
    with env.runtime.db.unit_of_work() as session:
        pending = session.scalars(select(Recording).where(Recording.call_id == "killed-1")).one()
        assert pending.state == "pending"
    assert len(sorted(env.runtime.store.iter_keys())) == len(blobs) + 1
    problems = find_problems(db=env.runtime.db, store=env.runtime.store, keyring=env.runtime.keyring,
                             stale_after=timedelta(0), clock=FixedClock(system_clock.now() + timedelta(seconds=1)))
    assert any("killed-1" in p for p in problems)
    # ...and the next repair pass removes blob and row.
    later = FixedClock(system_clock.now() + timedelta(hours=2))
    removed = reap_stale_ingests(db=env.runtime.db, store=env.runtime.store, older_than=timedelta(hours=1),
                                 clock=later)
    assert removed == [pending.id]
    assert _rows(env) == rows
    assert sorted(env.runtime.store.iter_keys()) == blobs
    # A retry of the same call now succeeds.
    result = ingest_recording(db=env.runtime.db, store=env.runtime.store, keyring=env.runtime.keyring,
                              audio=io.BytesIO(wav_bytes(1.0)), metadata=meta, actor="test")
    assert result.created


def _disable_append_only(env: CallvaultEnv, session: object) -> None:
    """What an attacker with database superuser rights can do: drop the append-only guard."""
    if env.runtime.db.dialect == "postgresql":
        session.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))  # type: ignore[attr-defined]
    else:
        session.execute(text("DROP TRIGGER IF EXISTS audit_entries_no_update"))  # type: ignore[attr-defined]
        session.execute(text("DROP TRIGGER IF EXISTS audit_entries_no_delete"))  # type: ignore[attr-defined]


def test_audit_log_refuses_updates_and_deletes(env: CallvaultEnv) -> None:
    with pytest.raises(Exception, match="append-only"), env.runtime.db.unit_of_work() as session:
        session.execute(text("UPDATE audit_entries SET actor = 'nobody' WHERE seq = 1"))
    with pytest.raises(Exception, match="append-only"), env.runtime.db.unit_of_work() as session:
        session.execute(text("DELETE FROM audit_entries WHERE seq = 1"))
    with env.runtime.db.unit_of_work() as session:
        assert audit.verify_chain(session).intact


def test_a_blob_without_its_row_is_reported_as_drift_once_it_is_old_enough(isolated_env: CallvaultEnv) -> None:
    """RELIABILITY scenario 6: media without metadata (a row lost to a partition, a restore of an
    older database) is reported. A young one is not: its row may be about to commit."""
    env = isolated_env
    kept = ingest_recording(db=env.runtime.db, store=env.runtime.store, keyring=env.runtime.keyring,
                            audio=io.BytesIO(wav_bytes(1.0, seed=31)), metadata=metadata(), actor="test")
    orphan = "zz/zz/zzzz-orphan.cva"
    with env.runtime.store.writer(orphan) as sink:
        sink.write(b"\x01" * 64)

    def check(*extra: str) -> tuple[int, str]:
        done = CliRunner().invoke(app, ["check", *extra, "--data-dir", str(env.data_dir)], env=env.cli_env)
        return done.exit_code, " ".join(done.output.split())

    assert check() == (0, "0 problem(s) found")  # written just now: left alone
    path = env.runtime.store.root / orphan  # type: ignore[attr-defined]
    two_hours_ago = path.stat().st_mtime - 7200  # on the disk's clock, the one its age is measured on
    os.utime(path, (two_hours_ago, two_hours_ago))
    code, output = check()
    assert code == 1
    assert f"blob {orphan}: no catalog row names it" in output and "1 problem(s) found" in output
    assert kept.recording_id not in output  # the recording's own blob has its row
    env.runtime.store.delete(orphan)
    assert check("--deep") == (0, "0 problem(s) found")


def test_check_lists_half_written_temporaries_with_age_and_size_and_repair_removes_the_stale_ones(
        isolated_env: CallvaultEnv) -> None:
    """A writer killed mid-blob leaves ``.tmp/*.part``: ``check`` shows each (age, size) so the operator
    sees the disk it holds; only stale ones are problems, and ``--repair`` removes exactly those."""
    env = isolated_env
    tmp_dir = env.runtime.store.root / ".tmp"  # type: ignore[attr-defined]
    stale, young = tmp_dir / "blob-killed.part", tmp_dir / "blob-writing.part"
    stale.write_bytes(b"\x02" * 4096)
    young.write_bytes(b"\x03" * 100)
    three_hours_ago = stale.stat().st_mtime - 3 * 3600
    os.utime(stale, (three_hours_ago, three_hours_ago))

    def check(*extra: str) -> tuple[int, str]:
        done = CliRunner().invoke(app, ["check", *extra, "--data-dir", str(env.data_dir)], env=env.cli_env)
        return done.exit_code, " ".join(done.output.split())

    code, output = check()
    assert code == 1, output
    assert "blob-killed.part" in output and "4096 bytes" in output and "3.0 h old" in output
    assert "--repair" in output and "1 problem(s) found" in output
    assert "blob-writing.part" in output and "100 bytes" in output  # shown, but a write in progress
    code, output = check("--repair")
    assert code == 0 and "1 half-written temporary file(s)" in output
    assert not stale.exists() and young.exists()
    code, output = check()
    assert code == 0 and "0 problem(s) found" in output, output
    assert "blob-writing.part" in output and "left alone" in output
