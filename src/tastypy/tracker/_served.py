"""A tracker served on demand: counts and the tasks to do asked of the store.

Where the engine serves a store on demand and counts its task records
itself (capabilities ``"on_demand"`` and ``"counts"``: PostgreSQL's
tallies), a tracker loads nothing. Its counts are the store's, as of the
query, with this process's changes not yet committed on top
(:class:`ServedCounts`); its tasks to do are the store's, found a page at a
time in the store's order, with the keys changed here judged by their
values here (:func:`to_do`).

"Changed here" is the window's keys with a change pending, and the keys the
program touched whose records it may still change (the counts' ``unchecked``,
kept as :class:`~._counts.TaskCounts` keeps them). A key changed by another
process after this one read it counts as this process last saw it, as in a
loaded tracker.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, cast

import orjson

from .._window import GONE, UNKNOWN
from ._counts import _BITS, _UNHELD, ABORTED, DONE, EXHAUSTED, TRIED, TaskCounts, _getrefcount
from ._retry import RETRY_AT, due_at

if TYPE_CHECKING:
    from .._window import Window
    from ..storage.protocol import Counts

__all__ = ["SETTLED", "SPENT", "ServedCounts", "ServedRun", "present", "to_do", "waiting"]

_BLOCKED = DONE | ABORTED | EXHAUSTED
# Counted too, for run() (a task in one of them only): done or aborted, and
# exhausted but not aborted.
SETTLED, SPENT = 16, 32
_KINDS = (*_BITS, SETTLED, SPENT)


def _kinds(bits: int) -> int:
    """*bits* with :data:`SETTLED` and :data:`SPENT` set as they say."""
    if bits & (DONE | ABORTED):
        bits |= SETTLED
    if bits & EXHAUSTED and not bits & ABORTED:
        bits |= SPENT
    return bits


_PAGE = 1_000  # tasks asked for per query


class ServedCounts(TaskCounts):
    """:class:`TaskCounts` whose counts are a query of the store (see the module notes).

    ``status`` stays empty: nothing is kept per key but ``unchecked``.
    """

    served = True

    def __init__(self, window: Window, max_tries: int) -> None:
        super().__init__(max_tries)
        self._window = window

    def facts_status(self, state: int | None, aborted: bool, tries: int) -> int:
        """The state bits of a committed record, from its facts (as :meth:`status_of`)."""
        if state is None:
            return 0
        tries = max(tries, 0)  # unusable: counted as none, as status_of does
        bits = (DONE if state == 1 else 0) | (TRIED if tries else 0) | (ABORTED if aborted else 0)
        if state != 1 and self.max_tries and tries >= self.max_tries:
            bits |= EXHAUSTED
        return bits

    def refresh(self, data: Any) -> None:
        """Count: the store's tallies, corrected by the keys changed here (one query)."""
        window, unchecked = self._window, self.unchecked
        keys = _here(window, unchecked)
        tallies, facts = _engine(window).task_tally(list(keys))
        counts = dict.fromkeys(_KINDS, 0)
        for state, aborted, tries, n in tallies:
            bits = _kinds(self.facts_status(state, aborted, tries))
            for bit in _KINDS:
                if bits & bit:
                    counts[bit] += n
        held: list[str] = []
        refs, unheld = _getrefcount, _UNHELD
        for key in keys:
            record = window.peek(key)
            found = facts.get(key)
            old = 0 if found is None else _kinds(self.facts_status(*found))
            new = 0 if record is GONE else _kinds(self.status_of(record))
            if new != old:
                for bit in _KINDS:
                    counts[bit] += bool(new & bit) - bool(old & bit)
            # Looked at again next time while the program may still change it,
            # or while it differs from the store's (changed in place after its
            # sync: only memory knows, until a sync writes it).
            watched = key in unchecked and isinstance(record, dict)
            if watched and (new != old or refs is None or refs(record) > unheld):
                held.append(key)
        self.counts = counts
        unchecked.clear()
        unchecked.update(held)

    def count(self, bit: int, data: Any) -> int:
        self.refresh(data)
        return self.counts[bit]

    def recount(self, data: Any) -> None:
        """Nothing to count again: every count is a query."""


def to_do(
    counts: ServedCounts,
    window: Window,
    lock: AbstractContextManager[Any],
    *,
    until: int | None = None,
    also: Collection[str] = (),
) -> Iterator[tuple[str, Any]]:
    """``(key, record)`` of every task not done, aborted or exhausted, in order.

    *record* is the record here for a key changed here, else only its
    ``_retry_at`` (``{}`` if none): enough for the caller to tell a task
    waiting for its retry. Tasks of the store come in pages, each as of its
    query and read under *lock*; only positions the store had when this
    began (or below *until*) are read. Then come the keys changed here that
    the store does not show in place, and those of *also* (keys changed here
    before, maybe committed past *until* since) that it did not show.
    """
    with lock:
        changed = _here(window, counts.unchecked)
        # At the end, unless the store shows one first.
        last = dict.fromkeys([*also, *window.pending_keys()])
        until = window.end() if until is None else until
    after = -1
    full = True
    while full:
        found: list[tuple[str, Any]] = []
        with lock:
            engine = _engine(window)
            rows = engine.to_do_page(after, until, _PAGE, counts.max_tries, list(changed))
            full = len(rows) == _PAGE
            for pos, key, retry, store_to_do in rows:
                after = pos
                if key not in changed:
                    if also:
                        last.pop(key, None)
                    found.append((key, _retry_only(retry)))
                    continue
                if window.at_end(key):
                    continue  # deleted and added again here: at the end
                last.pop(key, None)
                record = window.peek(key)
                if record is UNKNOWN:  # dropped from memory since: as the store has it
                    if store_to_do:
                        found.append((key, _retry_only(retry)))
                elif record is not GONE and not counts.status_of(record) & _BLOCKED:
                    found.append((key, record))
        yield from found
    with lock:
        found = []
        for key in last:
            record = window.peek(key)
            if record is UNKNOWN:  # committed by a sync in the loop, and let go since
                record = window.get(key, GONE)
            if record is not GONE and not counts.status_of(record) & _BLOCKED:
                found.append((key, record))
    yield from found


def waiting(
    counts: ServedCounts,
    window: Window,
    lock: AbstractContextManager[Any],
    now: float,
    *,
    until: int | None = None,
    also: Collection[str] = (),
) -> dict[str, float]:
    """Tasks to do whose retry is not due at *now*: key -> when it is.

    The store's are found through its index of the records that may name a
    retry time (those below position *until* if given); the keys changed
    here, and those of *also*, are judged by their records here.
    """
    found: dict[str, float] = {}
    with lock:
        changed = _here(window, counts.unchecked)
        until = window.end() if until is None else until
    after = -1
    full = True
    while full:
        with lock:
            page = _engine(window).to_do_page(
                after, until, _PAGE, counts.max_tries, [], notable=True
            )
        full = len(page) == _PAGE
        for pos, key, retry, _to_do in page:
            after = pos
            at = due_at(_retry_only(retry))
            if key not in changed and at is not None and at > now:
                found[key] = at
    with lock:
        for key in {**changed, **dict.fromkeys(also)}:
            record = window.peek(key)
            if record is UNKNOWN:  # let go since: as the store has it now
                record = window.get(key, GONE)
            if record is GONE or counts.status_of(record) & _BLOCKED:
                continue
            at = due_at(record)
            if at is not None and at > now:
                found[key] = at
    return found


class ServedRun:
    """The tasks of a ``run()`` without keys, on a tracker served on demand.

    They are the store's tasks when the run began (below the position
    :meth:`Window.end` gave then), and the keys with a change here then
    (which a sync in the run may put past it), read a page at a time on
    each pass, never listed whole: a worker's memory does not grow with
    the store.
    """

    def __init__(self, counts: ServedCounts, window: Window, lock: AbstractContextManager[Any]):
        self._counts, self._window, self._lock = counts, window, lock
        with lock:
            self._until = window.end()
            self._also = dict.fromkeys(window.changed_keys())

    def __iter__(self) -> Iterator[str]:
        """The run's tasks to do now, in order."""
        tasks = to_do(self._counts, self._window, self._lock, until=self._until, also=self._also)
        return (key for key, _record in tasks)

    def with_retry_times(self) -> list[str]:
        """The run's tasks to do that have a time for their next try, due or not."""
        counts, window, lock = self._counts, self._window, self._lock
        return list(waiting(counts, window, lock, -math.inf, until=self._until, also=self._also))

    def waiting(self, now: float) -> int:
        """How many of the run's tasks wait for a retry that is not due at *now*."""
        counts, window, lock = self._counts, self._window, self._lock
        return len(waiting(counts, window, lock, now, until=self._until, also=self._also))

    def exhausted(self) -> int:
        """How many of the run's tasks are exhausted now (out of tries, not done nor aborted).

        The store's count, less those among the tasks added since the run
        began (read a page at a time: as many as were added).
        """
        counts, window, lock = self._counts, self._window, self._lock
        with lock:
            counts.refresh(None)
            total = counts.counts[SPENT]
        after = self._until - 1
        full = True
        while full:
            with lock:
                rows = window.engine.page(after, _PAGE)
                full = len(rows) == _PAGE
                for pos, key, blob in rows:
                    after = pos
                    if key in self._also:
                        continue  # one of the run's (changed here when it began)
                    record = window.peek(key)
                    if record is UNKNOWN:
                        record = orjson.loads(blob)
                    if record is not GONE and _kinds(counts.status_of(record)) & SPENT:
                        total -= 1
        return total


def present(window: Window, keys: list[str]) -> set[str]:
    """Those of *keys* the tracker has: known here, else one query for the rest."""
    found: set[str] = set()
    ask: list[str] = []
    for key in keys:
        there = window.holds(key)
        if there:
            found.add(key)
        elif there is None:
            ask.append(key)
    if ask:
        found |= _engine(window).present(ask)
    return found


def _here(window: Window, unchecked: set[str]) -> dict[str, None]:
    """The keys whose records here may differ from the store's.

    Those with a change pending, and those touched (*unchecked*) whose
    records are in memory; a key touched and let go since is as the store
    has it (another writer's change merged in: counted there, judged there).
    The records are not held here (their reference counts say whether the
    program holds them).
    """
    found: dict[str, None] = {}
    for key in (*window.changed_keys(), *unchecked):
        if key not in found and window.peek(key) is not UNKNOWN:
            found[key] = None
    return found


def _engine(window: Window) -> Counts:
    return cast("Counts", window.engine)


def _retry_only(retry: bytes | None) -> dict[str, Any]:
    if retry is None:
        return {}
    try:
        return {RETRY_AT: orjson.loads(retry)}
    except orjson.JSONDecodeError:
        return {}
