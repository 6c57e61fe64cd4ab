"""A FUSE file system that forgets what was never fsynced: a small LazyFS for power-loss tests.

RELIABILITY.md scenario 2 asks for the data directory on LazyFS, ``lose-unfsynced-writes`` after
the kill, and the same with torn writes. LazyFS is not packaged for Debian or PyPI, so the tests
mount this instead (``mfusepy`` over Debian's ``fuse3``). It follows LazyFS's model:

* data written to a file stays in this process's memory ("the page cache") until the file is
  fsynced; reads see it, the backing directory ("the disk") does not;
* metadata operations (create, rename, unlink, mkdir, truncate) go to the backing directory at
  once, as on a journalled file system;
* a power cut is this process dying: ``crash`` drops every unsynced write; ``torn-seq`` first lets
  a random subset of each file's unsynced writes reach the disk (any order, as a disk may);
  ``torn-op`` lets a random subset of each write's 4 KiB pieces through (a torn write).

Run: ``python -m tests.support.lossyfs BACKING MOUNT CONTROL_SOCKET``; send one line (``crash``,
``torn-seq SEED`` or ``torn-op SEED``) to the control socket to cut the power.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

PIECE = 4096


class LossyOperations:
    """FUSE operations over ``backing``; ``journal`` holds each file's unsynced writes in order."""

    use_ns = True

    def __init__(self, backing: str) -> None:
        self.root = backing
        self._guard = threading.Lock()
        self.journal: dict[str, list[tuple[int, bytes]]] = {}
        self.sizes: dict[str, int] = {}

    def _real(self, path: str) -> str:
        return self.root + path

    def init_with_config(self, conn: Any, config: Any) -> None:
        """Leave byte-range and flock locks to the kernel (SQLite locks; the backing is one host)."""
        if conn is not None:
            conn.want &= ~((1 << 1) | (1 << 10))  # FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS

    # -- data: kept in memory until fsync ------------------------------------------------------
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._guard:
            self.journal.setdefault(path, []).append((offset, bytes(data)))
            self.sizes[path] = max(self._size(path), offset + len(data))
        return len(data)

    def _size(self, path: str) -> int:
        if path in self.sizes:
            return self.sizes[path]
        return os.lstat(self._real(path)).st_size

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._guard:
            end = min(offset + size, self._size(path))
            if end <= offset:
                return b""
            fd = os.open(self._real(path), os.O_RDONLY)
            try:
                buf = bytearray(os.pread(fd, end - offset, offset))
            finally:
                os.close(fd)
            buf.extend(b"\0" * (end - offset - len(buf)))
            for at, data in self.journal.get(path, ()):
                lo, hi = max(at, offset), min(at + len(data), end)
                if lo < hi:
                    buf[lo - offset:hi - offset] = data[lo - at:hi - at]
            return bytes(buf)

    def _persist(self, path: str, writes: list[tuple[int, bytes]], *, sync: bool) -> None:
        fd = os.open(self._real(path), os.O_WRONLY)
        try:
            for at, data in writes:
                os.pwrite(fd, data, at)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._guard:
            writes = self.journal.pop(path, [])
            self.sizes.pop(path, None)
            self._persist(path, writes, sync=True)
        return 0

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._guard:
            os.truncate(self._real(path), length)
            kept = [(at, data[:max(0, length - at)]) for at, data in self.journal.get(path, []) if at < length]
            if path in self.journal:
                self.journal[path] = kept
                self.sizes[path] = length
        return 0

    # -- metadata: applied to the backing directory at once ------------------------------------
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.lstat(self._real(path))
        attrs = {key: getattr(st, key) for key in ("st_mode", "st_uid", "st_gid", "st_nlink", "st_size")}
        for key in ("st_atime", "st_mtime", "st_ctime"):
            attrs[key] = getattr(st, key + "_ns") if hasattr(st, key + "_ns") else int(getattr(st, key) * 1e9)
        with self._guard:
            if path in self.sizes:
                attrs["st_size"] = self.sizes[path]
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        os.close(os.open(self._real(path), os.O_CREAT | os.O_WRONLY | os.O_EXCL, mode))
        return 0

    def open(self, path: str, flags: int) -> int:
        if flags & os.O_TRUNC:
            self.truncate(path, 0)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._guard:
            os.rename(self._real(old), self._real(new))
            self.journal.pop(new, None)
            self.sizes.pop(new, None)
            if old in self.journal:
                self.journal[new] = self.journal.pop(old)
            if old in self.sizes:
                self.sizes[new] = self.sizes.pop(old)
        return 0

    def unlink(self, path: str) -> int:
        with self._guard:
            os.unlink(self._real(path))
            self.journal.pop(path, None)
            self.sizes.pop(path, None)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._real(path), ns=times) if times else os.utime(self._real(path))
        return 0

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise OSError(errno.EACCES, "access denied")
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        return {key: getattr(st, key) for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                  "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0  # metadata is already on the backing directory

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() persists nothing: only fsync does

    def release(self, path: str, fh: int) -> int:
        return 0

    # -- the power cut ---------------------------------------------------------------------------
    def cut_power(self, how: str, seed: int) -> dict[str, int]:
        """Let what ``how`` allows reach the disk, then die; returns counts for the report."""
        rng = random.Random(seed)
        kept = dropped = 0
        with self._guard:
            for path, writes in self.journal.items():
                if how == "torn-seq":
                    chosen = [w for w in writes if rng.random() < 0.5]
                elif how == "torn-op":
                    chosen = [(at + i, data[i:i + PIECE]) for at, data in writes
                              for i in range(0, len(data), PIECE) if rng.random() < 0.5]
                else:
                    chosen = []
                with suppress(FileNotFoundError):
                    self._persist(path, chosen, sync=False)
                kept += len(chosen)
                dropped += len(writes)
        return {"persisted": kept, "unsynced": dropped}


def _serve_control(ops: LossyOperations, control: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(control)
    server.listen(1)
    conn, _ = server.accept()
    words = conn.makefile().readline().split()
    counts = ops.cut_power(words[0], int(words[1]) if len(words) > 1 else 0)
    conn.sendall(f"{counts['persisted']} {counts['unsynced']}\n".encode())
    conn.close()
    os._exit(0)  # the power is off: nothing else of this process reaches the disk


def main(argv: list[str]) -> None:
    from mfusepy import FUSE

    backing, mount, control = argv
    ops = LossyOperations(os.path.abspath(backing))  # no Operations base: what is absent (locks) stays kernel-local
    threading.Thread(target=_serve_control, args=(ops, control), daemon=True).start()
    FUSE(ops, mount, foreground=True, nothreads=True)


class LossyMount:
    """Mounts ``backing`` at ``mount`` and cuts the power on request (test-side handle)."""

    def __init__(self, backing: Path, mount: Path) -> None:
        self.backing, self.mount = backing, mount
        self.control = backing.parent / f".{mount.name}.control"
        self.log = backing.parent / f".{mount.name}.lossyfs.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mount.mkdir(parents=True, exist_ok=True)
        self.control.unlink(missing_ok=True)
        with open(self.log, "ab") as log:  # a file, not a pipe: an unread pipe would block the daemon
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.lossyfs", str(self.backing),
                                          str(self.mount), str(self.control)],
                                         cwd=Path(__file__).resolve().parents[2], stdout=log, stderr=log,
                                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
        deadline = time.monotonic() + 20
        while not (os.path.ismount(self.mount) and self.control.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lossyfs did not mount: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def cut_power(self, how: str = "crash", seed: int = 0) -> tuple[int, int]:
        """Power off: returns (writes persisted by the tear, unsynced writes there were)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(self.control))
            conn.sendall(f"{how} {seed}\n".encode())
            persisted, unsynced = conn.makefile().readline().split()
        self._gone()
        return int(persisted), int(unsynced)

    def _gone(self) -> None:
        if self.proc is not None:
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        subprocess.run(["fusermount3", "-uz", str(self.mount)], check=False, capture_output=True)

    def stop(self) -> None:
        if self.proc is not None:
            subprocess.run(["fusermount3", "-u", str(self.mount)], check=False, capture_output=True)
            self._gone()


@contextmanager
def lossy_mount(backing: Path, mount: Path) -> Iterator[LossyMount]:
    fs = LossyMount(backing, mount)
    fs.start()
    try:
        yield fs
    finally:
        fs.stop()


def available() -> str | None:
    """Why a lossy mount cannot be made here, or None when it can."""
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy/libfuse not usable: {exc}"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if subprocess.run(["which", "fusermount3"], capture_output=True, check=False).returncode != 0:
        return "fusermount3 is missing (Debian package fuse3)"
    return None


if __name__ == "__main__":
    main(sys.argv[1:])
