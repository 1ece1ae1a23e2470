"""``tries.jsonl``: tries counted since the tracker's last sync.

:meth:`ProgressTracker.try_it` appends ``["key", tries]`` here before it
returns — one ``write``, no ``fsync``: it survives the process being killed,
which is what matters (a task that crashes its program must not be retried
forever). A full sync puts every try in the store proper and empties the
file; opening a tracker applies, for each key, the *last* line about it.

Before any sync, each key the log speaks of whose record now says otherwise
(its tries were reset, or the task was deleted) gets a line that says so —
``["key", tries]`` or ``["key", null]`` for a deleted task. So the log never
contradicts what the sync then commits: a sync of a few keys (``sync_key``)
leaves the rest of the log in force without undoing a reset or bringing a
deleted task back, and a crash between a sync and the emptying of the log
is harmless.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeGuard

import orjson

from .storage import _fs

__all__ = ["NAME", "TriesLog"]

log = logging.getLogger(__name__)

NAME = "tries.jsonl"


def _is_entry(entry: object) -> TypeGuard[list[Any]]:
    """Whether a decoded line is ``["key", tries]``: tries a whole number >= 0, or null."""
    if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not str:
        return False
    tries = entry[1]
    return tries is None or (type(tries) is int and tries >= 0)


class TriesLog:
    """The writer's handle on ``<store>/tries.jsonl`` (read-only: never writes)."""

    def __init__(self, directory: Path, *, readonly: bool, durable: bool = True) -> None:
        self.path = directory / NAME
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
        # key -> what the log says of it now (tries, or None: deleted), for
        # the keys logged by this process since the log was last emptied.
        self._said: dict[str, int | None] = {}

    def append(self, key: str, tries: int | None) -> None:
        """Log that *key* has *tries* now (None: deleted), or raise having logged nothing.

        If the write fails (a full disk), the bytes written of the line are
        cut off again, so the log says nothing new; should that fail too,
        the next line starts with a mark that makes the torn one unreadable.
        """
        if self._readonly:
            return
        if self._fd < 0:
            self._fd = _fs.open_inside(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._end = -1
        if self._end < 0:
            self._end = _fs.fstat_size(self._fd)
        line = orjson.dumps([key, tries]) + b"\n"
        if self._torn:
            line = b"!\n" + line  # ends a torn line with what no JSON text may end with
        written = 0
        try:
            while written < len(line):  # a short write must not glue two lines together
                written += _fs.write(self._fd, memoryview(line)[written:])
        except BaseException:
            self._cut_back()  # even if nothing was said to be written: cheap, and sure
            raise
        self._end += written
        self._torn = False
        self._said[key] = tries
        self._dirty = True

    def _cut_back(self) -> None:
        """Undo a partly written line (truncating needs no free space)."""
        try:
            _fs.ftruncate(self._fd, self._end)
        except OSError:
            self._torn = True
            self._end = -1

    def read(self) -> list[tuple[str, int]]:
        """What the log says, key by key: ``(key, tries)`` in first-mention order.

        The last line about a key wins; a key whose last line says deleted is
        left out. A line that is not ``["key", tries]`` (tries a whole number
        >= 0, or null) is skipped: a torn last line (a crash mid-write), or
        garbage a power cut left where unsynced lines were. One warning names
        how many were skipped and the first. Memory is bounded by the file's
        size: this reads the file, not what its lines claim.

        Raises
        ------
        CorruptStoreError
            If ``tries.jsonl`` is a symbolic link, a directory, a FIFO or a device.
        """
        try:
            raw = _fs.read_file(self.path)
        except FileNotFoundError:
            return []
        said: dict[str, int | None] = {}
        skipped: list[int] = []
        for lineno, line in enumerate(raw.split(b"\n")[:-1], 1):
            try:
                entry = orjson.loads(line)  # nesting too deep is a JSONDecodeError too
            except orjson.JSONDecodeError:
                entry = None
            if _is_entry(entry):
                said[entry[0]] = entry[1]
            else:
                skipped.append(lineno)
        if skipped:
            what = "1 line" if len(skipped) == 1 else f"{len(skipped):,} lines"
            log.warning(
                '%s: %s not ["key", tries] ignored, the first at line %d (a crash or a '
                "power cut leaves such lines)",
                self.path,
                what,
                skipped[0],
            )
        self._said = dict(said)
        return [(key, tries) for key, tries in said.items() if tries is not None]

    def settle(self, data: dict[str, Any], keys: Iterable[str] | None) -> None:
        """Log the current tries of *keys* (all logged keys if None) where the log differs.

        Called before a sync commits those keys, so that the log agrees
        with the commit.
        """
        if self._readonly or not self._said:
            return
        said = self._said
        corrected = False
        for key in list(said) if keys is None else [k for k in keys if k in said]:
            record = data.get(key)
            tries = record.get("_tries") if isinstance(record, dict) else None
            now = tries if type(tries) is int else (0 if record is not None else None)
            if said[key] != now:
                self.append(key, now)
                corrected = True
        if corrected and self._durable:
            # The commit that follows is durable: so must be what undoes the
            # older lines, or a power cut could bring back a deleted task.
            _fs.fdatasync(self._fd)

    def clear(self) -> None:
        """Empty the log: the tries in it are now in the store."""
        if self._readonly or not self._dirty:
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
        self._said.clear()

    def close(self) -> None:
        if self._fd >= 0:
            _fs.close(self._fd)
            self._fd = -1
