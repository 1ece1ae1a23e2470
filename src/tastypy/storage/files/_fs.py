"""Every OS call by which the file engine changes the disk: the I/O seam.

The engine never calls ``os`` directly to write, sync, rename, create or
delete; it calls these functions. Tests replace them (``monkeypatch`` the
attributes of this module) to record every write, ``fsync`` and directory
operation — the power-loss simulation replays such a recording — or to make
one of them fail. Each function looks up ``os`` at call time, so patching
``os`` itself keeps working too.

Reads go through :func:`read_file` and :func:`listdir`, so a recorder can
also see what the engine looks at.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat as stat_module
from pathlib import Path

from ...errors import CorruptStoreError

__all__ = [
    "close",
    "fdatasync",
    "flock",
    "fstat",
    "fstat_size",
    "fsync",
    "ftruncate",
    "listdir",
    "makedirs",
    "mkdir",
    "not_a_file",
    "open_fd",
    "open_inside",
    "pwrite",
    "read_file",
    "replace",
    "rmdir",
    "rmtree",
    "stat",
    "unlink",
    "write",
]


def open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open``; with ``O_CREAT`` this may create a directory entry."""
    return os.open(path, flags, mode)


def close(fd: int) -> None:
    os.close(fd)


def write(fd: int, data: bytes | memoryview) -> int:
    return os.write(fd, data)


def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
    return os.pwrite(fd, data, offset)


def ftruncate(fd: int, length: int) -> None:
    os.ftruncate(fd, length)


def fsync(fd: int) -> None:
    """Make a file's data and size (or a directory's entries) durable."""
    os.fsync(fd)


def fdatasync(fd: int) -> None:
    """``fdatasync`` where the OS has it (data and size, not timestamps), else ``fsync``."""
    sync = getattr(os, "fdatasync", None) or os.fsync
    sync(fd)


def fstat_size(fd: int) -> int:
    return os.fstat(fd).st_size


def fstat(fd: int) -> os.stat_result:
    return os.fstat(fd)


def stat(path: Path) -> os.stat_result:
    return os.stat(path)


def flock(fd: int, operation: int) -> None:
    fcntl.flock(fd, operation)


def replace(src: Path, dst: Path) -> None:
    """Atomic rename; durable only once the directory is ``fsync``ed."""
    os.replace(src, dst)


def unlink(path: Path) -> None:
    os.unlink(path)


def mkdir(path: Path) -> None:
    """Create one directory level (``FileExistsError`` if it exists)."""
    os.mkdir(path)


def makedirs(path: Path) -> list[Path]:
    """Create *path* and its missing parents; return those created, outermost first."""
    missing: list[Path] = []
    at = path
    while not at.exists():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    created: list[Path] = []
    for directory in reversed(missing):
        try:
            mkdir(directory)
        except FileExistsError:
            continue
        created.append(directory)
    return created


def rmdir(path: Path) -> None:
    os.rmdir(path)


def rmtree(path: Path) -> None:
    """Remove a directory tree through :func:`unlink` and :func:`rmdir` (best effort)."""
    try:
        names = listdir(path)
    except OSError:
        return
    for name in names:
        entry = path / name
        if entry.is_dir() and not entry.is_symlink():
            rmtree(entry)
        else:
            with contextlib.suppress(OSError):
                unlink(entry)
    with contextlib.suppress(OSError):
        rmdir(path)


def listdir(path: Path) -> list[str]:
    return os.listdir(path)


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# A FIFO would block the open (or the read) forever, and opening a device can
# act on it: a store's own files are opened only once they are known to be
# regular files, and without blocking even then.
_O_SAFE = _O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


def _kind(mode: int) -> str:
    for test, name in (
        (stat_module.S_ISDIR, "a directory"),
        (stat_module.S_ISFIFO, "a FIFO (named pipe)"),
        (stat_module.S_ISCHR, "a character device"),
        (stat_module.S_ISBLK, "a block device"),
        (stat_module.S_ISSOCK, "a socket"),
        (stat_module.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def not_a_file(path: Path, mode: int) -> CorruptStoreError:
    """The error for a store's own file that is not a regular file."""
    kind = _kind(mode)
    if kind == "a symbolic link":
        return CorruptStoreError(
            f"{path} is a symbolic link; a store's own files never are, and tastypy "
            "does not follow one out of the store"
        )
    return CorruptStoreError(
        f"{path} is {kind}, not a regular file; a store's own files are always regular "
        "files, so this store was damaged or tampered with (restore it from a backup, "
        f"or remove {path.name} if it holds nothing of the store's)"
    )


def open_inside(path: Path, flags: int, mode: int = 0o644) -> int:
    """:func:`open_fd` for a file of the store itself: only ever a regular file.

    A store is untrusted input: a link planted as its journal or a data file
    would make us read, write or truncate a file outside it; a FIFO would
    hang the open or the read; a device node would be read without end, or
    written to. None of them is ever opened through.

    Raises
    ------
    CorruptStoreError
        If *path* is a symbolic link, a directory, a FIFO, a device or a socket.
    """
    writing = flags & (os.O_WRONLY | os.O_RDWR)
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        pass  # an O_CREAT open creates it; any other open fails below
    else:
        problem = own_file_problem(path, found, writing=bool(writing))
        if problem is not None:  # checked before the open: O_TRUNC would already write
            raise problem
    try:
        fd = open_fd(path, flags | _O_SAFE, mode)
    except OSError as exc:
        # It was replaced since the lstat: by a link, a directory, a FIFO.
        changed = {errno.ELOOP: stat_module.S_IFLNK, errno.EISDIR: stat_module.S_IFDIR}
        if exc.errno in changed:
            raise not_a_file(path, changed[exc.errno]) from None
        raise
    try:
        opened = os.fstat(fd)
        problem = own_file_problem(path, opened, writing=bool(writing))
        if problem is not None:
            raise problem
        status = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, status & ~getattr(os, "O_NONBLOCK", 0))
    except BaseException:
        close(fd)
        raise
    return fd


def own_file_problem(
    path: Path, found: os.stat_result, *, writing: bool
) -> CorruptStoreError | None:
    """Why *path* (as *found* by ``lstat``/``fstat``) cannot be one of the store's own files.

    Only a regular file can; one to be written must also have no other hard
    link, or writing it would change the same file elsewhere too.
    """
    if not stat_module.S_ISREG(found.st_mode):
        return not_a_file(path, found.st_mode)
    if writing and found.st_nlink > 1:
        return CorruptStoreError(
            f"{path} has other hard links (the same file is elsewhere too); a store's own "
            "files never do, and tastypy does not write through one out of the store"
        )
    return None


def read_file(path: Path) -> bytes:
    """The bytes of one of the store's files, only ever a regular file (:func:`open_inside`).

    What is read is bounded by the file's size on disk.
    """
    fd = open_inside(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()
