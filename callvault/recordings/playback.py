"""Reading a recording's audio back: unwrap its key, decrypt only the bytes asked for.

Every chunk is authenticated as it is decrypted; a whole-file read also checks the SHA-256 taken
at ingest. Nothing decrypted is written anywhere; it goes straight to the response.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.orm import Session

from callvault.core.errors import IntegrityError, InvalidInput, NotFound
from callvault.recordings.models import DataKey, Recording
from callvault.storage.blobstore import BlobStore
from callvault.storage.crypto import EncryptedBlobReader
from callvault.storage.keys import Keyring, WrappedKey

_RANGE_RE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
_MAX_POSITION_DIGITS = 19
"""Longer byte positions are past any recording (2^63 bytes), and ``int()`` refuses more than 4,300
digits with a ValueError: ``bytes=0-<5,000 digits>`` was an HTTP 500 (issue 24). Only ASCII digits count
(RFC 9110), not every Unicode digit ``\\d`` matches."""


class RangeNotSatisfiable(InvalidInput):
    """The Range header asks for bytes the recording does not have (HTTP 416)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One ``bytes=`` range per RFC 9110, or None for the whole file. Multi-range: whole file."""
    if not header:
        return None
    header = header.strip()
    if "," in header:
        return None
    match = _RANGE_RE.match(header)
    if not match or (not match.group(1) and not match.group(2)):
        raise RangeNotSatisfiable(f"unsupported Range header {header[:100]!r}; use bytes=START-END")
    first, last = match.group(1), match.group(2)
    if any(len(part.lstrip("0")) > _MAX_POSITION_DIGITS for part in (first, last)):
        raise RangeNotSatisfiable(f"Range header: a byte position of more than {_MAX_POSITION_DIGITS} digits is "
                                  f"past the end of any recording (this one has {size} bytes)")
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or end < start:
            raise RangeNotSatisfiable(f"Range header {header!r} is outside the recording's {size} bytes")
    else:
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable("a zero-length suffix range selects nothing")
        start, end = max(0, size - suffix), size - 1
    return ByteRange(start, end)


def open_reader(session: Session, *, store: BlobStore, keyring: Keyring, row: Recording) -> EncryptedBlobReader:
    """A decrypting reader for a recording; NotFound if its key was destroyed."""
    key_row = session.get(DataKey, row.id)
    if key_row is None:
        raise NotFound("this recording's key has been destroyed; its audio no longer exists")
    data_key = keyring.unwrap(WrappedKey(kek_id=key_row.kek_id, wrapped=key_row.wrapped_key), recording_id=row.id)
    reader = EncryptedBlobReader(store.ranged_reader(row.blob_key), data_key=data_key, context=row.id.encode())
    if reader.plaintext_size != row.size_bytes:
        raise IntegrityError(f"recording {row.id}: stored audio length does not match the catalog")
    return reader


def primed(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Decrypt the first block now, so a tampered start fails before any response is sent.

    A failure later in the stream can only break the connection (the status line is gone by then);
    the client sees a short body against Content-Length, never forged audio.
    """
    first = next(blocks, b"")
    return itertools.chain([first], blocks)


def stream(reader: EncryptedBlobReader, byte_range: ByteRange | None, expected_sha256: str | None) -> Iterator[bytes]:
    """Plaintext for the range (or all of it, checking SHA-256 at the end)."""
    if byte_range is not None:
        yield from reader.iter_range(byte_range.start, byte_range.end)
        return
    digest = hashlib.sha256()
    for block in reader.iter_all():
        digest.update(block)
        yield block
    if expected_sha256 and digest.hexdigest() != expected_sha256:
        raise IntegrityError("recording audio does not match the SHA-256 taken at ingest")
