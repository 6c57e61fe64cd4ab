"""The key-destruction list: wrapped data keys that were destroyed, kept beside the KEKs.

Why a list outside the database: crypto-shredding deletes a recording's wrapped data key from the
database. A database backup taken before the deletion still holds that wrapped key, and the KEK that
unwraps it is still on the keyring, so restoring the backup next to the current key store would bring
the recording back. This file lives in the key directory, which is never restored from a database
backup (it holds the KEKs themselves), and ``Keyring.unwrap`` refuses any wrapped key whose
fingerprint is on it. So a restored row is dead on arrival.

Format: one lower-case hex SHA-256 fingerprint of a wrapped key (see ``fingerprint``) per line,
append-only. Appends are single ``write`` calls with ``O_APPEND`` followed by ``fsync``, so two
processes appending at once interleave whole lines. Readers keep the set in memory and read only
what was appended since they last looked (one ``stat`` per check), so a long-running server sees
what a worker destroyed a moment ago.

Limit (documented in docs/retention.md): this is enforced by callvault. Someone holding the KEK, an
old database backup *and* an old copy of the blob can still decrypt offline; retiring the KEK
(re-wrapping surviving keys under a new one and deleting the old file) closes that for backups older
than the rotation.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from callvault.core.errors import IntegrityError

__all__ = ["SHRED_LIST_NAME", "ShredList", "fingerprint"]

SHRED_LIST_NAME: Final = "SHREDDED"
_LINE_RE: Final = re.compile(r"[0-9a-f]{64}")


def fingerprint(wrapped: bytes) -> str:
    """The fingerprint of one wrapped data key (unique per wrap: each wrap has a random nonce)."""
    return hashlib.sha256(b"callvault-shredded-key|" + bytes(wrapped)).hexdigest()


class ShredList:
    """An append-only set of destroyed-key fingerprints backed by one file."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._offset = 0
        self._identity: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"ShredList({str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    def __contains__(self, fp: object) -> bool:
        if not isinstance(fp, str):
            return False
        with self._lock:
            self._refresh()
            return fp in self._known

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._known)

    def add(self, fingerprints: Iterable[str]) -> None:
        """Append fingerprints durably (one write, then fsync); already listed ones are skipped."""
        items = list(dict.fromkeys(fingerprints))
        for fp in items:
            if not _LINE_RE.fullmatch(fp):
                raise ValueError(f"{fp!r} is not a key fingerprint")
        with self._lock:
            self._refresh()
            new = [fp for fp in items if fp not in self._known]
            if not new:
                return
            self._ensure_dir()
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                data = "".join(f"{fp}\n" for fp in new).encode("ascii")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._known.update(new)

    def _ensure_dir(self) -> None:
        parent = self._path.parent
        if not parent.is_dir():
            parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(parent, 0o700)

    def _refresh(self) -> None:
        """Read what other processes appended since the last look; reload if the file was replaced."""
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            if self._known:
                # The list only ever grows; a vanished list means someone removed it by hand.
                raise IntegrityError(
                    f"the key-destruction list {self._path} has disappeared; restore it from the "
                    "key directory's backup (destroyed recordings would otherwise become readable "
                    "again from old database backups)"
                ) from None
            return
        identity = (st.st_dev, st.st_ino)
        if identity != self._identity or st.st_size < self._offset:
            self._known.clear()
            self._offset = 0
            self._identity = identity
        if st.st_size == self._offset:
            return
        with self._path.open("rb") as fh:
            fh.seek(self._offset)
            tail = fh.read(st.st_size - self._offset)
        complete = tail.rfind(b"\n") + 1  # a line being appended right now is read next time
        for raw in tail[:complete].split(b"\n"):
            line = raw.strip().decode("ascii", errors="replace")
            if line:
                self._known.add(line)
        self._offset += complete
