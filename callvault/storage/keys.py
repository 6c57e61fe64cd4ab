"""Key-encryption keys (KEKs): wrapping per-recording data keys, rotation, crypto-shredding.

Every recording has its own random data key (``crypto.new_data_key``). The data key is stored
only *wrapped*: AES-256-GCM under a KEK, with AAD naming the KEK and the recording, so a
wrapped key copied onto another recording's row does not unwrap. Consequences:

* Crypto-shredding: deleting a recording's wrapped key makes its blob unreadable everywhere,
  including in backups of the blob store, without touching the blob.
* Backups: every destroyed wrapped key's fingerprint is appended to the key-destruction list
  (``<key_dir>/SHREDDED``, see ``shredlist``) and ``unwrap`` refuses a listed key, so a database
  backup restored next to the current key store cannot bring a destroyed recording back.
* Rotation: ``create_kek`` makes a new KEK current; older KEKs stay on the ring so existing
  wrapped keys still unwrap, and ``Keyring.rewrap`` moves them to the current KEK. Once no
  wrapped key names an old KEK, deleting that KEK file retires it.

Where KEKs come from (``load_keyring``): files ``<key_dir>/<id>.kek`` (base64 text, mode 0600)
with the current id in ``<key_dir>/CURRENT``, and/or the environment (``CALLVAULT_KEK`` or
``CALLVAULT_KEK_FILE``, optional ``CALLVAULT_KEK_ID``), which becomes current when present.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callvault.core.errors import ConfigurationError, IntegrityError, InvalidInput, NotFound
from callvault.storage._fs import fsync_dir, write_atomic, write_fd_and_close
from callvault.storage.shredlist import SHRED_LIST_NAME, ShredList, fingerprint

__all__ = [
    "KEK_SIZE",
    "Keyring",
    "WrappedKey",
    "create_kek",
    "current_kek_id",
    "kek_file",
    "load_keyring",
    "restore_kek_file",
    "retire_kek_file",
]

KEK_SIZE: Final = 32
_DATA_KEY_SIZE: Final = 32
_NONCE_SIZE: Final = 12
_WRAPPED_SIZE: Final = _NONCE_SIZE + _DATA_KEY_SIZE + 16
_AAD_PREFIX: Final = b"callvault-dek|"
# Ids become file names and go into AAD; "|" is excluded so the AAD stays unambiguous.
_KEK_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEK_SUFFIX: Final = ".kek"
_CURRENT: Final = "CURRENT"


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key encrypted under the KEK ``kek_id``: ``wrapped`` = nonce(12) || ciphertext || tag."""

    kek_id: str
    wrapped: bytes


class Keyring:
    """The KEKs this deployment holds, one of them current (used for every new wrap).

    Raises ConfigurationError if an id is malformed, a key is not 32 bytes, or ``current_id``
    is not among ``keys``. The key bytes never appear in ``repr``.
    """

    def __init__(self, keys: Mapping[str, bytes], current_id: str, *, shredded: ShredList | None = None,
                 key_dir: Path | None = None) -> None:
        for kek_id, key in keys.items():
            _check_kek_id(kek_id)
            if len(key) != KEK_SIZE:
                raise ConfigurationError(
                    f"key-encryption key {kek_id!r} is {len(key)} bytes; it must be {KEK_SIZE}"
                )
        if current_id not in keys:
            raise ConfigurationError(f"the current key-encryption key {current_id!r} is not on the keyring")
        self._aeads = {kek_id: AESGCM(bytes(key)) for kek_id, key in keys.items()}
        self._current_id = current_id
        self._shredded = shredded
        # With ``key_dir`` the ring follows ``callvault keys rotate`` in running processes: a changed
        # CURRENT file is noticed before the next wrap, and an unknown KEK id is looked up on disk.
        self._key_dir = key_dir
        self._stamp = _current_stamp(key_dir) if key_dir is not None else None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Keyring(ids={sorted(self._aeads)!r}, current_id={self._current_id!r})"

    @property
    def current_id(self) -> str:
        return self._current_id

    @property
    def kek_ids(self) -> frozenset[str]:
        return frozenset(self._aeads)

    @property
    def shredded(self) -> ShredList | None:
        """The key-destruction list this ring honours (None: a ring built without one, e.g. in tests)."""
        return self._shredded

    def record_destroyed(self, wrapped_keys: list[WrappedKey]) -> None:
        """Durably list these wrapped keys as destroyed; ``unwrap`` refuses them from now on.

        ConfigurationError if this ring has no destruction list: destroying keys without one would
        leave them restorable from any database backup.
        """
        if self._shredded is None:
            raise ConfigurationError("this keyring has no key-destruction list; load it with load_keyring")
        self._shredded.add(fingerprint(w.wrapped) for w in wrapped_keys)

    def is_destroyed(self, wrapped: WrappedKey) -> bool:
        """Whether this wrapped key is on the key-destruction list."""
        return self._shredded is not None and fingerprint(wrapped.wrapped) in self._shredded

    def wrap(self, data_key: bytes, *, recording_id: str) -> WrappedKey:
        """Encrypt ``data_key`` under the current KEK, bound to ``recording_id``."""
        if len(data_key) != _DATA_KEY_SIZE:
            raise InvalidInput(f"a data key must be {_DATA_KEY_SIZE} bytes, got {len(data_key)}")
        self._follow_key_dir(force=False)
        kek_id = self._current_id
        nonce = secrets.token_bytes(_NONCE_SIZE)  # random: one KEK wraps very many keys
        sealed = self._aeads[kek_id].encrypt(nonce, bytes(data_key), _aad(kek_id, recording_id))
        return WrappedKey(kek_id=kek_id, wrapped=nonce + sealed)

    def unwrap(self, wrapped: WrappedKey, *, recording_id: str) -> bytes:
        """The data key inside ``wrapped``.

        ConfigurationError if its KEK is not on this ring (a retired or missing key file);
        IntegrityError if it fails authentication: tampered, or wrapped for another recording;
        NotFound if the key was destroyed (on the key-destruction list, e.g. restored from a backup).
        """
        if self.is_destroyed(wrapped):
            raise NotFound(
                f"the data key of recording {recording_id} was destroyed; its audio no longer exists "
                "(a restored backup cannot bring it back)"
            )
        aead = self._aeads.get(wrapped.kek_id)
        if aead is None and self._key_dir is not None:
            self._follow_key_dir(force=True)  # rotated by another process since this ring was loaded
            aead = self._aeads.get(wrapped.kek_id)
        if aead is None:
            raise ConfigurationError(
                f"key-encryption key {wrapped.kek_id!r} is not loaded; restore its .kek file "
                f"or set it in the environment to read recording {recording_id}"
            )
        blob = bytes(wrapped.wrapped)
        if len(blob) != _WRAPPED_SIZE:
            raise IntegrityError(f"the wrapped data key of recording {recording_id} has the wrong length")
        try:
            return aead.decrypt(blob[:_NONCE_SIZE], blob[_NONCE_SIZE:], _aad(wrapped.kek_id, recording_id))
        except InvalidTag:
            raise IntegrityError(
                f"the wrapped data key of recording {recording_id} failed authentication: "
                "tampered, corrupted, or belongs to another recording"
            ) from None

    def rewrap(self, wrapped: WrappedKey, recording_id: str) -> WrappedKey:
        """Re-encrypt a wrapped key under the current KEK (rotation). Always a fresh wrap."""
        return self.wrap(self.unwrap(wrapped, recording_id=recording_id), recording_id=recording_id)

    def refresh(self) -> None:
        """Pick up a rotation done by another process now (``wrap`` and ``unwrap`` do it when needed)."""
        self._follow_key_dir(force=False)

    def _follow_key_dir(self, *, force: bool) -> None:
        """Pick up KEKs added and a CURRENT changed on disk since this ring was loaded.

        Keys are only ever added in memory (a retired key file stays usable here until restart,
        which is harmless: nothing new is wrapped under it once CURRENT has moved on).
        """
        key_dir = self._key_dir
        if key_dir is None:
            return
        stamp = _current_stamp(key_dir)
        if not force and stamp == self._stamp:
            return
        with self._lock:
            try:
                keys, current = _read_key_dir(key_dir)
            except ConfigurationError:
                return  # keep working with what was loaded; the next load reports the problem
            for kek_id, key in keys.items():
                if kek_id not in self._aeads:
                    self._aeads = {**self._aeads, kek_id: AESGCM(key)}
            if current is not None and current in self._aeads:
                self._current_id = current
            self._stamp = stamp


def load_keyring(key_dir: Path, env: Mapping[str, str]) -> Keyring:
    """Build the keyring from ``key_dir`` and the environment; ConfigurationError if unusable.

    Key files must be mode 0600 (no group/other bits): a KEK readable by other local users
    defeats the encryption, so it is refused rather than warned about. ``CALLVAULT_KEK_FILE``
    is exempt from the mode check because secret mounts (Docker, Kubernetes) are commonly
    0444/0644 inside a private filesystem the deployment controls.
    """
    keys, current = _read_key_dir(key_dir)

    env_key = _key_from_env(env)
    if env_key is not None:
        kek_id, key = env_key
        if kek_id in keys and keys[kek_id] != key:
            raise ConfigurationError(
                f"CALLVAULT_KEK_ID {kek_id!r} names a different key than {key_dir / (kek_id + _KEK_SUFFIX)}"
            )
        keys[kek_id] = key
        current = kek_id

    if not keys:
        raise ConfigurationError(
            f"no key-encryption key found: run `callvault init` to create one in {key_dir}, "
            "or set CALLVAULT_KEK (base64 of 32 bytes) or CALLVAULT_KEK_FILE"
        )
    if current is None:
        raise ConfigurationError(
            f"{key_dir} holds key files but no CURRENT file naming the key to use for new recordings"
        )
    # An environment key is always current, so only a ring built from files follows rotation on disk.
    follow = key_dir if env_key is None else None
    return Keyring(keys, current, shredded=ShredList(key_dir / SHRED_LIST_NAME), key_dir=follow)


def kek_file(key_dir: Path, kek_id: str) -> Path:
    """Where the KEK ``kek_id`` lives in ``key_dir`` (ConfigurationError for a malformed id)."""
    _check_kek_id(kek_id)
    return key_dir / (kek_id + _KEK_SUFFIX)


def current_kek_id(key_dir: Path) -> str | None:
    """The id named by ``<key_dir>/CURRENT`` (None when there is no such file)."""
    return _read_key_dir(key_dir)[1]


def create_kek(key_dir: Path) -> str:
    """Create a new KEK file in ``key_dir`` and make it current; return its id.

    The key file is created with O_EXCL and mode 0600 from the start (never briefly readable),
    fsynced, then CURRENT is replaced atomically (temp file + rename + directory fsync), so a
    crash leaves either the old or the new current key, never a half-written one. Earlier key
    files are left in place: they are still needed to unwrap older data keys.
    """
    _ensure_private_dir(key_dir)
    key = AESGCM.generate_key(bit_length=256)
    encoded = base64.b64encode(key) + b"\n"
    day = datetime.now(UTC).strftime("%Y%m%d")
    while True:
        kek_id = f"kek-{day}-{secrets.token_hex(2)}"
        try:
            fd = os.open(key_dir / (kek_id + _KEK_SUFFIX), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        break
    write_fd_and_close(fd, encoded)
    _write_atomic(key_dir / _CURRENT, (kek_id + "\n").encode())
    return kek_id


# -- internals ---------------------------------------------------------------------------------


def _read_key_dir(key_dir: Path) -> tuple[dict[str, bytes], str | None]:
    keys: dict[str, bytes] = {}
    current: str | None = None
    if key_dir.is_dir():
        for path in sorted(key_dir.iterdir()):
            if path.name.endswith(_KEK_SUFFIX) and not path.name.startswith("."):
                kek_id = path.name[: -len(_KEK_SUFFIX)]
                _check_kek_id(kek_id, where=str(path))
                keys[kek_id] = _read_key_file(path, require_private=True)
        current_file = key_dir / _CURRENT
        if current_file.exists():
            current = _read_text(current_file).strip()
            if current not in keys:
                raise ConfigurationError(
                    f"{current_file} names key {current!r} "
                    f"but there is no {key_dir / (current + _KEK_SUFFIX)}"
                )
    return keys, current


def _current_stamp(key_dir: Path) -> tuple[int, int] | None:
    try:
        st = (key_dir / _CURRENT).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _aad(kek_id: str, recording_id: str) -> bytes:
    return _AAD_PREFIX + kek_id.encode() + b"|" + recording_id.encode()


def _check_kek_id(kek_id: str, *, where: str = "") -> None:
    if not _KEK_ID_RE.fullmatch(kek_id):
        place = f" ({where})" if where else ""
        raise ConfigurationError(
            f"invalid key id {kek_id!r}{place}: use letters, digits, '.', '_' or '-', at most 64 characters"
        )


def _decode_key(text: str, *, source: str) -> bytes:
    try:
        key = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{source} is not valid base64") from None
    if len(key) != KEK_SIZE:
        raise ConfigurationError(f"{source} holds {len(key)} bytes; a key-encryption key must be {KEK_SIZE}")
    return key


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc


def _read_key_file(path: Path, *, require_private: bool) -> bytes:
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigurationError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ConfigurationError(f"key file {path} is not a regular file")
    if require_private and st.st_mode & 0o077:
        raise ConfigurationError(
            f"key file {path} is readable or writable by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    return _decode_key(_read_text(path), source=f"key file {path}")


def _key_from_env(env: Mapping[str, str]) -> tuple[str, bytes] | None:
    inline = env.get("CALLVAULT_KEK", "").strip()
    file_name = env.get("CALLVAULT_KEK_FILE", "").strip()
    if inline and file_name:
        raise ConfigurationError("set CALLVAULT_KEK or CALLVAULT_KEK_FILE, not both")
    if inline:
        key = _decode_key(inline, source="CALLVAULT_KEK")
    elif file_name:
        key = _read_key_file(Path(file_name), require_private=False)
    else:
        if env.get("CALLVAULT_KEK_ID"):
            raise ConfigurationError(
                "CALLVAULT_KEK_ID is set but neither CALLVAULT_KEK nor CALLVAULT_KEK_FILE is"
            )
        return None
    kek_id = env.get("CALLVAULT_KEK_ID", "").strip()
    if not kek_id:
        # Derived from the key so that changing the key without naming it changes the id; old
        # wrapped keys then fail with "key not loaded" rather than a confusing integrity error.
        kek_id = "kek-env-" + hashlib.sha256(b"callvault-kek-id|" + key).hexdigest()[:8]
    _check_kek_id(kek_id, where="CALLVAULT_KEK_ID")
    return kek_id, key


def _ensure_private_dir(path: Path) -> None:
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; be explicit
    except FileExistsError:
        if not path.is_dir():
            raise ConfigurationError(f"{path} exists and is not a directory") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot create key directory {path}: {exc.strerror or exc}") from exc


def _write_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)


def retire_kek_file(key_dir: Path, kek_id: str) -> bytes:
    """Delete the KEK file ``kek_id`` (durably) and return the key it held.

    ConfigurationError if it is the current KEK or there is no such file. The caller must first
    make sure nothing is wrapped under it any more (``callvault keys retire`` does).
    """
    path = kek_file(key_dir, kek_id)
    if current_kek_id(key_dir) == kek_id:
        raise ConfigurationError(f"{kek_id!r} is the current key-encryption key; rotate first (callvault keys rotate)")
    if not path.exists():
        raise ConfigurationError(f"there is no key file {path}")
    key = _read_key_file(path, require_private=True)
    path.unlink()
    fsync_dir(key_dir)
    return key


def restore_kek_file(key_dir: Path, kek_id: str, key: bytes) -> None:
    """Put back a KEK file removed by ``retire_kek_file`` (mode 0600, fsynced)."""
    fd = os.open(kek_file(key_dir, kek_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    write_fd_and_close(fd, base64.b64encode(key) + b"\n")
    fsync_dir(key_dir)
