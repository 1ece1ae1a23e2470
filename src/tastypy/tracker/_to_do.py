"""What a tracker has to do: the tasks to try, those waiting, and what it knows of a key.

:class:`ToDo` is a mixin of :class:`~._tracker.ProgressTracker`: loaded
whole, it reads the records in memory; served on demand (``_served.py``),
it asks the store, a page or one query at a time, and judges the keys
changed here by their records here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._codec import normalize_key
from .._window import GONE, UNKNOWN
from ._counts import ABORTED, DONE, EXHAUSTED, TaskCounts
from ._retry import due_at, waiting
from ._served import ServedCounts, present, to_do
from ._served import waiting as served_waiting

if TYPE_CHECKING:
    from .._window import Window

__all__ = ["ToDo"]


class ToDo:
    """The tasks to do, and the look-ups of keys, of a tracker (a mixin; see the module)."""

    _lock: threading.RLock
    _data: dict[str, Any]
    _tally: TaskCounts
    _window: Window | None

    if TYPE_CHECKING:  # the POD's

        def __getitem__(self, key: Any) -> Any: ...

    def _present(self, keys: list[str]) -> set[str] | dict[str, Any]:
        """Those of *keys* the tracker has: one query for them all if served on demand."""
        if self._window is None:
            return self._data
        return present(self._window, keys)

    def _prefetch(self, keys: list[str]) -> None:
        """Served on demand: read the records of *keys* in one query, for reads to come."""
        if self._window is not None:
            with self._lock:
                self._window.prefetch(keys)

    def _known(self, key: str) -> Any:
        """*key*'s record if it is in memory, else None: no query (served on demand)."""
        if self._window is None:
            return self._data.get(key)
        record = self._window.peek(key)
        return None if record is UNKNOWN or record is GONE else record

    def should_do(self, key: Any) -> bool:
        """Whether :meth:`try_it` would try the task now (True for a new task).

        False for a task waiting for a retry that is not due (``_retry_at``).
        """
        key = key if type(key) is str else normalize_key(key)
        record = self._data.get(key)
        if record is None:
            return True
        return not self._tally.status_of(record) & (DONE | ABORTED | EXHAUSTED) and not waiting(
            record
        )

    def should_try(self, key: Any) -> bool:
        """Whether another try is allowed: not aborted, under ``max_tries``."""
        key = key if type(key) is str else normalize_key(key)
        record = self._data.get(key)
        return record is None or not self._tally.status_of(record) & (ABORTED | EXHAUSTED)

    def todo_keys(self) -> Iterator[str]:
        """Keys of tasks not done, not aborted, not exhausted and not waiting, in order.

        Waiting: a retry that is not due yet (``_retry_at``; see :meth:`waiting_keys`).
        """
        if isinstance(self._tally, ServedCounts):
            now = time.time()
            return (key for key, record in self._served_to_do() if not waiting(record, now))
        with self._lock:
            self._tally.refresh(self._data)
        status, data, now = self._tally.status, self._data, time.time()
        blocked = DONE | ABORTED | EXHAUSTED
        return (
            k for k in data if not status.get(k, 0) & blocked and not waiting(data.get(k), now)
        )

    def waiting_keys(self) -> dict[str, float]:
        """Tasks to do whose next try is not due yet: key -> when it is (Unix seconds)."""
        if isinstance(self._tally, ServedCounts):
            assert self._window is not None
            return served_waiting(self._tally, self._window, self._lock, time.time())
        with self._lock:
            self._tally.refresh(self._data)
            status, now = self._tally.status, time.time()
            blocked = DONE | ABORTED | EXHAUSTED
            found = {}
            for key, record in self._data.items():
                at = due_at(record)
                if at is not None and at > now and not status.get(key, 0) & blocked:
                    found[key] = at
            return found

    def _served_to_do(self) -> Iterator[tuple[str, Any]]:
        """:func:`._served.to_do`, a page at a time under the lock."""
        assert isinstance(self._tally, ServedCounts)
        assert self._window is not None
        return to_do(self._tally, self._window, self._lock)

    def todo_items(self) -> Iterator[tuple[str, Any]]:
        """``(key, record)`` of the tasks :meth:`todo_keys` lists."""
        return ((k, self[k]) for k in self.todo_keys())
