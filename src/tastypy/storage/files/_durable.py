"""Small file-system primitives with explicit durability.

Every write that a commit depends on goes through here, so the places that
``fsync`` are easy to audit (and to fault-inject in tests).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from . import _fs

__all__ = [
    "DirSyncError",
    "datasync",
    "fsync_dir",
    "replace_atomically",
    "unlink_quietly",
    "write_new_file",
]


class DirSyncError(OSError):
    """The rename happened, but fsyncing its directory failed.

    The new content is in place (and visible) but may not survive a power
    loss; the caller must not undo what the renamed file refers to.
    """


def write_new_file(path: Path, data: bytes, *, durable: bool) -> None:
    """Create *path* (which must not exist) holding *data*; fsync it if *durable*.

    ``O_EXCL`` guarantees we never overwrite a file some manifest may still
    reference. On failure the partial file is removed.
    """
    fd = _fs.open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = _fs.write(fd, view)
            view = view[written:]
        if durable:
            _fs.fsync(fd)
    except BaseException:
        _fs.close(fd)
        unlink_quietly(path)
        raise
    _fs.close(fd)


def replace_atomically(path: Path, data: bytes, *, durable: bool) -> None:
    """Atomically make *path* hold *data*: temp file, fsync, rename, fsync dir."""
    tmp = path.with_name(path.name + ".tmp")
    unlink_quietly(tmp)
    write_new_file(tmp, data, durable=durable)
    try:
        _fs.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    if durable:
        try:
            fsync_dir(path.parent)
        except OSError as exc:
            raise DirSyncError(
                exc.errno, f"fsync of {path.parent} failed: {exc.strerror}"
            ) from exc


def datasync(fd: int) -> None:
    """``fdatasync`` where the OS has it (data and size, not timestamps), else ``fsync``."""
    _fs.fdatasync(fd)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (creations, renames, deletions) durable."""
    fd = _fs.open_fd(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _fs.fsync(fd)
    finally:
        _fs.close(fd)


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fs.unlink(path)
