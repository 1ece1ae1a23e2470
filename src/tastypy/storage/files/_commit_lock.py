"""The commit lock of a shared store: one writer at a time appends, compacts, lays out.

``<store>/commit.lock``, taken with ``flock(LOCK_EX)`` around every commit of
a shared store (``docs/SHARED.md``). Each commit is appended and
``fdatasync``ed while the lock is held, so the next writer appends only after
it is durable, and at most the journal's last commit is ever unsynced: the
torn-tail rule of a single writer holds unchanged. The kernel drops the lock
of a writer that dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from . import _fs

__all__ = ["COMMIT_LOCK", "COMPACT_LOCK", "CommitLock"]

COMMIT_LOCK = "commit.lock"
# Held by a shared writer while it compacts, the store's commit lock held or
# not: one compaction at a time, and its files are nobody else's leftovers.
COMPACT_LOCK = "compact.lock"
_POLL_SECONDS = (0.0005, 0.05)  # the first and the longest pause between attempts


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
        _open.add(self)

    def held(self) -> CommitLock:
        """``with lock.held():`` holds the lock for the block (waiting for another writer).

        A plain class context manager, not a generator: it is taken several
        times per claim of a shared tracker.
        """
        return self

    def __enter__(self) -> None:
        if self._fd < 0:
            raise ValueError(f"{self.path}: this open's commit lock is closed")
        if not self._depth:
            self._lock(fcntl.LOCK_EX)
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
        self._depth = 1
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
