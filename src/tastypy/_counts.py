"""Incremental counts of a tracker's task states.

Counting by scanning every record would make ``percent_done()`` cost a pass
over the whole tracker. Instead each record's state is kept as a few bits,
the counts are kept in step, and every key the program touches is re-checked
before the next count: a record changed through ``tracker[key][...]`` is
counted right, though no setter saw the change.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ABORTED", "DONE", "EXHAUSTED", "TRIED", "TaskCounts"]

DONE, TRIED, ABORTED, EXHAUSTED = 1, 2, 4, 8
_BITS = (DONE, TRIED, ABORTED, EXHAUSTED)


class TaskCounts:
    """Counts of done, tried, aborted and exhausted tasks, kept incrementally.

    ``status`` holds each key's state bits (0, an untried task, left out);
    ``counts`` maps each bit to how many tasks have it; ``unchecked`` holds
    the keys touched since the counts were last right.
    """

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
        for key in self.unchecked:
            old = status.get(key, 0)
            record = data.get(key)
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

    def count(self, bit: int, data: dict[str, Any]) -> int:
        if self.unchecked:
            self.refresh(data)
        return self.counts[bit]

    def recount(self, data: dict[str, Any]) -> None:
        """Count everything from scratch."""
        self.status = {}
        self.counts = dict.fromkeys(_BITS, 0)
        self.unchecked = set()
        for key, record in data.items():
            bits = self.status_of(record)
            if bits:
                self.status[key] = bits
                for bit in _BITS:
                    self.counts[bit] += bool(bits & bit)
