"""A store's side log: small lines appended between syncs, kept if the process dies.

The tracker counts each try here before the task runs (``tries.jsonl``): one
``write``, no ``fsync``, so the line survives a ``kill -9`` of the program
(a power cut may lose it, as it may lose anything since the last sync). The
engine owns the bytes; what the lines mean is the layer above's business.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ...errors import ReadOnlyError
from . import _fs

__all__ = ["FileSideLog", "side_log_name"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def side_log_name(name: str) -> str:
    """The file of side log *name* (``tries`` -> ``tries.jsonl``)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"a side log's name must be a short lowercase word, not {name!r}")
    return f"{name}.jsonl"


class FileSideLog:
    """``<store>/<name>.jsonl``, appended to by the store's one writer.

    Not thread-safe: the owner serializes calls. A read-only open never writes.
    """

    def __init__(self, directory: Path, name: str, *, readonly: bool, durable: bool) -> None:
        self.path = directory / side_log_name(name)
        self._readonly = readonly
        self._durable = durable
        self._fd = -1
        self._end = -1  # the log's size as this process wrote it (-1: ask the OS)
        self._torn = False  # a line was cut short and could not be cut off
        # Only a regular file can need emptying: anything else there is refused
        # by read(), and closing the refused tracker must not trip over it.
        try:
            found = os.lstat(self.path)
        except FileNotFoundError:
            self._dirty = False
        else:
            self._dirty = stat.S_ISREG(found.st_mode) and found.st_size > 0

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def empty(self) -> bool:
        """Whether the log holds nothing (as far as this open knows)."""
        return not self._dirty

    def read(self) -> bytes:
        """Every byte of the log (``b""`` if there is none).

        Raises
        ------
        CorruptStoreError
            If the log is a symbolic link, a directory, a FIFO or a device.
        """
        try:
            return _fs.read_file(self.path)
        except FileNotFoundError:
            return b""

    def append(self, line: bytes) -> None:
        """Append *line* (ending in a newline), or raise having appended nothing.

        If the write fails (a full disk), the bytes written of the line are
        cut off again; should that fail too, the next line starts with a mark
        that makes the torn one unreadable as JSON, so it never glues onto it.
        """
        if self._readonly:
            raise ReadOnlyError(f"{self.path}: the store is open read-only")
        if self._fd < 0:
            self._fd = _fs.open_inside(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._end = -1
        if self._end < 0:
            self._end = _fs.fstat_size(self._fd)
        if self._torn:
            line = b"!\n" + line  # ends a torn line with what no JSON text may end with
        try:
            written = _fs.write(self._fd, line)
            while written < len(line):  # a short write must not glue two lines together
                written += _fs.write(self._fd, memoryview(line)[written:])
        except BaseException:
            self._cut_back()  # even if nothing was said to be written: cheap, and sure
            raise
        self._end += written
        self._torn = False
        self._dirty = True

    def _cut_back(self) -> None:
        """Undo a partly written line (truncating needs no free space)."""
        try:
            _fs.ftruncate(self._fd, self._end)
        except OSError:
            self._torn = True
            self._end = -1

    def flush(self) -> None:
        """Make what was appended survive a power cut too."""
        if self._fd >= 0 and self._durable:
            _fs.fdatasync(self._fd)

    def clear(self) -> None:
        """Empty the log: what it said is in the store proper now."""
        if self._readonly:
            raise ReadOnlyError(f"{self.path}: the store is open read-only")
        if not self._dirty:
            return
        if self._fd >= 0:
            _fs.ftruncate(self._fd, 0)
            self._end, self._torn = 0, False
        else:
            fd = _fs.open_inside(self.path, os.O_WRONLY)
            try:
                _fs.ftruncate(fd, 0)
            finally:
                _fs.close(fd)
        self._dirty = False

    def close(self) -> None:
        if self._fd >= 0:
            _fs.close(self._fd)
            self._fd = -1
