"""Incremental counts of a tracker's task states.

Counting by scanning every record would make ``percent_done()`` cost a pass
over the whole tracker. Instead each record's state is kept as a few bits,
the counts are kept in step, and every key the program touches is re-checked
before the next count: a record changed through ``tracker[key][...]`` is
counted right, though no setter saw the change.

A record the program still holds (``rec = tracker[key]``, or a list of
``tracker.items()``) may change at any later moment, so its key stays among
the keys re-checked before every count until nothing outside the tracker
refers to the record any more. CPython's reference count tells that exactly;
where there is none, keys stay re-checked for good (right, only slower).
The state bits depend only on a record's own top-level fields, so a
reference into a record's nested values cannot change them.
"""

from __future__ import annotations

import sys
from typing import Any

from .._references import count_refs

__all__ = ["ABORTED", "DONE", "EXHAUSTED", "TRIED", "TaskCounts"]

DONE, TRIED, ABORTED, EXHAUSTED = 1, 2, 4, 8
_BITS = (DONE, TRIED, ABORTED, EXHAUSTED)


def _references_when_unheld() -> int:
    """The reference count :meth:`TaskCounts.refresh` sees for a record nobody else holds."""
    data = {"key": {"_done": False}}
    record = data.get("key")
    return sys.getrefcount(record)


_getrefcount = count_refs
# Seen as held for good where reference counts cannot be trusted.
_UNHELD = _references_when_unheld() if _getrefcount is not None else -1


class TaskCounts:
    """Counts of done, tried, aborted and exhausted tasks, kept incrementally.

    ``status`` holds each key's state bits (0, an untried task, left out);
    ``counts`` maps each bit to how many tasks have it; ``unchecked`` holds
    the keys touched since the counts were last right, and those whose
    records the program may still change (see the module notes).
    """

    served = False  # counts asked of the store each time (_served.py)

    def __init__(self, max_tries: int) -> None:
        self.max_tries = max_tries
        self.status: dict[str, int] = {}
        self.counts = dict.fromkeys(_BITS, 0)
        self.unchecked: set[str] = set()

    def status_of(self, record: Any) -> int:
        """The state bits of one record (0 for anything that is not a record)."""
        if not isinstance(record, dict):
            return 0
        tries = record.get("_tries")
        tries = tries if type(tries) is int else 0
        done = bool(record.get("_done"))
        status = (DONE if done else 0) | (TRIED if tries > 0 else 0)
        if record.get("_aborted"):
            status |= ABORTED
        if not done and self.max_tries and tries >= self.max_tries:
            status |= EXHAUSTED
        return status

    def refresh(self, data: dict[str, Any]) -> None:
        """Bring the counts up to date with every key touched since last time."""
        status, counts, limit = self.status, self.counts, self.max_tries
        held: list[str] = []
        refs, unheld = _getrefcount, _UNHELD
        for key in self.unchecked:
            old = status.get(key, 0)
            record = data.get(key)
            if isinstance(record, dict) and (refs is None or refs(record) > unheld):
                held.append(key)  # the program may still change it: look again next time
            if type(record) is dict:  # status_of(), inlined: this is the hot path
                tries = record.get("_tries")
                tries = tries if type(tries) is int else 0
                new = (DONE if record.get("_done") else 0) | (TRIED if tries > 0 else 0)
                if record.get("_aborted"):
                    new |= ABORTED
                if not new & DONE and limit and tries >= limit:
                    new |= EXHAUSTED
            else:
                new = self.status_of(record)
            if new != old:
                changed = new ^ old
                for bit in _BITS:
                    if changed & bit:
                        counts[bit] += 1 if new & bit else -1
                if new:
                    status[key] = new
                else:
                    del status[key]
        self.unchecked.clear()
        self.unchecked.update(held)

    def count(self, bit: int, data: dict[str, Any]) -> int:
        if self.unchecked:
            self.refresh(data)
        return self.counts[bit]

    def recount(self, data: dict[str, Any]) -> None:
        """Count everything from scratch."""
        self.status = {}
        self.counts = dict.fromkeys(_BITS, 0)
        self.unchecked.clear()  # cleared, not replaced: the POD holds it (as _touched)
        refs, unheld = _getrefcount, _UNHELD
        # Not items(): its reused tuple would hold a reference to each record.
        for key in data:  # noqa: PLC0206
            record = data[key]
            if isinstance(record, dict) and (refs is None or refs(record) > unheld):
                self.unchecked.add(key)
            bits = self.status_of(record)
            if bits:
                self.status[key] = bits
                for bit in _BITS:
                    self.counts[bit] += bool(bits & bit)
