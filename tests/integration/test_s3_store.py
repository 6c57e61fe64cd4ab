"""Recordings on a real S3-compatible store (SeaweedFS on loopback): the same guarantees as on disk."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from callvault.capture.ingest import ingest_recording
from callvault.cli.commands import initialise
from callvault.core.errors import ConfigurationError, IntegrityError, NotFound
from callvault.core.settings import load_settings
from callvault.recordings import playback
from callvault.recordings.models import Recording
from callvault.runtime import build_runtime
from callvault.storage.blobstore import open_blobstore
from callvault.storage.s3 import S3BlobStore
from tests.conftest import POLICY_A, fresh_database
from tests.support.audio import metadata, wav_bytes
from tests.support.s3server import ACCESS_KEY, SECRET_KEY, S3Server, start_s3_server

CREDS = {"CALLVAULT_S3_ACCESS_KEY": ACCESS_KEY, "CALLVAULT_S3_SECRET_KEY": SECRET_KEY}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


@pytest.fixture()
def store(s3: S3Server, request: pytest.FixtureRequest) -> S3BlobStore:
    prefix = request.node.name.replace("[", "-").replace("]", "")[:60]
    built = open_blobstore(s3.url("callvault-test", prefix, part_mb="5"), CREDS)
    assert isinstance(built, S3BlobStore)
    return built


def _play(env_runtime: object, store: S3BlobStore, rec_id: str, byte_range: playback.ByteRange | None) -> bytes:
    runtime = env_runtime
    with runtime.db.unit_of_work() as session:  # type: ignore[attr-defined]
        row = session.get(Recording, rec_id)
        reader = playback.open_reader(session, store=store, keyring=runtime.keyring, row=row)  # type: ignore[attr-defined]
    return b"".join(playback.stream(reader, byte_range, None if byte_range else row.sha256))


def test_long_call_goes_up_in_parts_and_plays_back_exactly(env: object, store: S3BlobStore) -> None:
    audio = wav_bytes(400.0, seed=5)  # 12.8 MB: three 5 MiB parts
    runtime = env.runtime  # type: ignore[attr-defined]
    result = ingest_recording(db=runtime.db, store=store, keyring=runtime.keyring, audio=io.BytesIO(audio),
                              metadata=metadata(), actor="test")
    assert _play(runtime, store, result.recording_id, None) == audio
    middle = playback.ByteRange(6_000_000, 6_300_000)
    assert _play(runtime, store, result.recording_id, middle) == audio[6_000_000:6_300_001]
    keys = list(store.iter_keys())
    assert len(keys) == 1 and result.recording_id in keys[0]
    raw = store.read_at(keys[0], 0, store.size(keys[0]))
    assert audio[5000:5100] not in raw  # only ciphertext in the bucket


def test_failed_upload_leaves_no_object(store: S3BlobStore) -> None:
    with pytest.raises(RuntimeError), store.writer("ab/cd/broken.cva") as sink:
        sink.write(b"x" * (6 * 1024 * 1024))  # one part already uploaded
        raise RuntimeError("connection dropped")
    assert not store.exists("ab/cd/broken.cva")
    assert list(store.iter_keys()) == []


def test_wrong_credentials_are_refused(s3: S3Server, store: S3BlobStore) -> None:
    with store.writer("ab/cd/secret.cva") as sink:
        sink.write(b"ciphertext")
    intruder = open_blobstore(s3.url("callvault-test", store.prefix),
                              {"CALLVAULT_S3_ACCESS_KEY": ACCESS_KEY, "CALLVAULT_S3_SECRET_KEY": "guess"})
    with pytest.raises(ConfigurationError, match="refused"):
        intruder.read_at("ab/cd/secret.cva", 0, 10)


def test_tampered_object_is_refused_on_playback(env: object, store: S3BlobStore) -> None:
    audio = wav_bytes(3.0, seed=6)
    runtime = env.runtime  # type: ignore[attr-defined]
    result = ingest_recording(db=runtime.db, store=store, keyring=runtime.keyring, audio=io.BytesIO(audio),
                              metadata=metadata(), actor="test")
    key = next(store.iter_keys())
    data = bytearray(store.read_at(key, 0, store.size(key)))
    data[100] ^= 0xFF
    store.client.put_object(Bucket=store.bucket, Key=store._object_key(key), Body=bytes(data))
    with pytest.raises(IntegrityError):
        _play(runtime, store, result.recording_id, None)


def test_missing_object_and_deletes(store: S3BlobStore) -> None:
    with pytest.raises(NotFound):
        store.size("ab/cd/none.cva")
    with store.writer("ab/cd/gone.cva") as sink:
        sink.write(b"abc")
    store.delete("ab/cd/gone.cva")
    store.delete("ab/cd/gone.cva")  # idempotent
    assert not store.exists("ab/cd/gone.cva")


def test_whole_product_runs_on_s3(tmp_path: Path, s3: S3Server, request: pytest.FixtureRequest) -> None:
    """init + ingest + play through the runtime built from CALLVAULT_STORAGE_URL."""
    (tmp_path / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as url:
        env = {"CALLVAULT_STORAGE_URL": s3.url("callvault-test", "product"), "CALLVAULT_DATABASE_URL": url, **CREDS}
        settings = load_settings(tmp_path / "data", env=env)
        initialise(settings, policy_file=POLICY_A, admin_user="admin", admin_password="a-long-password-1")
        runtime = build_runtime(settings)
        try:
            assert isinstance(runtime.store, S3BlobStore)
            audio = wav_bytes(1.0, seed=9)
            rec = ingest_recording(db=runtime.db, store=runtime.store, keyring=runtime.keyring,
                                   audio=io.BytesIO(audio), metadata=metadata(), actor="test")
            assert _play(runtime, runtime.store, rec.recording_id, None) == audio
        finally:
            runtime.close()


def test_an_objects_age_is_known_so_the_check_can_report_old_orphans(store: S3BlobStore) -> None:
    with store.writer("ab/cd/aged.cva") as sink:
        sink.write(b"abc")
    assert timedelta(0) <= store.age("ab/cd/aged.cva") <= timedelta(seconds=5)  # on the object store's clock
    with pytest.raises(NotFound):
        store.age("ab/cd/never.cva")
