"""Bulk ingest (``ingest_many``): each recording decided, stored, audited and answered on its own."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from callvault.audit import service as audit
from callvault.audit.models import AuditEntry
from callvault.capture import ingest as capture_ingest
from callvault.capture.admission import NotRecordable
from callvault.capture.ingest import IngestItem, IngestResult, ingest_many, ingest_recording
from callvault.core.errors import Conflict, InvalidInput
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.storage.crypto import EncryptedBlobReader
from callvault.storage.keys import WrappedKey
from tests.support.audio import metadata, wav_bytes
from tests.support.env import CallvaultEnv


def _decrypted(env: CallvaultEnv, rec_id: str) -> bytes:
    rt = env.runtime
    with rt.db.unit_of_work() as session:
        row = session.get(Recording, rec_id)
        key = session.get(DataKey, rec_id)
        assert row is not None and key is not None
        blob_key = row.blob_key
        data_key = rt.keyring.unwrap(WrappedKey(kek_id=key.kek_id, wrapped=key.wrapped_key), recording_id=rec_id)
    reader = EncryptedBlobReader(lambda off, n: rt.store.read_at(blob_key, off, n), data_key=data_key,
                                 context=rec_id.encode())
    return b"".join(reader.iter_all())


def _entries(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


def test_a_mixed_batch_gets_one_answer_per_item_and_one_audit_entry_per_stored_recording(env: CallvaultEnv) -> None:
    rt = env.runtime
    audios = [wav_bytes(1.0 + i / 2, seed=40 + i) for i in range(4)]
    metas = [metadata() for _ in range(4)]
    started = datetime.fromisoformat(metas[2]["started_at"])
    # Ended during the announcement: admission refuses it (audited), nothing stored.
    metas[2]["consent"] = {"announcement_played_at": started.isoformat(), "announcement_version": "1",
                           "announcement_ended_at": (started + timedelta(seconds=30)).isoformat()}
    already = ingest_recording(db=rt.db, store=rt.store, keyring=rt.keyring, audio=io.BytesIO(audios[3]),
                               metadata=metas[3], actor="test")
    ingested_before = len(_entries(env, "recording.ingested"))
    items = [
        IngestItem(io.BytesIO(audios[0]), metas[0]),
        IngestItem(io.BytesIO(b"not audio at all"), metadata()),
        IngestItem(io.BytesIO(audios[2]), metas[2]),
        IngestItem(io.BytesIO(audios[3]), metas[3]),  # the same call again, same audio: idempotent
        IngestItem(io.BytesIO(audios[1]), metas[1]),
        IngestItem(io.BytesIO(audios[0]), {**metas[1]}),  # metas[1]'s call id a second time in the batch
    ]
    outcomes = ingest_many(db=rt.db, store=rt.store, keyring=rt.keyring, items=items, actor="bulk-test")

    assert isinstance(outcomes[0], IngestResult) and outcomes[0].created
    assert isinstance(outcomes[1], InvalidInput) and "audio" in outcomes[1].message
    assert isinstance(outcomes[2], NotRecordable)
    assert outcomes[3] == IngestResult(already.recording_id, created=False)
    assert isinstance(outcomes[4], IngestResult) and outcomes[4].created
    assert isinstance(outcomes[5], Conflict) and "twice" in outcomes[5].message

    stored = {outcomes[0].recording_id: audios[0], outcomes[4].recording_id: audios[1]}
    for rec_id, audio in stored.items():
        assert _decrypted(env, rec_id) == audio
        with rt.db.unit_of_work() as session:
            row = session.get(Recording, rec_id)
            assert row is not None and row.state == RecordingState.AVAILABLE
            assert row.sha256 == hashlib.sha256(audio).hexdigest() and row.destroy_after is not None
    ingested = _entries(env, "recording.ingested")[ingested_before:]
    assert sorted(e.object_id for e in ingested) == sorted(stored)
    assert all(e.actor == "bulk-test" for e in ingested)
    refused = [e for e in _entries(env, "recording.not_stored") if e.object_id == metas[2]["call_id"]]
    assert len(refused) == 1
    with rt.db.unit_of_work() as session:
        assert session.scalar(select(Recording).where(Recording.call_id == metas[2]["call_id"])) is None
        assert not list(session.scalars(select(Recording).where(Recording.state == RecordingState.PENDING)))
        assert audit.verify_chain(session).intact
    assert len(list(rt.store.iter_keys())) == len(stored) + 1  # plus the earlier recording; no strays


def test_a_blob_that_fails_to_write_fails_only_its_own_item(env: CallvaultEnv,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rt = env.runtime
    audios = [wav_bytes(1.0, seed=50 + i) for i in range(3)]
    metas = [metadata() for _ in range(3)]
    blobs_before = set(rt.store.iter_keys())

    class Truncated(io.BytesIO):
        """An upload whose bytes stop after its header: the probe passes, the encryptor finds it short."""

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self.tell() >= 4096:
                return 0
            return super().readinto(memoryview(buffer)[:4096 - self.tell()])

    # The second upload breaks while its blob is written: its blob and pending row are undone.
    items = [IngestItem(io.BytesIO(audios[0]), metas[0]), IngestItem(Truncated(audios[1]), metas[1]),
             IngestItem(io.BytesIO(audios[2]), metas[2])]
    outcomes = ingest_many(db=rt.db, store=rt.store, keyring=rt.keyring, items=items, actor="bulk-test")

    assert isinstance(outcomes[1], InvalidInput) and "ended before" in outcomes[1].message
    done = [o for o in (outcomes[0], outcomes[2]) if isinstance(o, IngestResult)]
    assert len(done) == 2
    assert _decrypted(env, done[0].recording_id) == audios[0]
    assert _decrypted(env, done[1].recording_id) == audios[2]
    with rt.db.unit_of_work() as session:
        assert session.scalar(select(Recording).where(Recording.call_id == metas[1]["call_id"])) is None
    assert len(set(rt.store.iter_keys()) - blobs_before) == 2


def test_concurrent_single_uploads_share_a_batch_and_each_gets_its_own_answer(
        env: CallvaultEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = env.runtime
    audios = [wav_bytes(1.0, seed=60 + i) for i in range(5)]
    metas = [metadata() for _ in range(5)]
    ingested_before = len(_entries(env, "recording.ingested"))
    batch_sizes: list[int] = []
    lanes_busy, release = threading.Event(), threading.Event()
    real_ingest_many = capture_ingest.ingest_many

    def held_first_batch(**kwargs: Any) -> list[IngestResult | Exception]:
        batch_sizes.append(len(kwargs["items"]))
        if len(batch_sizes) == 2:  # both lanes busy: hold them so the later uploads queue behind them
            lanes_busy.set()
        assert release.wait(30)
        return real_ingest_many(**kwargs)

    monkeypatch.setattr(capture_ingest, "ingest_many", held_first_batch)

    def upload(i: int) -> IngestResult | Exception:
        audio = io.BytesIO(b"RIFF but not audio" if i == 3 else audios[i])
        try:
            return ingest_recording(db=rt.db, store=rt.store, keyring=rt.keyring, audio=audio,
                                    metadata=metas[i], actor="pbx", source_ip="127.0.0.1")
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = [pool.submit(upload, 0), pool.submit(upload, 1)]
        assert lanes_busy.wait(30)
        futures += [pool.submit(upload, i) for i in range(2, 5)]  # these three wait for a lane together
        deadline = time.monotonic() + 30
        while sum(len(q) for q in capture_ingest._SINGLE_INGESTS._queues.values()) < 3:
            assert time.monotonic() < deadline, "the uploads did not queue"
            time.sleep(0.01)
        release.set()
        outcomes = [f.result() for f in futures]

    assert sorted(batch_sizes) == [1, 1, 3]
    assert isinstance(outcomes[3], InvalidInput) and "audio" in outcomes[3].message
    stored = {}
    for i in (0, 1, 2, 4):
        outcome = outcomes[i]
        assert isinstance(outcome, IngestResult) and outcome.created
        assert _decrypted(env, outcome.recording_id) == audios[i]
        stored[outcome.recording_id] = metas[i]["call_id"]
    with rt.db.unit_of_work() as session:
        assert session.scalar(select(Recording).where(Recording.call_id == metas[3]["call_id"])) is None
        assert {r.id: r.call_id for r in session.scalars(select(Recording).where(Recording.id.in_(stored)))} == stored
    ingested = _entries(env, "recording.ingested")[ingested_before:]
    assert sorted(e.object_id for e in ingested) == sorted(stored)
    assert all(e.actor == "pbx" for e in ingested)
