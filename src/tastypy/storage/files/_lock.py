"""The single-writer lock: an OS lock (``flock``) on the store directory itself.

``flock`` locks die with the process that holds them, so a killed writer
never leaves a stale lock behind.

The lock that counts is on the store *directory*: it cannot be deleted while
the store exists. A lock on ``<store>/lock`` alone would not do — deleting that
file (a common reflex for a "stale lock") lets the next writer create a new
file and lock it while the first writer still writes, and one of them then
silently loses its syncs. The writer also locks ``<store>/lock`` (after the
directory), which keeps out older tastypy versions that lock only the file,
and writes a line describing itself there (pid, host, argv). That line only
serves error messages and ``tastypy status``; since it can be deleted or
replaced, :func:`describe_holder` checks it against the OS's list of lock
holders (``/proc/locks``) where there is one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
import weakref
from pathlib import Path
from typing import Any

from ...errors import LockedError
from . import _fs

__all__ = ["StoreLock", "describe_holder"]

log = logging.getLogger(__name__)

LOCK_FILE = "lock"
_POLL_SECONDS = 0.05
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Every lock this process holds; its fds are closed (not unlocked!) in forked
# children so that a child outliving its parent does not keep the store locked.
_held: weakref.WeakSet[StoreLock] = weakref.WeakSet()


class StoreLock:
    """Exclusive, process-wide lock on one store directory.

    Parameters
    ----------
    directory
        The store directory. It is locked itself; ``directory / "lock"`` is
        locked too and names the holder.
    timeout
        Seconds to wait for another holder to let go: ``0`` fails at once,
        ``None`` waits forever.

    Raises
    ------
    LockedError
        If the lock is still held by someone else when the timeout expires;
        the message names the directory and the holder.

    Notes
    -----
    Deleting or replacing the lock file changes nothing: the directory stays
    locked until its holder releases it, closes it or dies. The lock is
    process-wide; forked children close their copies (see
    :func:`_after_fork_in_child`).
    """

    def __init__(
        self, directory: Path, timeout: float | None = 0.0, *, shared: bool = False
    ) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self.shared = shared
        self._mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        self._dir_fd: int | None = None
        self._fd: int | None = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._try_acquire():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise self._refusal(timeout)
            time.sleep(_POLL_SECONDS if remaining is None else min(_POLL_SECONDS, remaining))
        _held.add(self)
        if not shared:  # shared writers name themselves in writers/ instead
            self._write_holder_info()

    def _refusal(self, timeout: float | None) -> LockedError:
        directory = self.directory
        waited = f" after waiting {timeout:g}s" if timeout else ""
        if self.shared:
            return LockedError(
                f"{directory} is open for writing by {describe_holder(directory)}{waited}, "
                "not shared; close it there, or open it there with shared=True too"
            )
        from ._writers import live_writers  # noqa: PLC0415  # shared stores only

        others = live_writers(directory)
        if others:
            names = ", ".join(_describe(w.pid, w.host, w.argv) for w in others[:3])
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            return LockedError(
                f"{directory} is open for shared writing by {names}{more}{waited}; "
                "open it with shared=True to write beside them, or with readonly=True"
            )
        return LockedError(
            f"{directory} is open for writing by {describe_holder(directory)}{waited}; close "
            "it there, open with readonly=True, or pass timeout=SECONDS to wait"
        )

    def _try_acquire(self) -> bool:
        """Lock the directory, then the lock file; False if someone else holds either."""
        dir_fd = _fs.open_fd(self.directory, os.O_RDONLY | _O_DIRECTORY)
        try:
            _fs.flock(dir_fd, self._mode | fcntl.LOCK_NB)
            fd = self._lock_file()
        except BlockingIOError:
            _fs.close(dir_fd)
            return False
        except BaseException:
            _fs.close(dir_fd)
            raise
        self._dir_fd, self._fd = dir_fd, fd
        return True

    def _lock_file(self) -> int:
        """Open and lock the file now at ``lock`` (BlockingIOError if held).

        The directory lock is already ours, so no writer of this version
        competes; the file may still be held by an older version, or be
        deleted or replaced by a user between our open and our flock. A
        file locked after it left its path would name nobody: retry.
        """
        while True:
            # Never through a link (truncating the lock file would empty its
            # target), nor a FIFO or a device: CorruptStoreError naming it.
            fd = _fs.open_inside(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _fs.flock(fd, self._mode | fcntl.LOCK_NB)
                if _same_file(os.fstat(fd), self.path):
                    return fd
            except BaseException:
                _fs.close(fd)
                raise
            _fs.close(fd)

    def _write_holder_info(self) -> None:
        # Only for messages: a full disk or an I/O error here must not fail the
        # open (describe_holder finds the holder through the OS all the same).
        assert self._fd is not None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "argv": sys.argv[:4]}
        try:
            _fs.ftruncate(self._fd, 0)
            _fs.pwrite(self._fd, json.dumps(info).encode() + b"\n", 0)
        except OSError as exc:
            log.warning("%s: could not note this process as the holder: %s", self.path, exc)

    def release(self) -> None:
        """Release the lock (idempotent)."""
        fd, self._fd = self._fd, None
        dir_fd, self._dir_fd = self._dir_fd, None
        _held.discard(self)
        try:
            if fd is not None:
                if not self.shared:
                    with contextlib.suppress(OSError):  # the holder line is cosmetic
                        _fs.ftruncate(fd, 0)
                _fs.close(fd)  # closing the last descriptor releases a flock
        finally:
            if dir_fd is not None:
                _fs.close(dir_fd)  # the directory last: it is the lock that counts

    def __del__(self) -> None:
        # A lock object dropped without release() must not hold the store.
        self.release()

    def _forget_in_child(self) -> None:
        fd, self._fd = self._fd, None
        dir_fd, self._dir_fd = self._dir_fd, None
        for each in (fd, dir_fd):
            if each is not None:
                _fs.close(each)


def describe_holder(directory: Path) -> str:
    """Best-effort description of the process holding *directory*'s lock.

    The holder line in ``directory / "lock"`` is believed only if the OS says
    that process holds the directory's lock (``/proc/locks``, Linux); the
    file may have been deleted, replaced or never written (full disk). Where
    the OS keeps no such list, the line is taken as it is.
    """
    info = _holder_line(directory / LOCK_FILE)
    owners = _owners(directory)
    if info is not None and (owners is None or info["pid"] in owners):
        return _describe(info["pid"], info.get("host"), info.get("argv"))
    if not owners:
        return "another process"
    pid = min(owners)
    return _describe(pid, socket.gethostname(), _cmdline(pid))


def holder_pid(directory: Path) -> int | None:
    """The pid of the process holding *directory*'s write lock now, or None if none does.

    Asked of the OS, never of the lock file alone: the lock file of a copied
    store, or one naming a writer that was killed (its pid perhaps reused
    since), names no holder. On Linux the kernel's table of held locks
    (``/proc/locks``, matched by device and inode) gives the holder. Where
    there is no such table, a non-blocking shared lock attempt tells whether
    the lock is held, and the pid is the one the lock file names (0 if it
    names none); that attempt holds a shared lock for an instant, during
    which a writer opening with ``timeout=0`` would be refused.
    """
    owners = _owners(directory)
    if owners is not None:
        return min(owners) if owners else None
    lock_file = directory / LOCK_FILE
    if not (_is_locked(directory, _O_DIRECTORY) or _is_locked(lock_file, _O_NOFOLLOW)):
        return None
    info = _holder_line(lock_file)
    return 0 if info is None else int(info["pid"])


def _is_locked(path: Path, flags: int) -> bool:
    """Whether an exclusive ``flock`` is held on *path*, by a non-blocking attempt."""
    try:
        # Non-blocking: a FIFO planted as the lock file must not hang a reader.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | flags)
    except OSError:
        return False  # e.g. no lock file: nobody can hold a lock on it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing it lets go of the shared lock, if we got it
    return False


def _owners(directory: Path) -> set[int] | None:
    """Pids holding the directory's lock or, failing that, the lock file's (older versions)."""
    owners = _lock_owners(directory)
    if owners is None or owners:
        return owners
    return _lock_owners(directory / LOCK_FILE) or set()


def _describe(pid: Any, host: Any, argv: Any) -> str:
    words = " ".join(str(a) for a in argv) if isinstance(argv, list) else ""
    words = " ".join(words.split())  # `python -c CODE` puts newlines in argv
    if len(words) > 120:
        words = words[:119] + "…"
    return f"process {pid} on {host or 'this machine'} ({words})"


def _holder_line(lock_path: Path) -> dict[str, Any] | None:
    try:
        # A link, a FIFO or a device names no holder (CorruptStoreError is a ValueError).
        fd = _fs.open_inside(lock_path, os.O_RDONLY)
        try:
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
        info = json.loads(raw or b"{}")
    except (OSError, ValueError, RecursionError):  # [[[[... nests too deep for json
        return None
    if not isinstance(info, dict) or type(info.get("pid")) is not int:
        return None
    return info


def _lock_owners(path: Path) -> set[int] | None:
    """Pids holding a ``flock`` on *path*, from ``/proc/locks``; None where unknown."""
    try:
        st = os.stat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 5439 fe:00:260072 0 EOF"; waiters have a "->"
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    owners = set()
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            with contextlib.suppress(ValueError):
                owners.add(int(fields[4]))
    return owners


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part][:4]


def _same_file(st: os.stat_result, path: Path) -> bool:
    """Whether *st* (of an open fd) is the file now at *path*."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)


def _after_fork_in_child() -> None:
    for lock in list(_held):
        lock._forget_in_child()
    _held.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
