"""Blob stores: atomic writes, ranged reads, safe keys, crash leftovers."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from callvault.core.errors import ConfigurationError, IntegrityError, InvalidInput, NotFound
from callvault.storage.blobstore import BlobStore, LocalBlobStore, MemoryBlobStore, open_blobstore
from callvault.storage.crypto import EncryptedBlobReader, encrypt_file, new_data_key

KEY = "ab/cd/0b9a7c1e-6f1d-4d51-9a3c-2f0f5b1c1d2e.cva"


class Boom(Exception):
    pass


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
    else:
        yield MemoryBlobStore()


def _put(store: BlobStore, key: str, data: bytes) -> None:
    with store.writer(key) as sink:
        sink.write(data)


def test_a_written_blob_can_be_read_back_by_range(store: BlobStore) -> None:
    _put(store, KEY, b"0123456789")
    assert store.exists(KEY)
    assert store.size(KEY) == 10
    assert store.read_at(KEY, 0, 10) == b"0123456789"
    assert store.read_at(KEY, 3, 4) == b"3456"


def test_reading_past_the_end_returns_only_what_exists(store: BlobStore) -> None:
    _put(store, KEY, b"0123456789")
    assert store.read_at(KEY, 8, 100) == b"89"
    assert store.read_at(KEY, 10, 5) == b""
    assert store.read_at(KEY, 50, 5) == b""


def test_a_negative_offset_or_length_is_refused(store: BlobStore) -> None:
    _put(store, KEY, b"abc")
    with pytest.raises(InvalidInput):
        store.read_at(KEY, -1, 2)
    with pytest.raises(InvalidInput):
        store.read_at(KEY, 0, -2)


def test_a_missing_blob_is_not_found(store: BlobStore) -> None:
    assert not store.exists(KEY)
    with pytest.raises(NotFound):
        store.read_at(KEY, 0, 1)
    with pytest.raises(NotFound):
        store.size(KEY)


def test_a_ranged_reader_reads_like_read_at_and_lets_go_of_the_file(store: BlobStore) -> None:
    _put(store, KEY, b"0123456789")
    open_before = len(os.listdir("/proc/self/fd"))
    read_at = store.ranged_reader(KEY)
    assert (read_at(0, 4), read_at(8, 100), read_at(10, 1)) == (b"0123", b"89", b"")
    with pytest.raises(InvalidInput):
        read_at(-1, 2)
    store.delete(KEY)  # a stream already under way keeps reading what it opened
    if isinstance(store, LocalBlobStore):
        assert read_at(4, 2) == b"45"
    del read_at
    assert len(os.listdir("/proc/self/fd")) == open_before, "the reader's file was not closed"
    with pytest.raises(NotFound):
        store.ranged_reader(KEY)


def test_a_directory_is_not_mistaken_for_a_blob(store: BlobStore) -> None:
    _put(store, KEY, b"abc")
    assert not store.exists("ab/cd")
    with pytest.raises(NotFound):
        store.read_at("ab/cd", 0, 1)
    with pytest.raises(NotFound):
        store.size("ab")


def test_deleting_is_idempotent(store: BlobStore) -> None:
    _put(store, KEY, b"abc")
    store.delete(KEY)
    store.delete(KEY)
    assert not store.exists(KEY)
    assert list(store.iter_keys()) == []


def test_an_exception_inside_the_writer_leaves_no_blob(store: BlobStore) -> None:
    with pytest.raises(Boom), store.writer(KEY) as sink:
        sink.write(b"partial audio")
        raise Boom
    assert not store.exists(KEY)
    assert list(store.iter_keys()) == []


def test_a_failed_rewrite_keeps_the_previous_blob_intact(store: BlobStore) -> None:
    _put(store, KEY, b"original")
    with pytest.raises(Boom), store.writer(KEY) as sink:
        sink.write(b"replacement that never finishes")
        raise Boom
    assert store.read_at(KEY, 0, 100) == b"original"


def test_a_completed_rewrite_replaces_the_blob(store: BlobStore) -> None:
    _put(store, KEY, b"original")
    _put(store, KEY, b"new")
    assert store.read_at(KEY, 0, 100) == b"new"


def test_iter_keys_lists_every_stored_blob(store: BlobStore) -> None:
    keys = ["aa/bb/one.cva", "aa/cc/two.cva", "zz/zz/three.cva"]
    for key in keys:
        _put(store, key, key.encode())
    assert sorted(store.iter_keys()) == sorted(keys)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../escape.cva",
        "ab/../../etc/passwd",
        "ab/..",
        "/etc/passwd",
        "ab//cd.cva",
        "ab/cd/",
        ".tmp/x.cva",
        "ab/.hidden",
        "ab\\cd.cva",
        "ab/cd e.cva",
        "ab/c\x00d",
        "x" * 600,
        "a..b/c.cva",
    ],
)
def test_unsafe_keys_are_rejected(store: BlobStore, bad: str) -> None:
    with pytest.raises(InvalidInput):
        store.writer(bad)
    with pytest.raises(InvalidInput):
        store.read_at(bad, 0, 1)
    with pytest.raises(InvalidInput):
        store.exists(bad)
    with pytest.raises(InvalidInput):
        store.delete(bad)


def test_local_writer_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(Boom), store.writer(KEY) as sink:
        sink.write(b"partial")
        raise Boom
    assert list((tmp_path / ".tmp").iterdir()) == []
    assert not (tmp_path / "ab").exists()


def test_local_blobs_and_directories_are_private(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    _put(store, KEY, b"ciphertext")
    path = tmp_path / "blobs" / KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (tmp_path / "blobs", tmp_path / "blobs" / "ab", tmp_path / "blobs" / "ab" / "cd"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert list((tmp_path / "blobs" / ".tmp").iterdir()) == []


def test_local_iter_keys_skips_unfinished_writes(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    _put(store, KEY, b"done")
    with store.writer("ab/cd/unfinished.cva") as sink:
        sink.write(b"in progress")
        assert list(store.iter_keys()) == [KEY]
    assert sorted(store.iter_keys()) == sorted([KEY, "ab/cd/unfinished.cva"])


def test_cleanup_removes_only_stale_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    stale = tmp_path / ".tmp" / "blob-crashed.part"
    fresh = tmp_path / ".tmp" / "blob-writing.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    an_hour_ago = fresh.stat().st_mtime - 3600  # on the disk's clock, which may differ from this host's
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert store.cleanup_temp(older_than_seconds=600) == 1
    assert not stale.exists()
    assert fresh.exists()
    with pytest.raises(InvalidInput):
        store.cleanup_temp(older_than_seconds=-1)


def test_an_encrypted_recording_round_trips_through_a_local_store(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    audio = tmp_path / "call.wav"
    data = os.urandom(300_000)
    audio.write_bytes(data)
    key = new_data_key()
    with store.writer(KEY) as sink:
        result = encrypt_file(audio, sink, data_key=key, context=b"rec-9")
    assert store.size(KEY) == result.ciphertext_size
    reader = EncryptedBlobReader(lambda o, n: store.read_at(KEY, o, n), data_key=key, context=b"rec-9")
    assert b"".join(reader.iter_range(65_530, 200_000)) == data[65_530:200_001]
    reader.verify_sha256(result.sha256_hex)


def test_tampering_with_a_stored_blob_is_detected_on_read(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    audio = tmp_path / "call.wav"
    audio.write_bytes(os.urandom(10_000))
    key = new_data_key()
    with store.writer(KEY) as sink:
        encrypt_file(audio, sink, data_key=key, context=b"rec-9")
    path = tmp_path / "blobs" / KEY
    blob = bytearray(path.read_bytes())
    blob[5000] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match="chunk 0"):
        reader = EncryptedBlobReader(lambda o, n: store.read_at(KEY, o, n), data_key=key, context=b"rec-9")
        list(reader.iter_all())


def test_open_blobstore_understands_paths_and_urls(tmp_path: Path) -> None:
    by_path = open_blobstore(str(tmp_path / "a"))
    by_url = open_blobstore(f"file://{tmp_path / 'b'}")
    assert isinstance(by_path, LocalBlobStore) and by_path.root == tmp_path / "a"
    assert isinstance(by_url, LocalBlobStore) and by_url.root == tmp_path / "b"
    assert isinstance(open_blobstore("memory://"), MemoryBlobStore)


@pytest.mark.parametrize("url, message", [
    ("s3://", "names no bucket"),
    ("s3://bucket/prefix?colour=blue", "unknown option"),
    ("s3://bucket?lock_days=soon", "whole numbers"),
    ("s3://bucket?part_mb=1", "at least 5 MiB"),
])
def test_open_blobstore_explains_a_bad_s3_url(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_blobstore(url, {})


@pytest.mark.parametrize("url", ["ftp://host/x", "file://relative/path", "", "gopher://x"])
def test_open_blobstore_rejects_unknown_urls_naming_them(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_blobstore(url)
    if url:
        assert url in raised.value.message
