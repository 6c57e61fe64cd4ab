"""Small durability helpers shared by the key and blob stores (private to ``storage``)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename/create/unlink inside ``path`` durable: the entry lives in the directory."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_fd_and_close(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, fsync it, and close it (also on error)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
