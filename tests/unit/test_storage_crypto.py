"""The encrypted blob format: what playback and ingest can rely on, and what tampering looks like."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import pytest

from callvault.core.errors import IntegrityError, InvalidInput
from callvault.storage.crypto import (
    DEFAULT_CHUNK_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    EncryptedBlobReader,
    EncryptResult,
    ciphertext_size_for,
    encrypt_file,
    encrypt_stream,
    new_data_key,
    parse_header,
)

CONTEXT = b"rec-0001"
SMALL_CHUNK = 64


def _payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def _encrypt(
    tmp_path: Path, data: bytes, *, chunk_size: int = SMALL_CHUNK, context: bytes = CONTEXT
) -> tuple[bytes, bytes, EncryptResult]:
    src = tmp_path / "audio.wav"
    src.write_bytes(data)
    key = new_data_key()
    sink = io.BytesIO()
    result = encrypt_file(src, sink, data_key=key, context=context, chunk_size=chunk_size)
    return sink.getvalue(), key, result


def _reader(blob: bytes, key: bytes, context: bytes = CONTEXT) -> EncryptedBlobReader:
    return EncryptedBlobReader(
        lambda offset, length: blob[offset : offset + length], data_key=key, context=context
    )


def _decrypt_all(blob: bytes, key: bytes, context: bytes = CONTEXT) -> bytes:
    return b"".join(_reader(blob, key, context).iter_all())


def _chunk_span(index: int, chunk_size: int = SMALL_CHUNK) -> tuple[int, int]:
    start = HEADER_SIZE + index * (chunk_size + TAG_SIZE)
    return start, start + chunk_size + TAG_SIZE


@pytest.mark.parametrize(
    "size", [0, 1, SMALL_CHUNK - 1, SMALL_CHUNK, SMALL_CHUNK + 1, 5 * SMALL_CHUNK, 5 * SMALL_CHUNK + 3]
)
def test_round_trip_returns_the_original_bytes(tmp_path: Path, size: int) -> None:
    data = _payload(size)
    blob, key, _ = _encrypt(tmp_path, data)
    assert _decrypt_all(blob, key) == data


@pytest.mark.parametrize("size", [3 * 1024 * 1024 + 17, 2 * DEFAULT_CHUNK_SIZE])
def test_round_trip_of_several_megabytes_with_default_chunks(tmp_path: Path, size: int) -> None:
    data = _payload(size)
    blob, key, _ = _encrypt(tmp_path, data, chunk_size=DEFAULT_CHUNK_SIZE)
    reader = _reader(blob, key)
    assert reader.plaintext_size == size
    assert b"".join(reader.iter_all()) == data


@pytest.mark.parametrize("size", [0, 1, SMALL_CHUNK, 3 * SMALL_CHUNK + 5])
def test_encrypt_reports_sizes_and_the_plaintext_sha256(tmp_path: Path, size: int) -> None:
    data = _payload(size)
    blob, _, result = _encrypt(tmp_path, data)
    assert result.plaintext_size == size
    assert result.ciphertext_size == len(blob) == ciphertext_size_for(size, SMALL_CHUNK)
    assert result.sha256_hex == hashlib.sha256(data).hexdigest()


def test_empty_recording_still_carries_one_authenticated_chunk(tmp_path: Path) -> None:
    blob, key, _ = _encrypt(tmp_path, b"")
    assert len(blob) == HEADER_SIZE + TAG_SIZE
    assert list(_reader(blob, key).iter_all()) == []
    with pytest.raises(IntegrityError):
        _reader(blob[:HEADER_SIZE], key)


def test_every_byte_range_equals_the_same_slice_of_the_original(tmp_path: Path) -> None:
    data = _payload(4 * SMALL_CHUNK + 9)
    blob, key, _ = _encrypt(tmp_path, data)
    reader = _reader(blob, key)
    for start in range(len(data)):
        for end in range(start, len(data)):
            assert b"".join(reader.iter_range(start, end)) == data[start : end + 1], (start, end)


def test_random_ranges_of_a_large_recording_match_the_original(tmp_path: Path) -> None:
    data = _payload(2 * 1024 * 1024 + 333)
    blob, key, _ = _encrypt(tmp_path, data, chunk_size=DEFAULT_CHUNK_SIZE)
    reader = _reader(blob, key)
    rng = random.Random(20261123)
    edges = [0, 1, DEFAULT_CHUNK_SIZE - 1, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE + 1, len(data) - 1]
    pairs = [(a, b) for a in edges for b in edges if a <= b]
    for _ in range(200):
        a, b = sorted(rng.randrange(len(data)) for _ in range(2))
        pairs.append((a, b))
    for start, end in pairs:
        assert b"".join(reader.iter_range(start, end)) == data[start : end + 1], (start, end)


def test_a_range_reads_only_the_chunks_that_hold_it(tmp_path: Path) -> None:
    data = _payload(100 * SMALL_CHUNK)
    blob, key, _ = _encrypt(tmp_path, data)
    calls: list[tuple[int, int]] = []

    def read_at(offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return blob[offset : offset + length]

    reader = EncryptedBlobReader(read_at, data_key=key, context=CONTEXT)
    calls.clear()
    assert (
        b"".join(reader.iter_range(10 * SMALL_CHUNK + 5, 11 * SMALL_CHUNK + 1))
        == data[10 * SMALL_CHUNK + 5 : 11 * SMALL_CHUNK + 2]
    )
    assert sum(length for _, length in calls) == 2 * (SMALL_CHUNK + TAG_SIZE)


def test_a_long_read_fetches_many_chunks_per_store_call(tmp_path: Path) -> None:
    data = _payload(4 * 1024 * 1024)
    blob, key, _ = _encrypt(tmp_path, data, chunk_size=DEFAULT_CHUNK_SIZE)
    calls = 0

    def read_at(offset: int, length: int) -> bytes:
        nonlocal calls
        calls += 1
        return blob[offset : offset + length]

    assert b"".join(EncryptedBlobReader(read_at, data_key=key, context=CONTEXT).iter_all()) == data
    assert calls <= 8  # header + last chunk + ~1 MiB batches, not one call per 64 KiB chunk


def _stream_until_error(reader: EncryptedBlobReader) -> tuple[bytes, IntegrityError]:
    released = bytearray()
    with pytest.raises(IntegrityError) as caught:
        for block in reader.iter_all():
            released += block
    return bytes(released), caught.value


def test_a_long_stream_stops_exactly_before_a_tampered_chunk_read_ahead_of_it(tmp_path: Path) -> None:
    # Later batches of a long stream are read on the read-ahead thread while earlier ones are
    # decrypted; a bad chunk there must still stop the stream at that chunk, with all before it intact.
    data = _payload(12 * 1024 * 1024)
    blob, key, _ = _encrypt(tmp_path, data, chunk_size=DEFAULT_CHUNK_SIZE)
    tampered = bytearray(blob)
    tampered[_chunk_span(150, DEFAULT_CHUNK_SIZE)[0] + 9] ^= 0x01
    released, error = _stream_until_error(_reader(bytes(tampered), key))
    assert released == data[: 150 * DEFAULT_CHUNK_SIZE]
    assert "chunk 150" in str(error)


def test_a_blob_cut_short_while_it_streams_is_reported_where_it_ends(tmp_path: Path) -> None:
    data = _payload(12 * 1024 * 1024)
    blob, key, _ = _encrypt(tmp_path, data, chunk_size=DEFAULT_CHUNK_SIZE)
    cut_at = _chunk_span(100, DEFAULT_CHUNK_SIZE)[0]
    reads = 0

    def read_at(offset: int, length: int) -> bytes:  # the file is truncated after the reader opened it
        nonlocal reads
        reads += 1
        return blob[offset : offset + length] if reads <= 3 else blob[:cut_at][offset : offset + length]

    released, error = _stream_until_error(EncryptedBlobReader(read_at, data_key=key, context=CONTEXT))
    assert data.startswith(released) and len(released) <= 100 * DEFAULT_CHUNK_SIZE
    assert "truncated at chunk 100" in str(error)


@pytest.mark.parametrize("bad", [(-1, 3), (5, 4), (0, 4 * SMALL_CHUNK), (4 * SMALL_CHUNK, 4 * SMALL_CHUNK)])
def test_a_range_outside_the_recording_is_refused(tmp_path: Path, bad: tuple[int, int]) -> None:
    blob, key, _ = _encrypt(tmp_path, _payload(4 * SMALL_CHUNK))
    with pytest.raises(InvalidInput):
        _reader(blob, key).iter_range(*bad)


def test_flipping_any_bit_in_the_header_or_a_chunk_is_detected(tmp_path: Path) -> None:
    data = _payload(2 * SMALL_CHUNK + 10)
    blob, key, _ = _encrypt(tmp_path, data)
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 1 << (position % 8)
        with pytest.raises(IntegrityError):
            _decrypt_all(bytes(tampered), key)


def test_a_tampered_chunk_is_named_in_the_error(tmp_path: Path) -> None:
    blob, key, _ = _encrypt(tmp_path, _payload(4 * SMALL_CHUNK + 1))
    start, _ = _chunk_span(2)
    tampered = bytearray(blob)
    tampered[start + 3] ^= 0x80
    with pytest.raises(IntegrityError, match="failed authentication at chunk 2: tampered or corrupted"):
        _decrypt_all(bytes(tampered), key)


def test_a_bad_magic_number_is_reported_as_corruption(tmp_path: Path) -> None:
    blob, key, _ = _encrypt(tmp_path, b"hello")
    with pytest.raises(IntegrityError, match="magic"):
        _reader(b"XXXX" + blob[4:], key)


@pytest.mark.parametrize("cut", [1, TAG_SIZE, SMALL_CHUNK])
def test_truncating_the_last_chunk_is_detected(tmp_path: Path, cut: int) -> None:
    blob, key, _ = _encrypt(tmp_path, _payload(3 * SMALL_CHUNK))
    with pytest.raises(IntegrityError):
        _decrypt_all(blob[:-cut], key)


def test_cutting_the_blob_at_a_chunk_boundary_is_detected(tmp_path: Path) -> None:
    blob, key, _ = _encrypt(tmp_path, _payload(3 * SMALL_CHUNK))
    _, end_of_second = _chunk_span(1)
    with pytest.raises(IntegrityError):
        _decrypt_all(blob[:end_of_second], key)


def test_dropping_a_chunk_is_detected(tmp_path: Path) -> None:
    blob, key, _ = _encrypt(tmp_path, _payload(4 * SMALL_CHUNK))
    start, end = _chunk_span(1)
    with pytest.raises(IntegrityError):
        _decrypt_all(blob[:start] + blob[end:], key)


def test_swapping_two_chunks_is_detected(tmp_path: Path) -> None:
    blob, key, _ = _encrypt(tmp_path, _payload(4 * SMALL_CHUNK))
    a0, a1 = _chunk_span(0)
    b0, b1 = _chunk_span(1)
    swapped = blob[:a0] + blob[b0:b1] + blob[a0:a1] + blob[b1:]
    assert len(swapped) == len(blob)
    with pytest.raises(IntegrityError, match="chunk 0"):
        _decrypt_all(swapped, key)


def test_bytes_appended_after_the_last_chunk_are_detected(tmp_path: Path) -> None:
    blob, key, _ = _encrypt(tmp_path, _payload(2 * SMALL_CHUNK + 1))
    with pytest.raises(IntegrityError):
        _reader(blob + b"\x00", key)


def test_a_blob_cannot_be_read_as_another_recording(tmp_path: Path) -> None:
    blob, key, _ = _encrypt(tmp_path, _payload(3 * SMALL_CHUNK), context=b"rec-A")
    with pytest.raises(IntegrityError):
        _decrypt_all(blob, key, context=b"rec-B")


def test_a_blob_cannot_be_read_with_another_data_key(tmp_path: Path) -> None:
    blob, _, _ = _encrypt(tmp_path, _payload(3 * SMALL_CHUNK))
    with pytest.raises(IntegrityError):
        _decrypt_all(blob, new_data_key())


def test_a_chunk_moved_from_another_recording_is_detected(tmp_path: Path) -> None:
    blob_a, key, _ = _encrypt(tmp_path, _payload(3 * SMALL_CHUNK, seed=1))
    # Same key on purpose (the worst case): only the header/file id in the AAD stops the splice.
    src = tmp_path / "other.wav"
    src.write_bytes(_payload(3 * SMALL_CHUNK, seed=2))
    sink = io.BytesIO()
    encrypt_file(src, sink, data_key=key, context=CONTEXT, chunk_size=SMALL_CHUNK)
    blob_b = sink.getvalue()
    start, end = _chunk_span(1)
    with pytest.raises(IntegrityError, match="chunk 1"):
        _decrypt_all(blob_a[:start] + blob_b[start:end] + blob_a[end:], key)


def test_the_ciphertext_does_not_contain_the_plaintext(tmp_path: Path) -> None:
    data = b"The caller's card number is 4111 1111 1111 1111. " * 200
    blob, _, _ = _encrypt(tmp_path, data, chunk_size=DEFAULT_CHUNK_SIZE)
    for start in range(0, 64):
        assert data[start : start + 16] not in blob


def test_the_same_audio_encrypts_differently_each_time(tmp_path: Path) -> None:
    data = _payload(500)
    blob1, _, _ = _encrypt(tmp_path, data)
    blob2, _, _ = _encrypt(tmp_path, data)
    assert blob1[HEADER_SIZE:] != blob2[HEADER_SIZE:]


def test_verify_sha256_accepts_the_original_digest(tmp_path: Path) -> None:
    data = _payload(3 * SMALL_CHUNK + 1)
    blob, key, result = _encrypt(tmp_path, data)
    _reader(blob, key).verify_sha256(result.sha256_hex)
    _reader(blob, key).verify_sha256(result.sha256_hex.upper())


def test_verify_sha256_rejects_a_different_digest(tmp_path: Path) -> None:
    blob, key, _ = _encrypt(tmp_path, _payload(100))
    with pytest.raises(IntegrityError, match="SHA-256"):
        _reader(blob, key).verify_sha256(hashlib.sha256(b"something else").hexdigest())


def test_the_header_records_chunk_size_and_length(tmp_path: Path) -> None:
    blob, _, _ = _encrypt(tmp_path, _payload(1000), chunk_size=256)
    header = parse_header(blob)
    assert (header.version, header.chunk_size, header.plaintext_size, header.chunk_count) == (1, 256, 1000, 4)
    assert header.to_bytes() == blob[:HEADER_SIZE]


def test_a_short_header_is_reported_as_truncation() -> None:
    with pytest.raises(IntegrityError, match="truncated"):
        parse_header(b"CVA1\x01")


@pytest.mark.parametrize("chunk_size", [0, 8, 64 * 1024 * 1024])
def test_an_unreasonable_chunk_size_is_refused(tmp_path: Path, chunk_size: int) -> None:
    with pytest.raises(InvalidInput):
        _encrypt(tmp_path, b"abc", chunk_size=chunk_size)


def test_a_data_key_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.wav"
    src.write_bytes(b"abc")
    with pytest.raises(InvalidInput, match="32 bytes"):
        encrypt_file(src, io.BytesIO(), data_key=b"short", context=CONTEXT)


def test_an_empty_context_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.wav"
    src.write_bytes(b"abc")
    with pytest.raises(InvalidInput, match="context"):
        encrypt_file(src, io.BytesIO(), data_key=new_data_key(), context=b"")


def test_a_missing_source_file_is_reported_as_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read source audio"):
        encrypt_file(tmp_path / "nope.wav", io.BytesIO(), data_key=new_data_key(), context=CONTEXT)


def test_new_data_keys_are_32_random_bytes() -> None:
    keys = {new_data_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(len(k) == 32 for k in keys)


def test_an_upload_stream_encrypts_like_a_file(tmp_path: Path) -> None:
    data = _payload(5 * SMALL_CHUNK + 2)
    source = io.BytesIO(data)
    sink = io.BytesIO()
    key = new_data_key()
    result = encrypt_stream(source, len(data), sink, data_key=key, context=CONTEXT, chunk_size=SMALL_CHUNK)
    assert result.sha256_hex == hashlib.sha256(data).hexdigest()
    assert _decrypt_all(sink.getvalue(), key) == data


@pytest.mark.parametrize("declared", [99, 101])
def test_a_stream_whose_length_differs_from_the_declared_size_is_refused(declared: int) -> None:
    with pytest.raises(InvalidInput, match="declared"):
        encrypt_stream(
            io.BytesIO(b"x" * 100),
            declared,
            io.BytesIO(),
            data_key=new_data_key(),
            context=CONTEXT,
            chunk_size=SMALL_CHUNK,
        )
