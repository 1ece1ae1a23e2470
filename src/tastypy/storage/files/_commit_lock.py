"""The commit lock of a shared store: one writer at a time appends, compacts, lays out.

``<store>/commit.lock``, taken with ``flock(LOCK_EX)`` around every commit of
a shared store (``docs/SHARED.md``). Each commit is appended and
``fdatasync``ed while the lock is held, so the next writer appends only after
it is durable, and at most the journal's last commit is ever unsynced: the
torn-tail rule of a single writer holds unchanged. The kernel drops the lock
of a writer that dies.

The file's content is one line a committing writer rewrites (in place, one
``pwrite``) once its commit is durable: the journal's generation and where
its last durable commit ends, with a CRC-32 of the two::

    {"generation":3,"journal_end":48213,"crc32":2915630114}

(padded with spaces to a fixed width). A writer that only reads reads the
journal up to there without taking the lock: every commit before that end
is whole and durable, so nothing it adopts can be cut off again. A line that
is missing, torn or of another generation, or a journal longer than it says,
sends the reader to the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from . import _fs

__all__ = ["COMMIT_LOCK", "COMPACT_LOCK", "CommitLock"]

COMMIT_LOCK = "commit.lock"
# Held by a shared writer while it compacts, the store's commit lock held or
# not: one compaction at a time, and its files are nobody else's leftovers.
COMPACT_LOCK = "compact.lock"
_POLL_SECONDS = (0.0005, 0.05)  # the first and the longest pause between attempts
_PUBLISHED_SIZE = 96  # bytes of the published line, newline included


def _never(waited: float) -> bool:
    return False


# Asked while a writer waits for another's commit: whether to give up now
# (a signal is waiting to be handled, or the program is ending and has
# waited long enough). The layer above sets it (``engines.set_give_up``).
give_up: Callable[[float], bool] = _never
# Locks this process holds open; a forked child closes its copies of their fds.
_open: weakref.WeakSet[CommitLock] = weakref.WeakSet()


class CommitLock:
    """This open's handle on ``commit.lock`` (re-entrant within the open)."""

    def __init__(self, store: Path, name: str = COMMIT_LOCK) -> None:
        self.path = store / name
        self._fd = _fs.open_inside(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._depth = 0
        self._how = 0  # LOCK_EX or LOCK_SH while held
        self._shared = _SharedHold(self)
        _open.add(self)

    def held(self) -> CommitLock:
        """``with lock.held():`` holds the lock for the block (waiting for another writer).

        A plain class context manager, not a generator: it is taken several
        times per claim of a shared tracker.
        """
        return self

    def held_shared(self) -> _SharedHold:
        """``with lock.held_shared():`` holds it shared: others may read, nobody commits.

        For reading what was committed (a catch-up with nothing to write):
        any number of writers hold it so at once. Inside :meth:`held` it nests
        (the exclusive hold covers it); :meth:`held` inside it is refused,
        since ``flock`` cannot turn a shared lock exclusive atomically.
        """
        return self._shared

    def __enter__(self) -> None:
        self._enter(fcntl.LOCK_EX)

    def _enter(self, how: int) -> None:
        if self._fd < 0:
            raise ValueError(f"{self.path}: this open's commit lock is closed")
        if not self._depth:
            self._lock(how)
            self._how = how
        elif how == fcntl.LOCK_EX and self._how != fcntl.LOCK_EX:
            raise RuntimeError(f"{self.path}: cannot commit inside a shared hold of the lock")
        self._depth += 1

    def _lock(self, how: int) -> None:
        """``flock`` the file now at the path (a deleted or replaced one is opened anew).

        Writers exclude each other only if they lock the same file: one that
        someone deleted (a "stale lock" reflex) would let a writer opened
        since lock another. Raises ``BlockingIOError`` for a held
        non-blocking lock.
        """
        while True:
            if how & fcntl.LOCK_NB:
                _fs.flock(self._fd, how)
            else:
                self._wait(how)
            if _same_file(self._fd, self.path):
                return
            _fs.flock(self._fd, fcntl.LOCK_UN)
            replaced = _fs.open_inside(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            _fs.close(self._fd)
            self._fd = replaced

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if not self._depth and self._fd >= 0:
            _fs.flock(self._fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def held_if_free(self) -> Iterator[bool]:
        """Hold the lock for the block if nobody else does; yields whether it is held."""
        if self._fd < 0:
            raise ValueError(f"{self.path}: this open's lock is closed")
        if self._depth:
            yield False  # this open holds it already (a compaction inside a compaction)
            return
        try:
            self._lock(fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        self._depth, self._how = 1, fcntl.LOCK_EX
        try:
            yield True
        finally:
            self._depth = 0
            _fs.flock(self._fd, fcntl.LOCK_UN)

    def _wait(self, how: int) -> None:
        """Take the lock, polling, so that a signal or the program's end can cut the wait.

        Raises ``InterruptedError`` (nothing is held) when :data:`give_up` says so.
        """
        started = time.monotonic()
        pause = _POLL_SECONDS[0]
        while True:
            try:
                _fs.flock(self._fd, how | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            waited = time.monotonic() - started
            if give_up(waited):
                raise InterruptedError(
                    f"{self.path}: gave up waiting for another writer's commit "
                    f"after {waited:.1f} s (a signal, or the program is ending)"
                )
            time.sleep(pause)
            pause = min(pause * 2, _POLL_SECONDS[1])

    def publish(self, generation: int, journal_end: int) -> None:
        """Say where the journal's durable commits end (the lock held exclusively)."""
        assert self.exclusive, "published only by the committing writer"
        crc = zlib.crc32(b"%d %d" % (generation, journal_end))
        line = orjson.dumps({"generation": generation, "journal_end": journal_end, "crc32": crc})
        data = line.ljust(_PUBLISHED_SIZE - 1) + b"\n"
        _fs.pwrite(self._fd, data, 0)

    def published(self, generation: int) -> int | None:
        """Where generation *generation*'s durable commits end, as published (None: unsure)."""
        raw = os.pread(self._fd, _PUBLISHED_SIZE, 0)
        try:
            found = orjson.loads(raw)
            end = found["journal_end"]
            same = found["generation"] == generation
            checked = found["crc32"] == zlib.crc32(b"%d %d" % (found["generation"], end))
        except (ValueError, KeyError, TypeError):
            return None
        return end if same and checked and type(end) is int and end >= 0 else None

    @property
    def exclusive(self) -> bool:
        """Whether this open holds the lock exclusively now."""
        return bool(self._depth) and self._how == fcntl.LOCK_EX

    @property
    def depth(self) -> int:
        """How many blocks of this open hold the lock now (0: not held)."""
        return self._depth

    def close(self) -> None:
        """Let go of the file (and of the lock, if held). Idempotent."""
        fd, self._fd = self._fd, -1
        _open.discard(self)
        if fd >= 0:
            _fs.close(fd)

    def _forget_in_child(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _fs.close(fd)


class _SharedHold:
    """The context manager of :meth:`CommitLock.held_shared`."""

    __slots__ = ("_lock",)

    def __init__(self, lock: CommitLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock._enter(fcntl.LOCK_SH)

    def __exit__(self, *exc_info: object) -> None:
        self._lock.__exit__()


def _same_file(fd: int, path: Path) -> bool:
    """Whether *fd* is the file now at *path*."""
    held = os.fstat(fd)
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    return (held.st_ino, held.st_dev) == (named.st_ino, named.st_dev)


def _after_fork_in_child() -> None:
    for lock in list(_open):
        lock._forget_in_child()
    _open.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
