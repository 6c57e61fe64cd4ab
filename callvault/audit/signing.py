"""The Ed25519 key that signs audit checkpoints.

Where it lives: ``$CALLVAULT_AUDIT_SIGNING_KEY_FILE`` if set (one key shared by every node, e.g. a
mounted secret), else ``<key dir>/audit-signing-ed25519.pem`` (PKCS#8 PEM, mode 0600), created by
``callvault init`` or ``callvault audit keygen``. The public key is what auditors keep: exported with
``callvault audit public-key`` and inside every export bundle, and pinned with ``--public-key``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from callvault.core.errors import ConfigurationError, InvalidInput

KEY_FILE_NAME = "audit-signing-ed25519.pem"
KEY_FILE_ENV = "CALLVAULT_AUDIT_SIGNING_KEY_FILE"


def signing_key_path(key_dir: Path, env: Mapping[str, str]) -> Path:
    """Where the signing key is (or would be created)."""
    override = env.get(KEY_FILE_ENV)
    return Path(override) if override else key_dir / KEY_FILE_NAME


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short, stable name of a public key: 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@dataclass(frozen=True)
class Signer:
    """A loaded private key and the id of its public half."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, message: bytes) -> str:
        return self.private_key.sign(message).hex()


def create_signing_key(path: Path) -> bool:
    """Create a new key at ``path`` (0600) unless one is there. Returns whether it created one."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL: two processes racing to create the key must not end up signing with different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def load_signer(path: Path) -> Signer:
    """Load the signing key, failing with a message that says how to create one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(
            f"no audit signing key at {path}; create one with `callvault audit keygen` "
            f"(or set {KEY_FILE_ENV})"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the audit signing key {path}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{path} is not an Ed25519 key")
    return Signer(key)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load a pinned public key (PEM), or the public half of a private key file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the public key file {path}: {exc}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"{path} is not a PEM Ed25519 public key") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise InvalidInput(f"{path} is not an Ed25519 key") from None
        return private.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(f"{path} is not an Ed25519 public key")
    return key


def signature_valid(public_key: Ed25519PublicKey, signature_hex: str, message: bytes) -> bool:
    try:
        public_key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True
