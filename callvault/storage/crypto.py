"""Chunked AES-256-GCM for recording audio: streaming to write, seekable to read.

A recording blob is a fixed header followed by chunks::

    header (HEADER_SIZE = 36 bytes, big-endian)
      magic           4s   b"CVA1"
      version         B    FORMAT_VERSION
      reserved        3s   zero; a reader refuses anything else
      chunk_size      I    plaintext bytes per chunk (the last chunk may be shorter, even empty)
      plaintext_size  Q    total plaintext length
      file_id         16s  random per blob
    chunk i            AES-256-GCM(plaintext_i) = ciphertext_i || 16-byte tag

Why this shape:

* Playback serves HTTP Range requests, so a reader must decrypt any byte range by touching
  only the chunks that hold it. Fixed-size chunks make chunk ``i`` sit at a computable offset.
* Each chunk is authenticated with AAD = header bytes || chunk index (u64) || last-chunk flag
  (u8) || ``context`` (the recording id). So chunks cannot be reordered (index), the blob
  cannot be cut short at a chunk boundary or extended (last flag + header length), the header
  cannot be altered (it is in every chunk's AAD), and a blob cannot be passed off as another
  recording's (context).
* Empty plaintext still produces one empty, authenticated last chunk, so "empty" is a claim
  the key holder made rather than what a truncated file looks like.

Nonces: chunk ``i`` uses nonce = file_id[:4] || u64(i). **Contract: a data key encrypts exactly
one blob, once** (``new_data_key()`` per recording, never reused, also not when re-ingesting the
same audio). Under that contract the chunk index alone makes every (key, nonce) pair unique;
the file-id prefix is only a cheap second line of defence against an accidental reuse.

No plaintext is written anywhere by this module: plaintext lives only in memory buffers.

Format version 2 (streaming, ``StreamingEncryptor``) is for writers that do not know the length
up front (live call capture). Its header is the same 36 bytes with ``version`` = 2 and
``plaintext_size`` = 0; chunks and AAD are exactly as above. The length is derived from the blob
size instead: every chunk but the last is full, so ``blob size - HEADER_SIZE`` fixes the chunk
count and the last chunk's length. Truncation at a chunk boundary or appended chunks still fail,
because the chunk that would become the last was not encrypted with the last-chunk flag set
(or, appended, one was encrypted as last and is now not). A reader therefore needs the blob's
size for version 2: pass ``blob_size``, or the reader finds the end by probing ``read_at``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import io
import os
import secrets
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callvault.core.errors import IntegrityError, InvalidInput

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "STREAMING_FORMAT_VERSION",
    "TAG_SIZE",
    "EncryptResult",
    "EncryptedBlobReader",
    "Header",
    "StreamingEncryptor",
    "ciphertext_size_for",
    "encrypt_file",
    "encrypt_stream",
    "new_data_key",
    "parse_header",
]

MAGIC: Final = b"CVA1"
FORMAT_VERSION: Final = 1
STREAMING_FORMAT_VERSION: Final = 2
DATA_KEY_SIZE: Final = 32
TAG_SIZE: Final = 16
FILE_ID_SIZE: Final = 16
DEFAULT_CHUNK_SIZE: Final = 64 * 1024
# Bounds on the chunk size: below 16 bytes the 16-byte tag dominates; above 16 MiB a reader
# fed a hostile header would have to buffer too much for one chunk.
MIN_CHUNK_SIZE: Final = 16
MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024
# How much ciphertext a reader asks its blob store for in one call: few round trips (matters
# for object stores) while keeping memory per request small.
READ_BATCH_BYTES: Final = 1024 * 1024
# Later reads of a long stream are larger: each hand-over to the read-ahead thread costs a thread
# wake-up, which 4 MiB at a time amortises (measured: 1 MiB read-ahead was slower than none).
READ_AHEAD_BYTES: Final = 4 * 1024 * 1024
# Reads the next batch of a long stream while the current one is decrypted (EncryptedBlobReader). Shared
# by every stream of the process: a stream has at most one read queued, and a read is short. If every
# thread is busy, a stream waits at most _READ_AHEAD_START_WAIT for its read to start, then decrypts.
_READ_AHEAD: Final = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blob-read-ahead")
_READ_AHEAD_START_WAIT: Final = 0.005

_HEADER: Final = struct.Struct(">4sB3sIQ16s")
HEADER_SIZE: Final = _HEADER.size  # 36
_CHUNK_TRAILER: Final = struct.Struct(">QB")
_NONCE_INDEX: Final = struct.Struct(">Q")
_RESERVED: Final = b"\x00\x00\x00"
_WRITE_BATCH: Final = 1 << 20
"""Ciphertext is handed to the writer thread in batches of about this size (fewer syscalls)."""
_WRITE_QUEUE: Final = 4
"""Batches allowed in flight to the writer thread (a few MiB at most: memory stays small)."""


def new_data_key() -> bytes:
    """A fresh 256-bit data key. Use one per recording and never for a second blob."""
    return secrets.token_bytes(DATA_KEY_SIZE)


@dataclass(frozen=True, slots=True)
class Header:
    """The parsed blob header. ``to_bytes()`` reproduces the stored bytes exactly."""

    version: int
    chunk_size: int
    plaintext_size: int
    file_id: bytes

    @property
    def chunk_count(self) -> int:
        """Number of chunks, always at least one (empty plaintext has one empty chunk)."""
        return _chunk_count(self.plaintext_size, self.chunk_size)

    def to_bytes(self) -> bytes:
        return _HEADER.pack(
            MAGIC, self.version, _RESERVED, self.chunk_size, self.plaintext_size, self.file_id
        )


@dataclass(frozen=True, slots=True)
class EncryptResult:
    """What ``encrypt_file`` wrote: sizes for the catalog, SHA-256 of the plaintext for dedup/checks."""

    plaintext_size: int
    ciphertext_size: int
    sha256_hex: str


def parse_header(data: bytes) -> Header:
    """Parse the first ``HEADER_SIZE`` bytes of a blob; extra bytes are ignored.

    Raises IntegrityError for anything that is not a header this version wrote: short data,
    wrong magic, unknown version, non-zero reserved bytes, out-of-range chunk size. The header
    is only *authenticated* once a chunk decrypts (it is in every chunk's AAD).
    """
    if len(data) < HEADER_SIZE:
        raise IntegrityError(
            f"recording blob is truncated: header needs {HEADER_SIZE} bytes, found {len(data)}"
        )
    magic, version, reserved, chunk_size, plaintext_size, file_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise IntegrityError("recording blob has a bad magic number: not a callvault blob, or corrupted")
    if version not in (FORMAT_VERSION, STREAMING_FORMAT_VERSION):
        raise IntegrityError(f"recording blob has unknown format version {version}: corrupted or newer")
    if version == STREAMING_FORMAT_VERSION and plaintext_size != 0:
        raise IntegrityError("streaming recording blob header carries a length: tampered or corrupted")
    if reserved != _RESERVED:
        raise IntegrityError("recording blob header has non-zero reserved bytes: tampered or corrupted")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise IntegrityError(f"recording blob header has an impossible chunk size {chunk_size}: corrupted")
    return Header(version=version, chunk_size=chunk_size, plaintext_size=plaintext_size, file_id=file_id)


def ciphertext_size_for(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Exact blob size for a plaintext of this length: header + plaintext + one tag per chunk."""
    if plaintext_size < 0:
        raise InvalidInput("plaintext size cannot be negative")
    _check_chunk_size(chunk_size)
    return HEADER_SIZE + plaintext_size + TAG_SIZE * _chunk_count(plaintext_size, chunk_size)


def encrypt_file(
    src_path: Path,
    sink: BinaryIO,
    *,
    data_key: bytes,
    context: bytes,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EncryptResult:
    """Encrypt the file ``src_path`` into ``sink`` and hash its plaintext in the same pass.

    The length goes into the header before any chunk, so it is taken from the open file; if
    the file shrinks or grows while being read this raises InvalidInput rather than writing a
    blob that disagrees with its own header. ``sink`` receives ciphertext only; whether it is
    durable/atomic is the caller's business (``BlobStore.writer``). ``data_key`` must never
    have encrypted anything else (see the module docstring).
    """
    _check_arguments(data_key, context, chunk_size)
    try:
        # Unbuffered: readinto then goes straight from the kernel into our reusable buffer.
        src = open(src_path, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise InvalidInput(f"cannot read source audio {src_path}: {exc.strerror or exc}") from exc
    with src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"source audio {src_path} is not a regular file")
        return _encrypt(src, st.st_size, sink, data_key, context, chunk_size, name=str(src_path))


def encrypt_stream(
    source: BinaryIO | io.RawIOBase,
    size: int,
    sink: BinaryIO,
    *,
    data_key: bytes,
    context: bytes,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EncryptResult:
    """Encrypt exactly ``size`` bytes read from ``source``'s current position (e.g. an upload).

    ``size`` is needed up front because the header carries it. If ``source`` ends early, or
    holds more than ``size`` bytes, InvalidInput is raised; the caller must then discard what
    ``sink`` received (``BlobStore.writer`` does so when the exception leaves its block).
    Same key contract as ``encrypt_file``.
    """
    _check_arguments(data_key, context, chunk_size)
    return _encrypt(source, size, sink, data_key, context, chunk_size, name="stream")


def _encrypt(
    source: BinaryIO | io.RawIOBase,
    size: int,
    sink: BinaryIO,
    data_key: bytes,
    context: bytes,
    chunk_size: int,
    *,
    name: str,
) -> EncryptResult:
    aead = AESGCM(data_key)
    if size < 0:
        raise InvalidInput("plaintext size cannot be negative")
    header = Header(FORMAT_VERSION, chunk_size, size, secrets.token_bytes(FILE_ID_SIZE))
    header_bytes = header.to_bytes()
    _write_all(sink, header_bytes)
    nonce_prefix = header.file_id[:4]
    count = header.chunk_count
    digest = hashlib.sha256()
    # Work goes in batches of whole chunks (about _WRITE_BATCH bytes). The calling thread reads a batch
    # into a reusable plaintext buffer and encrypts it chunk by chunk straight into a reusable ciphertext
    # buffer (``encrypt_into``: no per-chunk allocation, no join). Two more threads then hash the
    # plaintext and write the ciphertext. Hashing is the largest cost per byte and writing the next;
    # both release the GIL, so on two cores they overlap each other and the next batch's encryption,
    # which holds it. Each in-flight batch owns one slot of buffers, so memory stays at _WRITE_QUEUE + 1
    # slots of about 2 x _WRITE_BATCH bytes, and a slot is refilled only after the batch that used it
    # was hashed and written (the sink must not keep the view it was given, as any file's ``write``
    # does not). Each thread handles its batches in order, so the digest and the file come out in order.
    # A blob of one batch (a short call) is hashed and written inline: starting and waiting for threads
    # would cost more than it overlaps.
    per_batch = max(1, _WRITE_BATCH // chunk_size)
    batches = -(-count // per_batch)
    slot_plain = min(per_batch * chunk_size, max(size, 1))
    slots = [(memoryview(bytearray(slot_plain)), memoryview(bytearray(slot_plain + per_batch * TAG_SIZE)))
             for _ in range(min(_WRITE_QUEUE + 1, batches))]
    fill = _filler(source)
    written = len(header_bytes)
    pending: collections.deque[tuple[Future[None], ...]] = collections.deque()
    with contextlib.ExitStack() as threads:
        hasher = writer = None
        if batches > 1:
            hasher = threads.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-hasher"))
            writer = threads.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-writer"))

        def hand_off(plain: memoryview, cipher: memoryview) -> tuple[Future[None], ...]:
            if hasher is None or writer is None:
                digest.update(plain)
                _write_all(sink, cipher)
                return ()
            return hasher.submit(digest.update, plain), writer.submit(_write_all, sink, cipher)

        try:
            for batch_no, first in enumerate(range(0, count, per_batch)):
                last = min(count, first + per_batch)  # exclusive
                plain, cipher = slots[batch_no % len(slots)]
                while pending and len(pending) >= len(slots) - 1:
                    _finish(pending.popleft())  # frees this slot: the batch that used it is done
                want = min(size, last * chunk_size) - first * chunk_size
                if fill(plain[:want]) != want:
                    raise InvalidInput(f"source audio {name} ended before its declared {size} bytes")
                out = 0
                for index in range(first, last):
                    lo = (index - first) * chunk_size
                    n = min(chunk_size, want - lo)
                    aad = header_bytes + _CHUNK_TRAILER.pack(index, index == count - 1) + context
                    out += aead.encrypt_into(nonce_prefix + _NONCE_INDEX.pack(index), plain[lo:lo + n], aad,
                                             cipher[out:out + n + TAG_SIZE])
                written += out
                pending.append(hand_off(plain[:want], cipher[:out]))
            while pending:
                _finish(pending.popleft())
        finally:
            for futures in pending:
                for future in futures:
                    future.cancel()
    if source.read(1):
        raise InvalidInput(f"source audio {name} holds more than its declared {size} bytes")
    return EncryptResult(plaintext_size=size, ciphertext_size=written, sha256_hex=digest.hexdigest())


class EncryptedBlobReader:
    """Decrypts a blob written by ``encrypt_file``, whole or by byte range.

    ``read_at(offset, length)`` must return the blob's bytes at ``offset``: exactly ``length``
    of them, or fewer only where the blob ends (like ``pread``). Any blob store fits.

    Construction reads the header and authenticates the last chunk. That proves the header
    (and so ``plaintext_size``) is genuine for this key and context, and that the blob is
    neither truncated nor padded, before a caller announces a Content-Length. Every chunk
    yielded later is authenticated before any of its plaintext is released.
    """

    def __init__(
        self, read_at: Callable[[int, int], bytes], *, data_key: bytes, context: bytes, blob_size: int | None = None
    ) -> None:
        self._aead = AESGCM(_check_data_key(data_key))
        self._context = _check_context(context)
        self._read_at = read_at
        header_bytes = bytes(read_at(0, HEADER_SIZE))
        self._header = parse_header(header_bytes)
        self._header_bytes = header_bytes[:HEADER_SIZE]
        self._nonce_prefix = self._header.file_id[:4]
        self._chunk_size = self._header.chunk_size
        self._stride = self._chunk_size + TAG_SIZE
        if self._header.version == STREAMING_FORMAT_VERSION:
            size = blob_size if blob_size is not None else _probe_size(read_at)
            self._count, self._plaintext_size = _streaming_layout(size, self._chunk_size)
        else:
            self._count, self._plaintext_size = self._header.chunk_count, self._header.plaintext_size
        self._last_plaintext = self._load_last_chunk()

    @property
    def plaintext_size(self) -> int:
        """Authenticated plaintext length in bytes (for version 2, derived from the blob size)."""
        return self._plaintext_size

    @property
    def header(self) -> Header:
        """The header as stored; for version 2 its ``plaintext_size`` is 0 (use the reader's)."""
        return self._header

    def iter_range(self, start: int, end_inclusive: int) -> Iterator[bytes]:
        """Yield the plaintext bytes ``start..end_inclusive`` (HTTP Range semantics).

        Only the chunks covering the range are read and decrypted, several per ``read_at``
        call. Raises InvalidInput for a range outside ``0..plaintext_size-1`` and
        IntegrityError as soon as a chunk fails authentication (nothing from it is yielded).
        """
        size = self.plaintext_size
        if not (0 <= start <= end_inclusive < size):
            raise InvalidInput(
                f"byte range {start}-{end_inclusive} is outside the recording (0-{size - 1})"
                if size
                else "the recording is empty; no byte range can be read"
            )
        return self._iter_chunks(start, end_inclusive)

    def iter_all(self) -> Iterator[bytes]:
        """Yield the whole plaintext in order; nothing for an empty recording."""
        if self.plaintext_size == 0:
            return iter(())
        return self._iter_chunks(0, self.plaintext_size - 1)

    def verify_sha256(self, expected_hex: str) -> None:
        """Decrypt everything and raise IntegrityError unless its SHA-256 is ``expected_hex``."""
        digest = hashlib.sha256()
        for block in self.iter_all():
            digest.update(block)
        actual = digest.hexdigest()
        if not hmac.compare_digest(actual, expected_hex.strip().lower()):
            raise IntegrityError(
                f"recording plaintext SHA-256 is {actual}, expected {expected_hex}: tampered or corrupted"
            )

    # -- internals -------------------------------------------------------------------------

    def _chunk_plaintext_len(self, index: int) -> int:
        if index == self._count - 1:
            return self.plaintext_size - index * self._chunk_size
        return self._chunk_size

    def _decrypt(self, index: int, ciphertext: memoryview | bytes) -> bytes:
        is_last = index == self._count - 1
        aad = b"".join((self._header_bytes, _CHUNK_TRAILER.pack(index, is_last), self._context))
        try:
            return self._aead.decrypt(self._nonce_prefix + _NONCE_INDEX.pack(index), ciphertext, aad)
        except InvalidTag:
            raise IntegrityError(
                f"recording ciphertext failed authentication at chunk {index}: tampered or corrupted"
            ) from None

    def _load_last_chunk(self) -> bytes:
        index = self._count - 1
        offset = HEADER_SIZE + index * self._stride
        length = self._chunk_plaintext_len(index) + TAG_SIZE
        # Ask for one byte more than should exist, to notice bytes appended after the last chunk.
        data = self._read_at(offset, length + 1)
        if len(data) < length:
            raise IntegrityError(f"recording ciphertext is truncated at chunk {index}: tampered or corrupted")
        if len(data) > length:
            raise IntegrityError("recording ciphertext has bytes after its last chunk: tampered or corrupted")
        return self._decrypt(index, data)

    def _iter_chunks(self, start: int, end_inclusive: int) -> Iterator[bytes]:
        cs = self._chunk_size
        first, last = start // cs, end_inclusive // cs
        stride, decrypt = self._stride, self._decrypt
        pending: Future[memoryview] | None = None
        index = first
        per_batch = max(1, READ_BATCH_BYTES // stride)  # a small first read: the first byte comes soon
        while index <= last:
            batch_end = min(last, index + per_batch - 1)
            if pending is not None:
                data = pending.result()
            elif self._fetch_end(batch_end) >= index:
                data = self._fetch(index, self._fetch_end(batch_end))
            # While this batch is decrypted (which holds the GIL), the next one is read on the read-ahead
            # thread (``pread`` and an object store's client let go of it), so the copy out of the page
            # cache, or the wait on the network, overlaps the decryption instead of adding to it.
            per_batch = max(1, READ_AHEAD_BYTES // stride)
            after, after_end = batch_end + 1, min(last, batch_end + per_batch)
            pending = None
            if after <= last and self._fetch_end(after_end) >= after:
                pending = _read_ahead(self._fetch, after, self._fetch_end(after_end))
            for i in range(index, batch_end + 1):
                if i == self._count - 1:
                    plaintext = self._last_plaintext
                else:
                    pos = (i - index) * stride
                    plaintext = decrypt(i, data[pos : pos + stride])
                if i in (first, last):
                    lo = start - i * cs if i == first else 0
                    hi = end_inclusive - i * cs + 1 if i == last else len(plaintext)
                    yield plaintext if lo == 0 and hi == len(plaintext) else plaintext[lo:hi]
                else:  # a whole chunk inside the range (most of a long stream)
                    yield plaintext
            index = batch_end + 1

    def _fetch_end(self, batch_end: int) -> int:
        """The last chunk to read for a batch: the blob's last chunk was authenticated and kept at
        construction, so it is never fetched again (a batch of only that chunk reads nothing)."""
        return batch_end - 1 if batch_end == self._count - 1 else batch_end

    def _fetch(self, index: int, fetch_end: int) -> memoryview:
        """Ciphertext of chunks ``index..fetch_end`` in one read; IntegrityError if the blob ends early."""
        offset = HEADER_SIZE + index * self._stride
        length = (fetch_end - index + 1) * self._stride
        data = memoryview(self._read_at(offset, length))
        if len(data) < length:
            bad = index + len(data) // self._stride
            raise IntegrityError(f"recording ciphertext is truncated at chunk {bad}: tampered or corrupted")
        return data


def _read_ahead(fetch: Callable[[int, int], memoryview], index: int, fetch_end: int) -> Future[memoryview]:
    """Start reading chunks ``index..fetch_end`` on the read-ahead pool.

    Waits (briefly) until the read has begun: AES-GCM decryption holds the GIL for as long as it
    runs, so a read that has not yet entered ``pread`` by then would only start when the decryption
    of the current batch is over, and nothing would overlap.
    """
    started = threading.Event()

    def read() -> memoryview:
        started.set()
        return fetch(index, fetch_end)

    future = _READ_AHEAD.submit(read)
    started.wait(_READ_AHEAD_START_WAIT)
    return future


class StreamingEncryptor:
    """Encrypts plaintext of unknown length as it arrives (format version 2), into ``sink``.

    ``write`` may be called with any amount; a chunk is encrypted and written as soon as it is
    known not to be the last one (that is, when the next byte arrives), so at most one chunk of
    plaintext is ever held in memory. ``close`` encrypts the remainder as the last chunk (empty if
    nothing was written) and returns the sizes and the plaintext SHA-256. Same key contract as
    ``encrypt_file``: a fresh data key per blob. Writes go to ``sink`` synchronously.
    """

    def __init__(
        self, sink: BinaryIO, *, data_key: bytes, context: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> None:
        self._aead = AESGCM(_check_arguments(data_key, context, chunk_size))
        self._context = bytes(context)
        self._sink = sink
        self._chunk_size = chunk_size
        self._header = Header(STREAMING_FORMAT_VERSION, chunk_size, 0, secrets.token_bytes(FILE_ID_SIZE))
        self._header_bytes = self._header.to_bytes()
        self._nonce_prefix = self._header.file_id[:4]
        self._buffer = bytearray()
        self._index = 0
        self._plaintext = 0
        self._written = 0
        self._digest = hashlib.sha256()
        self._closed = False
        _write_all(sink, self._header_bytes)
        self._written = len(self._header_bytes)

    @property
    def plaintext_size(self) -> int:
        """Plaintext bytes accepted so far."""
        return self._plaintext

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise InvalidInput("the encrypted stream is already closed")
        self._buffer += data
        self._plaintext += len(data)
        self._digest.update(data)
        cs = self._chunk_size
        # Strictly more than a chunk: the full chunk is then certainly not the last one.
        while len(self._buffer) > cs:
            self._emit(memoryview(self._buffer)[:cs], is_last=False)
            del self._buffer[:cs]

    def close(self) -> EncryptResult:
        """Write the last chunk. Idempotent only in the sense that a second call raises InvalidInput."""
        if self._closed:
            raise InvalidInput("the encrypted stream is already closed")
        self._emit(memoryview(self._buffer), is_last=True)
        self._buffer = bytearray()
        self._closed = True
        return EncryptResult(plaintext_size=self._plaintext, ciphertext_size=self._written,
                             sha256_hex=self._digest.hexdigest())

    def _emit(self, piece: memoryview, *, is_last: bool) -> None:
        aad = self._header_bytes + _CHUNK_TRAILER.pack(self._index, is_last) + self._context
        ciphertext = self._aead.encrypt(self._nonce_prefix + _NONCE_INDEX.pack(self._index), bytes(piece), aad)
        _write_all(self._sink, ciphertext)
        self._written += len(ciphertext)
        self._index += 1


def _streaming_layout(blob_size: int, chunk_size: int) -> tuple[int, int]:
    """(chunk count, plaintext size) of a version-2 blob of ``blob_size`` bytes."""
    body = blob_size - HEADER_SIZE
    stride = chunk_size + TAG_SIZE
    if body < TAG_SIZE:
        raise IntegrityError("recording ciphertext is truncated at chunk 0: tampered or corrupted")
    count = -(-body // stride)
    last = body - (count - 1) * stride
    if last < TAG_SIZE:
        raise IntegrityError(f"recording ciphertext is truncated at chunk {count - 1}: tampered or corrupted")
    return count, body - count * TAG_SIZE


def _probe_size(read_at: Callable[[int, int], bytes]) -> int:
    """A blob's size found through ``read_at`` alone (pread semantics): gallop, then bisect."""
    low = HEADER_SIZE  # known to exist (the header was read)
    step = 1 << 16
    high = low + step
    while read_at(high - 1, 1):
        low, step = high, step * 2
        high = low + step
    # Invariant: the byte at low-1 exists and the byte at high-1 does not, so low <= size < high.
    while high - low > 1:
        mid = (low + high) // 2
        if read_at(mid - 1, 1):
            low = mid
        else:
            high = mid
    return low


def _chunk_count(plaintext_size: int, chunk_size: int) -> int:
    return max(1, -(-plaintext_size // chunk_size))


def _check_arguments(data_key: bytes, context: bytes, chunk_size: int) -> bytes:
    _check_context(context)
    _check_chunk_size(chunk_size)
    return _check_data_key(data_key)


def _check_data_key(data_key: bytes) -> bytes:
    if len(data_key) != DATA_KEY_SIZE:
        raise InvalidInput(f"a data key must be {DATA_KEY_SIZE} bytes, got {len(data_key)}")
    return data_key


def _check_context(context: bytes) -> bytes:
    # An empty context would silently drop the binding between a blob and its recording.
    if not context:
        raise InvalidInput("context must identify the recording (e.g. its id); it cannot be empty")
    return bytes(context)


def _check_chunk_size(chunk_size: int) -> None:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidInput(f"chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes")


def _filler(source: BinaryIO | io.RawIOBase) -> Callable[[memoryview], int]:
    """A function that fills a buffer from ``source``, returning fewer bytes only at its end."""
    readinto = getattr(source, "readinto", None)

    def fill(target: memoryview) -> int:
        filled = 0
        total = len(target)
        while filled < total:
            if readinto is not None:
                n = readinto(target[filled:])
            else:  # a minimal stream without readinto: one copy more, still correct
                block = source.read(total - filled)
                n = len(block) if block else 0
                target[filled : filled + n] = block or b""
            if not n:
                break
            filled += n
        return filled

    return fill


def _finish(futures: tuple[Future[None], ...]) -> None:
    """Wait for every future of one batch (re-raising the first failure)."""
    for future in futures:
        future.result()


def _write_all(sink: BinaryIO, data: bytes | memoryview) -> None:
    """Write every byte: raw (unbuffered) streams may accept only part of a write."""
    view = memoryview(data)
    while view:
        n = sink.write(view)
        if n is None:  # non-blocking stream that could not take anything now
            raise OSError("blob sink would block; a blocking stream is required")
        view = view[n:]
