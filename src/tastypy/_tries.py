"""``tries.jsonl``: tries counted since the tracker's last sync.

:meth:`ProgressTracker.try_it` appends ``["key", tries]`` here before it
returns — one ``write``, no ``fsync``: it survives the process being killed,
which is what matters (a task that crashes its program must not be retried
forever). A full sync puts every try in the store proper and empties the
file; opening a tracker takes the highest count of each key from it. Applying
a line twice changes nothing, so a crash between sync and emptying is harmless.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson

from .storage import _fs

__all__ = ["NAME", "TriesLog"]

log = logging.getLogger(__name__)

NAME = "tries.jsonl"


class TriesLog:
    """The writer's handle on ``<store>/tries.jsonl`` (read-only: never writes)."""

    def __init__(self, directory: Path, *, readonly: bool) -> None:
        self.path = directory / NAME
        self._readonly = readonly
        self._fd = -1
        self._dirty = self.path.exists() and self.path.stat().st_size > 0

    def append(self, key: str, tries: int) -> None:
        if self._readonly:
            return
        if self._fd < 0:
            self._fd = _fs.open_fd(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fs.write(self._fd, orjson.dumps([key, tries]) + b"\n")
        self._dirty = True

    def read(self) -> list[tuple[str, int]]:
        """The logged ``(key, tries)``; a torn last line (a crash mid-write) is skipped."""
        try:
            raw = _fs.read_file(self.path)
        except FileNotFoundError:
            return []
        entries = []
        for lineno, line in enumerate(raw.split(b"\n")[:-1], 1):
            try:
                key, tries = orjson.loads(line)
            except (orjson.JSONDecodeError, ValueError, TypeError):
                log.warning("%s:%d: unreadable line ignored", self.path, lineno)
                continue
            if type(key) is str and type(tries) is int:
                entries.append((key, tries))
        return entries

    def clear(self) -> None:
        """Empty the log: the tries in it are now in the store."""
        if self._readonly or not self._dirty:
            return
        if self._fd >= 0:
            _fs.ftruncate(self._fd, 0)
        else:
            fd = _fs.open_fd(self.path, os.O_WRONLY)
            try:
                _fs.ftruncate(fd, 0)
            finally:
                _fs.close(fd)
        self._dirty = False

    def close(self) -> None:
        if self._fd >= 0:
            _fs.close(self._fd)
            self._fd = -1
