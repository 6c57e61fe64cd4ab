"""Streaming (format version 2) blobs: written without knowing the length, read like version 1."""

from __future__ import annotations

import io
import random

import pytest

from callvault.core.errors import IntegrityError, InvalidInput
from callvault.storage.crypto import (
    HEADER_SIZE,
    STREAMING_FORMAT_VERSION,
    TAG_SIZE,
    EncryptedBlobReader,
    StreamingEncryptor,
    new_data_key,
    parse_header,
)

CONTEXT = b"rec-stream"
CHUNK = 64


def _stream(data: bytes, *, pieces: int = 7, context: bytes = CONTEXT) -> tuple[bytes, bytes]:
    key = new_data_key()
    sink = io.BytesIO()
    enc = StreamingEncryptor(sink, data_key=key, context=context, chunk_size=CHUNK)
    rng = random.Random(len(data))
    pos = 0
    while pos < len(data):
        n = rng.randint(1, max(1, len(data) // pieces + 1))
        enc.write(data[pos : pos + n])
        pos += n
    result = enc.close()
    blob = sink.getvalue()
    assert result.plaintext_size == len(data)
    assert result.ciphertext_size == len(blob)
    return blob, key


def _reader(blob: bytes, key: bytes, *, sized: bool = True, context: bytes = CONTEXT) -> EncryptedBlobReader:
    return EncryptedBlobReader(lambda o, n: blob[o : o + n], data_key=key, context=context,
                               blob_size=len(blob) if sized else None)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 10 * CHUNK + 5])
def test_streamed_blob_decrypts_to_what_was_written(size: int) -> None:
    data = random.Random(size).randbytes(size)
    blob, key = _stream(data)
    assert parse_header(blob).version == STREAMING_FORMAT_VERSION
    for sized in (True, False):
        reader = _reader(blob, key, sized=sized)
        assert reader.plaintext_size == size
        assert b"".join(reader.iter_all()) == data


def test_streamed_blob_serves_byte_ranges() -> None:
    data = random.Random(1).randbytes(7 * CHUNK + 13)
    blob, key = _stream(data)
    reader = _reader(blob, key)
    for start, end in [(0, 0), (5, 70), (CHUNK, 2 * CHUNK - 1), (100, len(data) - 1), (len(data) - 1, len(data) - 1)]:
        assert b"".join(reader.iter_range(start, end)) == data[start : end + 1]
    with pytest.raises(InvalidInput):
        list(reader.iter_range(0, len(data)))


def test_streamed_blob_cut_at_a_chunk_boundary_is_refused() -> None:
    data = random.Random(2).randbytes(5 * CHUNK + 3)
    blob, key = _stream(data)
    cut = blob[: HEADER_SIZE + 3 * (CHUNK + TAG_SIZE)]
    with pytest.raises(IntegrityError):
        _reader(cut, key)


def test_streamed_blob_cut_mid_chunk_or_extended_is_refused() -> None:
    data = random.Random(3).randbytes(5 * CHUNK)
    blob, key = _stream(data)
    chunk0 = blob[HEADER_SIZE : HEADER_SIZE + CHUNK + TAG_SIZE]
    for bad in (blob[:-1], blob[: HEADER_SIZE + 10], blob + b"\x00", blob + chunk0):
        with pytest.raises(IntegrityError):
            b"".join(_reader(bad, key).iter_all())


def test_streamed_blob_with_a_flipped_bit_is_refused_where_it_is_read() -> None:
    data = random.Random(4).randbytes(4 * CHUNK)
    blob, key = _stream(data)
    tampered = bytearray(blob)
    tampered[HEADER_SIZE + CHUNK + TAG_SIZE + 3] ^= 1  # inside chunk 1
    reader = _reader(bytes(tampered), key)
    assert b"".join(reader.iter_range(0, CHUNK - 1)) == data[:CHUNK]
    with pytest.raises(IntegrityError, match="chunk 1"):
        b"".join(reader.iter_all())


def test_streamed_blob_header_with_a_length_is_refused() -> None:
    blob, key = _stream(b"hello world" * 10)
    tampered = bytearray(blob)
    tampered[19] = 5  # low byte of the plaintext_size field
    with pytest.raises(IntegrityError, match="carries a length"):
        _reader(bytes(tampered), key)


def test_streamed_blob_under_another_recordings_context_is_refused() -> None:
    blob, key = _stream(b"x" * 200)
    with pytest.raises(IntegrityError):
        _reader(blob, key, context=b"other-recording")


def test_streaming_encryptor_cannot_be_written_after_close() -> None:
    enc = StreamingEncryptor(io.BytesIO(), data_key=new_data_key(), context=CONTEXT, chunk_size=CHUNK)
    enc.write(b"abc")
    enc.close()
    with pytest.raises(InvalidInput):
        enc.write(b"more")


def test_streaming_encryptor_holds_at_most_one_chunk_of_plaintext() -> None:
    sink = io.BytesIO()
    enc = StreamingEncryptor(sink, data_key=new_data_key(), context=CONTEXT, chunk_size=CHUNK)
    for _ in range(100):
        enc.write(b"y" * 37)
        assert len(enc._buffer) <= CHUNK
    assert sink.tell() > HEADER_SIZE + 50 * CHUNK
