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
from collections.abc import Iterable
from typing import Any, TypeGuard

import orjson

from ..storage.protocol import SideLog
from ._records import MAX_TRIES_VALUE, record_problem

__all__ = ["NAME", "TriesLog"]

log = logging.getLogger(__name__)

NAME = "tries"  # the side log's name: tries.jsonl in a file store


def _is_entry(entry: object) -> TypeGuard[list[Any]]:
    """Whether a decoded line is ``["key", tries]`` or ``["key", tries, record]``.

    tries is a whole number >= 0, or null (deleted); a record, a JSON object
    whose ``_tries`` (if any) is usable.
    """
    if type(entry) is not list or len(entry) not in (2, 3) or type(entry[0]) is not str:
        return False
    tries = entry[1]
    if not (tries is None or (type(tries) is int and 0 <= tries < MAX_TRIES_VALUE)):
        return False
    return len(entry) == 2 or (
        tries is not None and type(entry[2]) is dict and record_problem(entry[2]) is None
    )


class TriesLog:
    """What the tries side log says, over the engine's :class:`SideLog`.

    Read-only opens never write.
    """

    def __init__(self, side: SideLog, *, readonly: bool) -> None:
        self._side = side
        self._readonly = readonly
        # key -> what the log says of it now (tries, or None: deleted), for
        # the keys logged by this process since the log was last emptied.
        self._said: dict[str, int | None] = {}
        # Keys whose last line here holds a whole record (an outcome of run()).
        self._recorded: set[str] = set()

    @property
    def location(self) -> str:
        """What messages call the log (``<store>/tries.jsonl`` for files)."""
        return self._side.location

    def append(self, key: str, tries: int | None) -> None:
        """Log that *key* has *tries* now (None: deleted), or raise having logged nothing."""
        if self._readonly:
            return
        self._side.append(orjson.dumps([key, tries]) + b"\n")
        self._said[key] = tries
        if self._recorded:
            self._recorded.discard(key)

    def append_record(self, key: str, record: dict[str, Any], encoded: bytes) -> None:
        """Log *record* (encoded as *encoded*), the outcome of a try, before it is synced.

        One write, like a try: if the process then dies (a task that kills
        it), a reopen restores the outcome instead of counting a try whose
        result was lost.
        """
        if self._readonly:
            return
        tries = record.get("_tries", 0)
        line = b"".join((b"[", orjson.dumps(key), b",", orjson.dumps(tries), b",", encoded))
        self._side.append(line + b"]\n")
        self._said[key] = tries
        self._recorded.add(key)

    def read(self) -> list[tuple[str, int, dict[str, Any] | None]]:
        """What the log says, key by key: ``(key, tries, record)`` in first-mention order.

        The last line about a key wins; a key whose last line says deleted is
        left out; *record* is the record the last line holds, or None. A line
        that is not ``["key", tries]`` or ``["key", tries, record]`` (tries a
        whole number >= 0, or null) is skipped: a torn last line (a crash mid-write), or
        garbage a power cut left where unsynced lines were. One warning names
        how many were skipped and the first. Memory is bounded by the file's
        size: this reads the file, not what its lines claim.

        Raises
        ------
        CorruptStoreError
            If ``tries.jsonl`` is a symbolic link, a directory, a FIFO or a device.
        """
        raw = self._side.read()
        said: dict[str, int | None] = {}
        records: dict[str, dict[str, Any]] = {}
        skipped: list[int] = []
        for lineno, line in enumerate(raw.split(b"\n")[:-1], 1):
            try:
                entry = orjson.loads(line)  # nesting too deep is a JSONDecodeError too
            except orjson.JSONDecodeError:
                entry = None
            if _is_entry(entry):
                key = entry[0]
                said[key] = entry[1]
                if len(entry) == 3:
                    records[key] = entry[2]
                else:
                    records.pop(key, None)
            else:
                skipped.append(lineno)
        if skipped:
            what = "1 line" if len(skipped) == 1 else f"{len(skipped):,} lines"
            log.warning(
                '%s: %s not ["key", tries] ignored, the first at line %d (a crash or a '
                "power cut leaves such lines)",
                self.location,
                what,
                skipped[0],
            )
        self._said = dict(said)
        self._recorded = set(records)
        return [(k, tries, records.get(k)) for k, tries in said.items() if tries is not None]

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
            # A record line must give way once the store holds the key: a
            # later reopen would otherwise bring that older record back.
            if said[key] == now and key not in self._recorded:
                continue
            if record is not None and record_problem(record) is not None:
                continue  # the commit leaves this key out (a bad value): so does the log
            self.append(key, now)
            corrected = True
        if corrected:
            # The commit that follows is durable: so must be what undoes the
            # older lines, or a power cut could bring back a deleted task.
            self._side.flush()

    def clear(self) -> None:
        """Empty the log: the tries in it are now in the store."""
        if self._readonly:
            return
        self._side.clear()
        self._said.clear()
        self._recorded.clear()

    def close(self) -> None:
        self._side.close()
