"""Key rotation (docs/operations.md, "Key rotation"): rotate the KEK, rewrap every wrapped secret online,
retire the old KEK. Recordings, MFA secrets and sealed transcripts still decrypt, in a process that
was running all along and in a fresh one; retirement is refused while anything still uses the key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.identity import account_codes, mfa
from callvault.identity import service as identity
from callvault.identity.models import MfaCredential
from callvault.recordings import rekey
from callvault.recordings.models import DataKey
from callvault.runtime import build_runtime
from callvault.transcription import sealing
from tests.reliability.harness import assert_chain_intact
from tests.support.retention import World, world_for


@pytest.fixture()
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "a")


def _kek_ids(world: World) -> set[str]:
    with world.runtime.db.unit_of_work() as session:
        return set(session.scalars(select(DataKey.kek_id))) | set(session.scalars(select(MfaCredential.kek_id)))


def _enrol_admin(world: World) -> str:
    with world.runtime.db.unit_of_work() as session:
        admin = identity.get_user(session, "admin")
        issued = account_codes.issue(session, user=admin, purpose="enrol", actor="test", clock=world.clock)
        enrolment = mfa.begin_enrolment(session, user=admin, keyring=world.runtime.keyring, clock=world.clock,
                                        enrolment_code=issued.code)
        mfa.confirm_enrolment(session, user=admin, code=pyotp.TOTP(enrolment.secret).at(world.clock.now()),
                              keyring=world.runtime.keyring, clock=world.clock, enrolment_code=issued.code)
    return enrolment.secret


def _mfa_accepts(world: World, secret: str) -> bool:
    world.clock.at += timedelta(seconds=mfa.STEP_SECONDS * 3)  # a step not used yet
    with world.runtime.db.unit_of_work() as session:
        admin = identity.get_user(session, "admin")
        return mfa.verify(session, user=admin, code=pyotp.TOTP(secret).at(world.clock.now()),
                          keyring=world.runtime.keyring, clock=world.clock) == "totp"


def test_rotate_rewrap_retire_keeps_recordings_mfa_and_transcripts_readable_and_removes_the_old_key(
        world: World) -> None:
    started = time.monotonic()
    recs = [world.ingest(seed=i) for i in range(5)]
    audio = {r: world.audio(r) for r in recs}
    secret = _enrol_admin(world)
    with world.runtime.db.unit_of_work() as session:
        sealed = {r: sealing.seal(sealing.data_key_for(session, keyring=world.runtime.keyring, recording_id=r),
                                  sealing.context_for(r, sealing.TRANSCRIPT), f"transcript of {r}".encode())
                  for r in recs}
    old = world.runtime.keyring.current_id
    assert _kek_ids(world) == {old}

    code, output = world.cli("keys", "rotate")
    assert code == 0, output
    new = next(p.stem for p in world.settings.key_dir.glob("*.kek") if p.stem != old)
    # The running process notices the rotation: the next recording is wrapped under the new key.
    late = world.ingest(seed=99)
    with world.runtime.db.unit_of_work() as session:
        late_key = session.get(DataKey, late)
        assert late_key is not None and late_key.kek_id == new

    code, output = world.cli("keys", "retire", old)
    assert code == 4 and "rewrap" in output, output  # refused: 5 data keys and 1 MFA secret still use it
    assert (world.settings.key_dir / f"{old}.kek").exists()

    code, output = world.cli("keys", "rewrap", "--batch-size", "2")
    assert code == 0, output
    assert _kek_ids(world) == {new}
    code, output = world.cli("keys", "rewrap")  # idempotent: nothing left to do
    assert code == 0 and "rewrapped 0 data keys and 0 MFA secrets" in output, output

    code, output = world.cli("keys", "retire", new)
    assert code == 4 and "current" in output, output
    code, output = world.cli("keys", "retire", old)
    assert code == 0, output
    assert not (world.settings.key_dir / f"{old}.kek").exists()

    # Still readable in the process that ran throughout, and in a fresh one that never saw the old key.
    for runtime_name in ("running", "fresh"):
        if runtime_name == "fresh":
            world.runtime.close()
            world.runtime = build_runtime(world.settings, clock=world.clock)
            assert world.runtime.keyring.kek_ids == {new}
        for r in recs:
            assert world.audio(r) == audio[r]
            with world.runtime.db.unit_of_work() as session:
                key = sealing.data_key_for(session, keyring=world.runtime.keyring, recording_id=r)
            assert sealing.unseal(key, sealing.context_for(r, sealing.TRANSCRIPT), sealed[r]) == \
                f"transcript of {r}".encode()
        assert world.playable(late)
        assert _mfa_accepts(world, secret)

    entries = assert_chain_intact(world.runtime.db)
    with world.runtime.db.unit_of_work() as session:
        actions = [a for a in session.scalars(select(AuditEntry.action)) if a.startswith("keys.")]
    assert actions[0] == "keys.rotated" and "keys.retire_refused" in actions and actions[-1] == "keys.retired"
    assert actions.count("keys.rewrapped") == 4  # 3 batches of data keys (5 rows by 2) + 1 of MFA secrets
    print(f"[reliability] key rotation: 6 recordings + 1 MFA secret + 5 sealed transcripts readable after "
          f"rotate/rewrap/retire; retire refused while in use and for the current key; audit chain of "
          f"{entries} entries intact ({time.monotonic() - started:.1f} s)")


def test_an_interrupted_rewrap_resumes_where_it_stopped(world: World) -> None:
    recs = [world.ingest(seed=i) for i in range(4)]
    old = world.runtime.keyring.current_id
    assert world.cli("keys", "rotate")[0] == 0

    class Killed(Exception):
        pass

    def die_after_first_batch(report: rekey.RewrapReport) -> None:
        raise Killed

    with pytest.raises(Killed):
        rekey.rewrap_all(world.runtime.db, world.runtime.keyring, actor="test", batch_size=3,
                         clock=world.clock, on_batch=die_after_first_batch)
    with world.runtime.db.unit_of_work() as session:
        assert rekey.usage(session, old)["data_keys"] == 1  # the first batch of 3 was committed
    report = rekey.rewrap_all(world.runtime.db, world.runtime.keyring, actor="test", batch_size=3, clock=world.clock)
    assert report.rewrapped["data_keys"] == 1 and report.already_current["data_keys"] == 3
    assert world.cli("keys", "retire", old)[0] == 0
    assert all(world.playable(r) for r in recs)
