"""Where encrypted recording blobs live: a small protocol and its backends.

Blobs are opaque ciphertext (see ``crypto``); a store never sees plaintext or keys. The
protocol is deliberately tiny so an S3-compatible backend fits it later:

* ``writer(key)`` is atomic. On clean exit of the ``with`` block the complete blob appears
  under ``key`` (replacing any previous one); on an exception nothing appears and no partial
  data is left behind. The ingest pipeline relies on this to keep row and blob in step.
* ``read_at`` behaves like ``pread``: exactly ``length`` bytes, or fewer only at the end of the
  blob (none past it). Playback serves HTTP Range requests through it.
* ``delete`` is idempotent; ``iter_keys`` lists every stored blob for orphan reconciliation.

Keys are relative, slash-separated names such as ``ab/cd/<uuid>.cva`` drawn from
``[A-Za-z0-9/_.-]``; no segment may start with "." (so no "..", no hidden files). Anything
else is InvalidInput, so a key can never escape the store's root.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import os
import re
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Final, Protocol
from urllib.parse import unquote, urlsplit

from callvault.core.clock import filesystem_now
from callvault.core.errors import ConfigurationError, InvalidInput, NotFound
from callvault.storage._fs import fsync_dir

__all__ = [
    "BlobStore",
    "FlushFailed",
    "LocalBlobStore",
    "MemoryBlobStore",
    "open_blobstore",
    "validate_key",
]

_SEGMENT: Final = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
_KEY_RE: Final = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
_MAX_KEY_LENGTH: Final = 512
_TMP_DIR: Final = ".tmp"
_TMP_SUFFIX: Final = ".part"


class FlushFailed(OSError):
    """An fsync failed, or writes stopped because one did (RELIABILITY.md scenario 3, "fsyncgate").

    After a failed fsync the kernel may have dropped the dirty pages and a later fsync can succeed
    without them, so a retry proves nothing. The store therefore fail-stops: this process refuses
    every further write until it is restarted (as PostgreSQL PANICs), and the ingest path raises an
    alarm in the audit trail. Acknowledged recordings are unaffected: each was fsynced before it was
    acknowledged.
    """


log = logging.getLogger(__name__)


class BlobStore(Protocol):
    """Storage for encrypted blobs. See the module docstring for each method's contract."""

    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Atomic write: the blob appears complete on clean exit, not at all on error."""
        ...

    def read_at(self, key: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; fewer only at the end. NotFound if absent."""
        ...

    def ranged_reader(self, key: str) -> Callable[[int, int], bytes]:
        """``read_at`` bound to one blob, for many reads in a row (a playback stream). NotFound if
        absent (an object store says so at the first read). A store may hold the blob open for the
        reader's life: the local store keeps its file descriptor, so a stream costs one open, not one
        per read."""
        ...

    def size(self, key: str) -> int:
        """Size in bytes; NotFound if absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the blob; no error if it is already gone."""
        ...

    def iter_keys(self) -> Iterator[str]:
        """Every stored blob's key (never temporaries of unfinished writes)."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe blob key, else raise InvalidInput naming the rule."""
    if not isinstance(key, str) or not key:
        raise InvalidInput("a blob key must be a non-empty string")
    if len(key) > _MAX_KEY_LENGTH or ".." in key or not _KEY_RE.fullmatch(key):
        raise InvalidInput(
            f"invalid blob key {key!r}: use relative names of letters, digits, '/', '_', '.', '-', "
            f"with no segment starting with '.', at most {_MAX_KEY_LENGTH} characters"
        )
    return key


def _pread(fd: int, key: str, offset: int, length: int) -> bytes:
    """Up to ``length`` bytes at ``offset`` of an open blob (fewer only at its end)."""
    parts: list[bytes] = []
    remaining = length
    try:
        while remaining > 0:
            part = os.pread(fd, remaining, offset)
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
            offset += len(part)
    except IsADirectoryError:
        raise NotFound(f"blob {key} does not exist") from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _check_span(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise InvalidInput(f"cannot read {length} bytes at offset {offset}: both must be non-negative")


class LocalBlobStore:
    """Blobs as files under ``root``: directories 0700, files 0600, writes via ``root/.tmp``.

    The temp directory is inside ``root`` so the final rename never crosses a filesystem and
    stays atomic. A crash mid-write leaves only a ``.tmp/*.part`` file, which
    ``cleanup_temp`` removes later; it never leaves a partial blob under a real key.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._tmp = self._root / _TMP_DIR
        self._stopped: str | None = None  # why writes stopped (a failed fsync); only a restart clears it
        try:
            for directory in (self._root, self._tmp):
                if not directory.is_dir():
                    directory.mkdir(parents=True, mode=0o700, exist_ok=True)
                    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            reason = exc.strerror or exc
            raise ConfigurationError(f"cannot use blob directory {self._root}: {reason}") from exc

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, key: str) -> Path:
        return self._root / validate_key(key)

    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        if self._stopped is not None:
            raise FlushFailed(errno.EIO, f"recording storage stopped accepting writes after a failed fsync "
                                         f"({self._stopped}); recordings already acknowledged are safe. Check "
                                         f"the disk under {self._root}, then restart this process")
        return self._writer(self._path(key))

    def _flushed(self, flush: Callable[[], None]) -> None:
        """Run one fsync; on failure stop all later writes of this process (see ``FlushFailed``)."""
        try:
            flush()
        except OSError as exc:
            self._stopped = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {exc.strerror or exc}"
            log.critical("fsync failed under %s (%s): recording writes stopped until restart", self._root, exc)
            raise FlushFailed(exc.errno or errno.EIO, f"fsync failed: {exc.strerror or exc}; nothing was "
                                                      "stored and writes are stopped until restart") from exc

    @contextmanager
    def _writer(self, final: Path) -> Iterator[BinaryIO]:
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="blob-", suffix=_TMP_SUFFIX)  # mode 0600
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                self._flushed(lambda: os.fsync(handle.fileno()))
            self._make_dirs(final.parent)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        try:
            self._flushed(lambda: fsync_dir(final.parent))
        except FlushFailed:  # the writer's contract: on an error nothing appears under the key
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
            raise

    def _make_dirs(self, directory: Path) -> None:
        """Create missing parents one level at a time, fsyncing each new entry's parent."""
        missing: list[Path] = []
        while directory != self._root and not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=0o700)
                os.chmod(path, 0o700)
            except FileExistsError:
                continue  # a concurrent writer made it
            self._flushed(functools.partial(fsync_dir, path.parent))

    def read_at(self, key: str, offset: int, length: int) -> bytes:
        _check_span(offset, length)
        fd = self._open(key)
        try:
            return _pread(fd, key, offset, length)
        finally:
            os.close(fd)

    def ranged_reader(self, key: str) -> Callable[[int, int], bytes]:
        fd = self._open(key)

        def read_at(offset: int, length: int) -> bytes:
            _check_span(offset, length)
            return _pread(fd, key, offset, length)

        weakref.finalize(read_at, os.close, fd)  # closed when the last user of the reader lets go
        return read_at

    def _open(self, key: str) -> int:
        try:
            return os.open(self._path(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"blob {key} does not exist") from None

    def size(self, key: str) -> int:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"blob {key} does not exist") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"blob {key} does not exist")
        return st.st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def age(self, key: str) -> timedelta:
        """How long ago the blob was last written, on the store's own clock (``filesystem_now``); the
        integrity check leaves young orphans alone: their catalog row may be about to commit."""
        try:
            mtime = self._path(key).stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"blob {key} does not exist") from None
        return timedelta(seconds=max(0.0, filesystem_now(self._tmp) - mtime))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def iter_keys(self) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(self._root):
            # Prune .tmp and any other dot-directory in place so walk never descends there.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            base = Path(dirpath).relative_to(self._root)
            for name in sorted(filenames):
                key = (base / name).as_posix()
                if _KEY_RE.fullmatch(key) and ".." not in key:
                    yield key

    def temporaries(self) -> list[tuple[str, int, float]]:
        """``(name under the root, size in bytes, age in seconds)`` of each ``.tmp`` file, oldest first.

        Why: ``callvault check`` shows what killed writers left (and the disk it holds) before anyone
        runs ``--repair``; ages are on the store's own clock, as ``cleanup_temp`` measures them."""
        now = filesystem_now(self._tmp)
        found: list[tuple[str, int, float]] = []
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return []
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # finished or cleaned up concurrently
            if stat.S_ISREG(st.st_mode):
                found.append((f"{_TMP_DIR}/{entry.name}", st.st_size, max(0.0, now - st.st_mtime)))
        return sorted(found, key=lambda item: -item[2])

    def cleanup_temp(self, older_than_seconds: float) -> int:
        """Remove temporaries of writes that crashed; return how many were removed.

        Only files untouched for ``older_than_seconds`` go, so a write in progress (which keeps
        updating its temp file) is left alone if the threshold exceeds any pause in writing.
        """
        if older_than_seconds < 0:
            raise InvalidInput("older_than_seconds cannot be negative")
        cutoff = filesystem_now(self._tmp) - older_than_seconds
        removed = 0
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                stale = entry.stat(follow_symlinks=False).st_mtime < cutoff
                if stale and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # finished or cleaned up concurrently
        return removed


class MemoryBlobStore:
    """A BlobStore in a dict, for tests. Same key rules and atomicity as the local store."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryBlobStore({len(self._blobs)} blobs)"

    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        return self._writer(validate_key(key))

    @contextmanager
    def _writer(self, key: str) -> Iterator[BinaryIO]:
        buffer = io.BytesIO()
        yield buffer
        data = buffer.getvalue()
        with self._lock:
            self._blobs[key] = data

    def _get(self, key: str) -> bytes:
        with self._lock:
            data = self._blobs.get(validate_key(key))
        if data is None:
            raise NotFound(f"blob {key} does not exist")
        return data

    def read_at(self, key: str, offset: int, length: int) -> bytes:
        _check_span(offset, length)
        return self._get(key)[offset : offset + length]

    def ranged_reader(self, key: str) -> Callable[[int, int], bytes]:
        self._get(key)  # NotFound now, as the other stores
        return functools.partial(self.read_at, key)

    def size(self, key: str) -> int:
        return len(self._get(key))

    def exists(self, key: str) -> bool:
        with self._lock:
            return validate_key(key) in self._blobs

    def delete(self, key: str) -> None:
        with self._lock:
            self._blobs.pop(validate_key(key), None)

    def iter_keys(self) -> Iterator[str]:
        with self._lock:
            keys = sorted(self._blobs)
        return iter(keys)


def open_blobstore(url: str, env: Mapping[str, str] | None = None) -> BlobStore:
    """The store a settings URL names.

    ``file:///abs/path`` or a plain path: LocalBlobStore; ``memory://``: a fresh, empty
    MemoryBlobStore; ``s3://BUCKET/PREFIX?endpoint=...``: S3BlobStore (credentials from ``env``).
    Anything else is a ConfigurationError.
    """
    text = url.strip()
    if not text:
        raise ConfigurationError("the blob storage URL is empty; set CALLVAULT_STORAGE_URL")
    if "://" not in text:
        return LocalBlobStore(Path(text).expanduser())
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return MemoryBlobStore()
    if scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ConfigurationError(f"blob storage URL {url!r} must be file:///absolute/path")
        return LocalBlobStore(Path(path))
    if scheme == "s3":
        from callvault.storage.s3 import open_s3_blobstore

        return open_s3_blobstore(text, env or {})
    raise ConfigurationError(
        f"unsupported blob storage URL {url!r}: "
        "use file:///absolute/path, a plain path, s3://BUCKET/PREFIX?endpoint=URL, or memory://"
    )
