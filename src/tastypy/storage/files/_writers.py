"""Who writes a shared store: one file per writer, alive exactly while it is locked.

Each writer of a shared store has ``writers/<id>.jsonl`` (``docs/SHARED.md``)
and holds an exclusive ``flock`` on it while the store is open. The kernel
drops that lock when the process ends, however it ends, so a writer is alive
if and only if its file is locked: no clock, no pid test, and a reused pid
changes nothing (the new process never opened the file). The file is made
under a temporary name, locked, then renamed, so a file under its final
name is locked from birth.

The id is ``<pid>-<start>-<random>``, ``start`` being the process start time
in clock ticks since boot (``/proc/<pid>/stat``), for people reading the
directory; nothing relies on it being unique but the random part.

The file's first line describes the writer; the lines after it are its
claims log (:mod:`._claims`), which only its writer appends to.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import stat
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import CorruptStoreError
from . import _fs

__all__ = [
    "JOINED",
    "SUFFIX",
    "WRITERS",
    "Writer",
    "WriterEntry",
    "check_directory",
    "is_alive",
    "live_writers",
    "process_start",
    "writer_id",
]

WRITERS = "writers"
SUFFIX = ".jsonl"
# One byte is appended here each time a writer's log is in place: a reader
# lists writers/ again only when it grew (the directory's mtime ticks too
# coarsely to tell two registrations apart).
JOINED = ".joined"
_ID = re.compile(r"\d{1,10}-\d{1,20}-[0-9a-f]{8}\Z")
_MAX_INFO = 4096  # bytes of a writer file that are read
# Entries this process holds; a forked child closes its copies of their fds.
_held: weakref.WeakSet[WriterEntry] = weakref.WeakSet()


@dataclass(frozen=True)
class Writer:
    """A live writer of a shared store, as its file describes it."""

    id: str
    pid: int
    host: str
    argv: list[str]
    since: float  # when it opened the store (Unix time)


def process_start(pid: int) -> int:
    """When process *pid* started, in clock ticks since boot; 0 where unknown."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return 0


class WriterEntry:
    """This process's registration as a writer of the shared store at *store*.

    Raises ``OSError`` if ``writers/`` or the file cannot be made.
    """

    def __init__(self, store: Path) -> None:
        self._fd: int | None = None
        pid = os.getpid()
        self.id = f"{pid}-{process_start(pid)}-{os.urandom(4).hex()}"
        directory = store / WRITERS
        with contextlib.suppress(FileExistsError):
            _fs.mkdir(directory)
        check_directory(directory)
        self.path = directory / f"{self.id}{SUFFIX}"
        temporary = directory / f".{self.id}{SUFFIX}.tmp"
        fd = _fs.open_inside(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _fs.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
            info = {
                "pid": pid,
                "host": socket.gethostname(),
                "argv": sys.argv[:4],
                "since": round(time.time(), 3),
            }
            first = json.dumps(info).encode() + b"\n"
            _fs.pwrite(fd, first, 0)
            _fs.replace(temporary, self.path)
            _announce(directory)  # before this writer's first claim
        except BaseException:
            _fs.close(fd)
            with contextlib.suppress(OSError):
                _fs.unlink(temporary)
            raise
        self._fd = fd
        self._pid = pid
        self._end = len(first)  # where the next line goes
        _held.add(self)

    def append(self, line: bytes) -> None:
        """Append *line* (ending in a newline) to this writer's log, whole or not at all."""
        if self._fd is None:
            raise ValueError(f"{self.path}: this writer is closed")
        try:
            written = 0
            while written < len(line):
                written += _fs.pwrite(self._fd, memoryview(line)[written:], self._end + written)
        except BaseException:
            with contextlib.suppress(OSError):  # truncating needs no free space
                _fs.ftruncate(self._fd, self._end)
            raise
        self._end += len(line)

    def close(self, *, remove: bool = True) -> None:
        """Unregister: remove the file (unless not *remove*), then let go of its lock.

        Idempotent. A file kept is a dead writer's from now on.
        """
        fd, self._fd = self._fd, None
        _held.discard(self)
        if fd is None:
            return
        try:
            if remove and os.getpid() == self._pid:
                with contextlib.suppress(OSError):  # found dead all the same once unlocked
                    _fs.unlink(self.path)
        finally:
            _fs.close(fd)

    def __del__(self) -> None:
        self.close(remove=False)  # dropped unclosed: a dead writer's, for the others to settle

    def _forget_in_child(self) -> None:
        # Closing the child's copy leaves the parent's lock as it is.
        fd, self._fd = self._fd, None
        if fd is not None:
            _fs.close(fd)


def _announce(directory: Path) -> None:
    """Tell the readers of ``writers/`` that a writer's log is in place (one byte, appended)."""
    fd = _fs.open_inside(directory / JOINED, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _fs.write(fd, b"+")
    finally:
        _fs.close(fd)


def is_alive(store: Path, writer_id: str) -> bool:
    """Whether writer *writer_id* of the store at *store* is alive (its file locked).

    A writer found dead has its file removed (while this holds its lock).
    """
    if not _ID.match(writer_id):
        return False
    return _check(store / WRITERS / f"{writer_id}{SUFFIX}", reap=True) is not None


def writer_id(name: str) -> str | None:
    """The writer id of a file name in ``writers/``, or None if it is no writer's log."""
    if not name.endswith(SUFFIX):
        return None
    found = name[: -len(SUFFIX)]
    return found if _ID.match(found) else None


def live_writers(store: Path, *, reap: bool = False) -> list[Writer]:
    """The live writers of the store at *store*, oldest first.

    With *reap*, the files of dead writers that claimed nothing (and
    temporary files of writers killed while registering) are removed;
    without, nothing is written.
    """
    directory = store / WRITERS
    if reap:
        try:
            check_directory(directory)  # never unlink through a link out of the store
        except FileNotFoundError:
            return []
    try:
        names = _fs.listdir(directory)
    except OSError:  # missing, or not a directory: nobody is listed there
        return []
    found = []
    for name in names:
        if name.startswith(".") and name.endswith(SUFFIX + ".tmp"):
            if reap:
                _check(directory / name, reap=True)
            continue
        if writer_id(name) is None:
            continue  # not ours: a writer's file is never named otherwise
        writer = _check(directory / name, reap=reap)
        if writer is not None:
            found.append(writer)
    return sorted(found, key=lambda w: (w.since, w.id))


def _check(path: Path, *, reap: bool) -> Writer | None:
    """The writer whose file is *path*, if alive; with *reap*, a dead one's file goes."""
    try:
        fd = _fs.open_inside(path, os.O_RDONLY)
    except (OSError, ValueError):  # gone, or not a regular file (CorruptStoreError)
        return None
    try:
        try:
            _fs.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            return _describe(path, os.pread(fd, _MAX_INFO, 0).split(b"\n", 1)[0])
        # Dead, or (a temporary file) not yet locked by a writer registering:
        # its lock is ours for now. Only a file that surely claims nothing
        # goes: the tries a claims log counts are settled first
        # (docs/SHARED.md), by whoever reads it as the tracker. An empty
        # temporary file is a writer between its open and its lock.
        if reap and _claims_nothing(fd):
            with contextlib.suppress(OSError):
                _fs.unlink(path)
        return None
    finally:
        _fs.close(fd)


def _claims_nothing(fd: int) -> bool:
    """Whether the writer file open at *fd* holds its describing line and nothing more."""
    size = _fs.fstat_size(fd)
    if size == 0:
        return False  # a temporary file its writer has yet to lock and fill
    first = os.pread(fd, min(size, 1 << 20), 0)
    end = first.find(b"\n")
    # One line, whatever its length (argv may be long), or not even that (a
    # line cut short): claims come only after the first line's newline.
    return end == size - 1 or (end < 0 and size <= len(first))


def check_directory(directory: Path) -> None:
    """Refuse a ``writers/`` that is not a directory of the store's own (a link, say)."""
    found = os.lstat(directory)
    if not stat.S_ISDIR(found.st_mode):
        raise CorruptStoreError(
            f"{directory} is not a directory (a link?); a store's own directories never "
            "are anything else, and tastypy does not follow one out of the store"
        )


def _describe(path: Path, raw: bytes) -> Writer:
    """A live writer from its file's line; what it says is only shown, never trusted."""
    name = path.name.removesuffix(SUFFIX)
    info: Any
    try:
        info = json.loads(raw)
    except (ValueError, RecursionError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    pid = info.get("pid")
    if type(pid) is not int:
        pid = int(name.split("-", 1)[0]) if name[:1].isdigit() else 0
    since = info.get("since")
    argv = info.get("argv")
    host = info.get("host")
    return Writer(
        id=name,
        pid=pid,
        host=host if isinstance(host, str) else "",
        argv=[str(a) for a in argv][:4] if isinstance(argv, list) else [],
        since=_number(since),
    )


def _after_fork_in_child() -> None:
    for entry in list(_held):
        entry._forget_in_child()
    _held.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _number(value: object) -> float:
    """A time from an untrusted line, as a float; 0.0 if it is none."""
    if type(value) not in (int, float):
        return 0.0
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:  # a 400-digit integer
        return 0.0
