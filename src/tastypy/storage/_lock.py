"""The single-writer lock: an OS lock (``flock``) on ``<store>/lock``.

``flock`` locks die with the process that holds them, so a killed writer
never leaves a stale lock behind. The file also carries a line describing
the holder, used only to write a helpful error message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
import weakref
from pathlib import Path

from ..errors import LockedError
from . import _fs

__all__ = ["StoreLock"]

_POLL_SECONDS = 0.05
# Every lock fd this process holds; closed (not unlocked!) in forked children
# so that a child outliving its parent does not keep the store locked.
_held: weakref.WeakSet[StoreLock] = weakref.WeakSet()


class StoreLock:
    """Exclusive, process-wide lock on one store directory.

    Parameters
    ----------
    directory
        The store directory; the lock file is ``directory / "lock"``.
    timeout
        Seconds to wait for another holder to let go: ``0`` fails at once,
        ``None`` waits forever.

    Raises
    ------
    LockedError
        If the lock is still held by someone else when the timeout expires.
    """

    def __init__(self, directory: Path, timeout: float | None = 0.0) -> None:
        self.path = directory / "lock"
        self._fd: int | None = _fs.open_fd(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                _fs.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    holder = describe_holder(self.path)
                    _fs.close(self._fd)
                    self._fd = None
                    waited = f" after waiting {timeout:g}s" if timeout else ""
                    raise LockedError(
                        f"{directory} is open for writing by {holder}{waited}; close it "
                        "there, open with readonly=True, or pass timeout=SECONDS to wait"
                    ) from None
                time.sleep(_POLL_SECONDS if remaining is None else min(_POLL_SECONDS, remaining))
        info = {"pid": os.getpid(), "host": socket.gethostname(), "argv": sys.argv[:4]}
        _fs.ftruncate(self._fd, 0)
        _fs.pwrite(self._fd, json.dumps(info).encode() + b"\n", 0)
        _held.add(self)

    def release(self) -> None:
        """Release the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _held.discard(self)
        try:
            _fs.ftruncate(fd, 0)
        finally:
            _fs.close(fd)  # closing the last descriptor releases the flock

    def __del__(self) -> None:
        # A lock object dropped without release() must not hold the store.
        self.release()

    def _forget_in_child(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            _fs.close(fd)


def describe_holder(lock_path: Path) -> str:
    """Best-effort description of the process named in a lock file."""
    try:
        info = json.loads(lock_path.read_text() or "{}")
        argv = " ".join(str(a) for a in info.get("argv", []))
        return f"process {info['pid']} on {info['host']} ({argv})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _after_fork_in_child() -> None:
    for lock in list(_held):
        lock._forget_in_child()
    _held.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
