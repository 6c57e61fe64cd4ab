"""Sealing small content (transcripts, CRM notes) under a recording's data key.

The recording's data key encrypts exactly one audio blob (the contract in ``storage.crypto``), so it
is never used directly here: each sealed item gets its own key, HKDF-SHA-256(data key, random salt,
info = context). The salt is stored in front of the ciphertext. Destroying the data key destroys
every key derived from it: the transcript dies with the audio (crypto-shredding).

Sealed layout: ``b"CVS1" || salt(16) || storage.crypto blob`` with ``context`` (e.g.
``recording_id + b"|transcript"``) bound into every chunk's AAD, so a transcript cannot be passed
off as a CRM note or as another recording's.
"""

from __future__ import annotations

import io
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session

from callvault.core.errors import IntegrityError, NotFound
from callvault.recordings.models import DataKey
from callvault.storage.crypto import EncryptedBlobReader, encrypt_stream
from callvault.storage.keys import Keyring, WrappedKey

_MAGIC = b"CVS1"
_SALT = 16
_CHUNK = 64 * 1024

TRANSCRIPT = b"|transcript"
CRM_NOTE = b"|crm-note"
CRM_CHECK = b"|crm-check"


def context_for(recording_id: str, kind: bytes) -> bytes:
    return recording_id.encode() + kind


def data_key_for(session: Session, *, keyring: Keyring, recording_id: str) -> bytes:
    """The recording's data key; NotFound when it was destroyed."""
    row = session.get(DataKey, recording_id)
    if row is None:
        raise NotFound("this recording's key has been destroyed; its content no longer exists")
    return keyring.unwrap(WrappedKey(kek_id=row.kek_id, wrapped=row.wrapped_key), recording_id=recording_id)


def _subkey(data_key: bytes, salt: bytes, context: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"callvault-seal|" + context).derive(data_key)


def seal(data_key: bytes, context: bytes, plaintext: bytes) -> bytes:
    salt = secrets.token_bytes(_SALT)
    sink = io.BytesIO()
    encrypt_stream(io.BytesIO(plaintext), len(plaintext), sink, data_key=_subkey(data_key, salt, context),
                   context=context, chunk_size=_CHUNK)
    return _MAGIC + salt + sink.getvalue()


def unseal(data_key: bytes, context: bytes, sealed: bytes) -> bytes:
    if not sealed.startswith(_MAGIC) or len(sealed) < len(_MAGIC) + _SALT:
        raise IntegrityError("sealed content has an unknown format: corrupted")
    salt = sealed[len(_MAGIC): len(_MAGIC) + _SALT]
    body = memoryview(sealed)[len(_MAGIC) + _SALT:]

    def read_at(offset: int, length: int) -> bytes:
        return bytes(body[offset: offset + length])

    reader = EncryptedBlobReader(read_at, data_key=_subkey(data_key, salt, context), context=context)
    return b"".join(reader.iter_all())
