"""Small file-system primitives with explicit durability.

Every write that a commit depends on goes through here, so the places that
``fsync`` are easy to audit (and to fault-inject in tests).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

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
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(path)
        raise
    os.close(fd)


def replace_atomically(path: Path, data: bytes, *, durable: bool) -> None:
    """Atomically make *path* hold *data*: temp file, fsync, rename, fsync dir."""
    tmp = path.with_name(path.name + ".tmp")
    unlink_quietly(tmp)
    write_new_file(tmp, data, durable=durable)
    try:
        os.replace(tmp, path)
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
    sync = getattr(os, "fdatasync", None) or os.fsync
    sync(fd)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
