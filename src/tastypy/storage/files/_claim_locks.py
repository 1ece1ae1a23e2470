"""Who may work on a task now: one byte-range lock per claimed task (``docs/SHARED.md``).

A shared writer that claims task ``key`` takes an open-file-description
lock (``F_OFD_SETLK``, Linux) on one byte of one of the files
``<store>/claims/NN.lock``, file and offset given by a 64-bit hash of the
key. Another writer's attempt on the same byte fails at once: the task is
held. The kernel drops the lock when its holder lets go or dies, however it
dies, and pid reuse cannot fool it, so a claim needs neither the store's
commit lock nor a clock. (The kernel walks a file's whole list of locks at
each lock and unlock: spread over 32 files, thousands of held claims cost a
few microseconds each, where one file would make it tens.)

Two keys with the same hash only make each other look held (a false "no"
from ``try_it``, about once in 10^9 for 100,000 tasks held at once), never
both claimed. Where the platform has no such locks (:data:`AVAILABLE`),
:meth:`ClaimLocks.take` always succeeds and the claims logs, read under the
commit lock, decide alone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import struct
import weakref
from collections.abc import Iterable
from pathlib import Path

from . import _fs
from ._writers import check_directory

__all__ = ["AVAILABLE", "CLAIMS", "ClaimLocks"]

log = logging.getLogger(__name__)

CLAIMS = "claims"
_FILES = 32
AVAILABLE = hasattr(fcntl, "F_OFD_SETLK")
# struct flock: l_type, l_whence, l_start, l_len, l_pid, padded as the C struct is.
_FLOCK = struct.Struct("@hhqqi0q")
_HELD = (errno.EAGAIN, errno.EACCES)
_FEW = 8  # keys unlocked one by one, without looking at what else is held
_open: weakref.WeakSet[ClaimLocks] = weakref.WeakSet()


def _place(key: str) -> tuple[int, int]:
    """Which file (0 to 31) and byte stand for *key*."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    number = int.from_bytes(digest, "big")
    return number & (_FILES - 1), number >> 5  # below 2**59: any off_t holds it


class _File:
    """One of the lock files, as this open has it."""

    __slots__ = ("fd", "ident", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = _fs.open_inside(path, os.O_RDWR | os.O_CREAT, 0o644)
        found = os.fstat(self.fd)
        self.ident = (found.st_ino, found.st_dev)

    def still_named(self) -> bool:
        """Whether the path still names this file (not deleted, replaced or moved)."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (named.st_ino, named.st_dev) == self.ident


class ClaimLocks:
    """One open's byte locks in ``claims/`` (none where :data:`AVAILABLE` is false)."""

    def __init__(self, store: Path) -> None:
        self.path = store / CLAIMS
        self._files: dict[int, _File] = {}  # opened when first needed
        self._mine: dict[str, int] = {}  # key -> its file, for the keys this open locked
        self._closed = False
        if AVAILABLE:
            with contextlib.suppress(FileExistsError):
                _fs.mkdir(self.path)
            check_directory(self.path)  # never a link out of the store
            _open.add(self)

    def _file(self, number: int) -> _File:
        found = self._files.get(number)
        if found is None:
            found = self._files[number] = self._open_file(number)
        return found

    def _open_file(self, number: int) -> _File:
        path = self.path / f"{number:02d}.lock"
        try:
            return _File(path)
        except FileNotFoundError:  # claims/ was deleted: made again, as commit.lock is
            with contextlib.suppress(FileExistsError):
                _fs.mkdir(self.path)
            check_directory(self.path)
            return _File(path)

    def _set(self, number: int, offset: int, kind: int) -> bool:
        request = _FLOCK.pack(kind, os.SEEK_SET, offset, 1, 0)
        try:
            fcntl.fcntl(self._file(number).fd, fcntl.F_OFD_SETLK, request)
        except OSError as exc:
            if exc.errno in _HELD:
                return False
            raise
        return True

    def take(self, key: str) -> bool:
        """Lock *key*'s byte for this open; False if another open holds it (or a key
        with the same hash). Taking a key this open holds succeeds.
        """
        if self._closed:
            raise ValueError(f"{self.path}: this open's claim locks are closed")
        if not AVAILABLE:
            return True
        number, offset = _place(key)
        mine = self._mine
        had = key in mine
        mine[key] = number  # before the lock: an exception after it cannot hide it
        if not self._set(number, offset, fcntl.F_WRLCK):
            if not had:
                del mine[key]
            return False
        if not self._file(number).still_named():
            return self._move(key)
        return True

    def drop(self, keys: Iterable[str]) -> None:
        """Unlock the bytes of *keys* (those this open has locked).

        A file none of whose keys stay locked is unlocked whole, in one call
        (a sync releases hundreds of claims at once).
        """
        if self._closed or not AVAILABLE:
            return
        mine = self._mine
        going: dict[int, list[str]] = {}
        for key in keys:
            number = mine.pop(key, None)
            if number is not None:
                going.setdefault(number, []).append(key)
        if not going:
            return
        few = sum(map(len, going.values())) <= _FEW
        staying = set(mine.values()) if mine and not few else set()
        for number, key_list in going.items():
            if few or number in staying:
                for key in key_list:
                    self._set(number, _place(key)[1], fcntl.F_UNLCK)
            else:
                self._unlock_all(number)

    def _unlock_all(self, number: int) -> None:
        request = _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0)  # length 0: to the end
        fcntl.fcntl(self._file(number).fd, fcntl.F_OFD_SETLK, request)

    def _move(self, key: str) -> bool:
        """*key*'s lock file was deleted or replaced: lock its held keys on the new file.

        Writers exclude each other only on one file. A key another writer
        took on the new file meanwhile stays claimed in this open's log, its
        lock the other's (a warning says so); *key* itself is then refused.
        """
        number = _place(key)[0]
        fresh = self._open_file(number)  # before the old one goes: a failure keeps it
        _fs.close(self._files[number].fd)
        self._files[number] = fresh
        moved = sorted(other for other, at in self._mine.items() if at == number)
        lost = []
        for other in moved:
            if not self._set(number, _place(other)[1], fcntl.F_WRLCK):
                del self._mine[other]
                if other != key:
                    lost.append(other)
        if lost:
            log.warning(
                "%s was deleted or replaced while tasks were held; %d of them (%r ...) are "
                "now locked by another process too",
                self._file(number).path,
                len(lost),
                lost[0],
            )
        return key in self._mine

    def close(self) -> None:
        """Let go of every lock (closing the file does). Idempotent."""
        self._closed = True
        self._mine = {}
        _open.discard(self)
        self._forget_in_child()

    def _forget_in_child(self) -> None:
        # In a forked child, closing its copies of the descriptors leaves the
        # parent's locks (they belong to the open file descriptions, which the
        # parent still has open), and the child can never take the parent's.
        self._closed = True
        files, self._files = self._files, {}
        for found in files.values():
            _fs.close(found.fd)


def _after_fork_in_child() -> None:
    for locks in list(_open):
        locks._forget_in_child()
    _open.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
