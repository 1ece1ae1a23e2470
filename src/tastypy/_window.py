"""The POD's data when its engine serves the store on demand: a bounded window onto it.

An engine with the ``"on_demand"`` capability (PostgreSQL) is never loaded
whole. The POD's data is then a :class:`Window`: a mapping that shows the
store as the POD would hold it, keeping in memory only

- a cache of values, at most :attr:`Window.capacity` of them beyond those
  that must stay: values of dirty keys, and values of the session's
  (``_pending.py``) that the program still reaches, to change them in
  place. A value that must stay is never dropped, so nested mutation
  (``pod[k]["x"] = 1``) works as for a loaded store; a session value the
  program no longer reaches goes once it is seen unchanged since its sync
  (changed, it becomes dirty first: :meth:`_let_go`);
- the keys changed here and not yet committed whose place in the order
  differs from the store's (``_local``): added at the end, deleted, or set
  without knowing whether the store had them (*unsure*: the store decides
  at the sync, in place if it has the key, else at the end, and
  :meth:`__iter__` shows it where the store will put it).

Everything else is a query: ``len`` is the store's count (a row the
engine keeps) corrected by the changes pending here, ``key in`` and a
value not cached fetch it, and iteration goes through the store's order in
keyset pages, then the keys pending here that the store does not show
(:meth:`__iter__`). Each answer is as of the query that gave it: a key
another process commits shows when its page is read, and a value cached
here takes the others' changes when a sync brings them (:meth:`merge_in`),
as a loaded store's memory does.

Never asks the store about a key that has local state or is cached: the
sync's bookkeeping (``_pending.py``) reads only such keys, so a sync makes
no query per key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from ._codec import FAST_OPTIONS, has_non_finite
from ._references import reachable_among

if TYPE_CHECKING:
    from ._pending import Pending
    from .storage import Merge
    from .storage.protocol import OnDemand

__all__ = ["GONE", "UNKNOWN", "Window"]

_MISSING: Any = object()
GONE: Any = object()  # Window.peek(): deleted here
UNKNOWN: Any = object()  # Window.peek(): as the store has it (not in memory, not changed here)
_TAIL, _UNSURE, _GONE = 1, 2, 0  # local states: added at the end, set not knowing, deleted


class Window(MutableMapping[str, Any]):
    """The data of a POD whose engine serves it on demand (see the module).

    ``pending`` is the POD's own (its dirty and session keys stay cached).
    The POD holds its lock around every use; not thread-safe by itself.
    """

    capacity: ClassVar[int] = 10_000  # values cached beyond those that must stay
    page_size: ClassVar[int] = 1_000  # keys an iteration reads per query
    # What a value read from the store becomes before anyone sees it (the
    # tracker's defaults for a record missing a field); None: as read.
    shape: Callable[[Any], Any] | None = None

    def __init__(self, engine: OnDemand, pending: Pending) -> None:
        self._engine = engine
        self._pending = pending
        self._cache: dict[str, Any] = {}
        self._local: dict[str, int] = {}  # key -> _TAIL, _UNSURE or _GONE, in order of change
        self._syncs = 0  # raised by every sync or merge (see __iter__)
        self._bound = self.capacity  # the size of the cache that sets off a trim
        engine.begin_on_demand(self._cache)

    # -- reading -----------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        value = self._cache.get(key, _MISSING)
        if value is not _MISSING:
            return value
        if key in self._local:  # deleted here (the others are cached)
            raise KeyError(key)
        return self._fetch(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        if key in self._cache:
            return True
        if key in self._local or type(key) is not str:
            return False
        try:
            self._fetch(key)
        except KeyError:
            return False
        return True

    def holds(self, key: str) -> bool | None:
        """Whether the POD has *key*, as far as it knows without asking the store (None)."""
        if key in self._cache:
            return True
        if key in self._local:
            return False
        return None

    def peek(self, key: str) -> Any:
        """*key*'s value in memory, :data:`GONE` (deleted here), or :data:`UNKNOWN`; no query."""
        value = self._cache.get(key, _MISSING)
        if value is not _MISSING:
            return value
        return GONE if key in self._local else UNKNOWN

    def changed_keys(self) -> list[str]:
        """The keys with a change here not yet committed (dirty, added, set or deleted here)."""
        return [
            *self._pending.dirty,
            *(key for key in self._local if key not in self._pending.dirty),
        ]

    def knows_any(self, keys: Collection[str]) -> bool:
        """Whether any of *keys* is in memory or changed here (no query; the smaller side read)."""
        held = (self._cache, self._local, self._pending.dirty)
        if len(keys) <= sum(len(each) for each in held):
            return any(key in each for key in keys for each in held)
        return any(key in keys for each in held for key in each)

    def additions(self) -> list[str]:
        """The keys set here that a sync may put at the store's end (added or unsure), in order."""
        return [key for key, state in self._local.items() if state != _GONE]

    def appended(self) -> None:
        """A commit put keys at the store's end that were not here: nothing held changes."""
        self._syncs += 1

    def at_end(self, key: str) -> bool:
        """Whether *key* was added here, so that its sync puts it at the end."""
        return self._local.get(key) == _TAIL

    def pending_keys(self) -> dict[str, None]:
        """See :meth:`_pending_keys` (a copy the caller may change)."""
        return self._pending_keys()

    @property
    def engine(self) -> OnDemand:
        """The engine serving this window (another after a copy: :meth:`moved`)."""
        return self._engine

    def end(self) -> int:
        """The position the store's next key will take: every key's is below it."""
        return self._engine.end()

    def may_append(self, key: str) -> bool:
        """Whether a sync of *key* may put it at the end (added here, or unsure)."""
        return self._local.get(key, _GONE) != _GONE

    def prefetch(self, keys: list[str]) -> None:
        """Read the values of those of *keys* not in memory, in one query (if any is not).

        For a caller about to read each of *keys*: each read then costs no query.
        """
        cache, local = self._cache, self._local
        wanted = [key for key in keys if key not in cache and key not in local]
        if not wanted:
            return
        for key, blob in self._engine.fetch(wanted).items():
            if key not in cache and key not in local:
                self._admit(key, self._decode(blob), blob)

    def found(self, key: str, blob: bytes) -> None:
        """The store holds *key* as *blob* now (a claim read it): kept, seen so, in place.

        A key with a change here, or in memory, is left as it is.
        """
        if key not in self._cache and key not in self._local:
            self._admit(key, self._decode(blob), blob)

    def _decode(self, blob: bytes) -> Any:
        value = orjson.loads(blob)
        return value if self.shape is None else self.shape(value)

    def _fetch(self, key: str) -> Any:
        found = self._engine.fetch([key])
        if key not in found:
            raise KeyError(key)
        value = self._decode(found[key])
        self._admit(key, value, found[key])
        return value

    def _pending_keys(self) -> dict[str, None]:
        """Keys with a change here not yet committed, that are here: dirty order, then the rest.

        Where the store does not show one in a place (added here, or deleted
        by another writer since this one changed it), it goes at the end:
        there its sync puts it.
        """
        cache, local = self._cache, self._local
        keys = dict.fromkeys(key for key in self._pending.dirty if key in cache)
        keys.update((key, None) for key, state in local.items() if state != _GONE)
        return keys

    def __len__(self) -> int:
        here = self._pending_keys()
        gone = [key for key, state in self._local.items() if state == _GONE]
        total, among = self._engine.size([*here, *gone])
        return total - among + len(here)

    def __iter__(self) -> Iterator[str]:
        """The keys in order: the store's, in keyset pages, then those it does not show.

        Only keys the store had when the iteration began are read from it
        (each as it is when its page is read). Then come the keys changed
        here that the store did not show (added here, or deleted by another
        writer since this one changed them), and those the loop deleted and
        added again, as a dict would; a key the loop adds is not shown, so a
        loop that adds keys ends (a dict would raise). Each page's values
        are kept as it is read; one dropped from memory after a sync or a
        merge while the page runs (the caller's loop may cause both) is read
        again, with the rest of the page: the page may show it as it was.
        A key another writer moves to the end meanwhile is not shown.
        """
        local, cache, engine = self._local, self._cache, self._engine
        size = max(1, min(self.page_size, self.capacity // 2))
        until = engine.end()
        last = self._pending_keys()  # at the end, unless the store shows one first
        again: dict[str, None] = {}  # keys the loop deleted and added again
        after = -1
        full = True
        while full:
            rows = engine.page(after, size, before=until)
            syncs = self._syncs
            for _pos, key, blob in rows:
                if key not in local and key not in cache:
                    self._admit(key, self._decode(blob), blob)
            full = len(rows) == size
            for pos, key, _blob in rows:
                state = local.get(key)
                if state is None:
                    if key not in cache and self._syncs != syncs:
                        full = True  # dropped since a sync: read again from *after*
                        break
                elif state != _UNSURE:
                    after = pos
                    if state == _TAIL and key not in last:
                        again[key] = None
                    continue  # deleted here, or added again: not in this place
                after = pos
                last.pop(key, None)
                again.pop(key, None)
                yield key
        for key in (*last, *again):  # a sync in the loop may have written them since
            if key in self:
                yield key

    def _tail(self) -> Iterator[str]:
        """The keys added here that the store will put at the end, in order."""
        self._place_unsure()
        local = self._local
        for key in list(local):
            if local.get(key) == _TAIL:
                yield key

    def __reversed__(self) -> Iterator[str]:
        """The keys from the last, for ``popitem``."""
        local, engine = self._local, self._engine
        yield from reversed(list(self._tail()))
        size = max(1, min(self.page_size, self.capacity // 2))
        before = 2**63 - 1
        while True:
            rows = engine.page(before, size, backwards=True)
            for _pos, key, _blob in rows:
                if key not in local:
                    yield key
            if len(rows) < size:
                return
            before = rows[-1][0]

    def _place_unsure(self) -> None:
        """Ask the store where the keys set here without knowing go: in place, or at the end.

        One in place was shown in its place by an iteration that got there.
        """
        local = self._local
        unsure = [key for key, state in local.items() if state == _UNSURE]
        if not unsure:
            return
        there = self._engine.fetch(unsure)
        for key in unsure:
            if key in there:
                del local[key]  # in its place, changed: the dirty mark says so
            else:
                local[key] = _TAIL

    def __repr__(self) -> str:
        return f"<Window: {len(self._cache)} values in memory, {len(self._local)} keys moved here>"

    # -- changes (the POD's; it keeps the dirty marks) ---------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        """Set *key*: in place if it is here, at the end if deleted here, else unsure."""
        local = self._local
        if key not in self._cache:
            state = local.pop(key, None)
            local[key] = _UNSURE if state is None else _TAIL
        self._cache[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self._cache and (key in self._local or key not in self):
            raise KeyError(key)  # (a key only in the store was fetched by `in`)
        del self._cache[key]
        self._local.pop(key, None)
        self._local[key] = _GONE

    def pin(self, key: str, value: Any) -> None:
        """Show *value* for *key* until :meth:`reset`, whatever the store has (read-only views).

        Kept as a key set here (never let go, never written: a read-only
        POD does not sync), in place if the store has it, else at the end.
        """
        self._cache[key] = value
        if key not in self._local:
            self._local[key] = _UNSURE

    def drop_all(self, keys: list[str]) -> None:
        """Delete every one of *keys* (``clear``: every key there is)."""
        cache, local = self._cache, self._local
        for key in keys:
            cache.pop(key, None)
            local.pop(key, None)
            local[key] = _GONE

    def committed(self, keys: list[str], left: list[str]) -> None:
        """A sync of *keys* is durable, but for *left*: the store has them in their places."""
        local = self._local
        self._syncs += 1
        if not local:
            self._trim()
            return
        kept = set(left)
        for key in keys:
            if key not in kept:
                local.pop(key, None)
        self._trim()

    def merge_in(
        self, merged: Merge, keep: Callable[[str], bool], decode: Callable[[bytes], Any]
    ) -> None:
        """Take the others' changes a shared sync brought, for the values cached here.

        A key changed here keeps this process's value (its sync comes); a
        value cached and only read takes theirs. Keys not cached need
        nothing: a read asks the store.
        """
        cache, local, unchanged = self._cache, self._local, merged.unchanged
        if merged:
            self._syncs += 1
        for key in merged.deleted:
            if key in cache and key not in local:
                if keep(key):  # changed here: the sync that writes it adds it at the end
                    local[key] = _TAIL
                else:
                    del cache[key]
        theirs = [*merged.updated, *((key, blob) for key, blob in merged.appended if blob)]
        for key, blob in theirs:
            if key not in cache or key in local or unchanged(key, blob):
                continue  # not here, changed here, or here already as they left it
            if not keep(key):
                value = decode(blob)
                cache[key] = value if self.shape is None else self.shape(value)
                # Seen so, as a value read is: a later sync writes it only if it changes.
                self._engine.remember(key, blob)

    def reset(self) -> None:
        """Forget everything held (the store is read anew from now on)."""
        self._cache.clear()
        self._local.clear()
        self._syncs += 1
        self._engine.begin_on_demand(self._cache)

    def resident(self) -> list[str]:
        """The keys whose values are in memory."""
        return list(self._cache)

    @property
    def cache(self) -> dict[str, Any]:
        """The values in memory (for an engine's ``begin_on_demand``)."""
        return self._cache

    def moved(self, engine: OnDemand) -> None:
        """Everything shown here was copied to *engine*, in order: serve from it now."""
        self._engine = engine
        self._local.clear()
        self._syncs += 1

    def pairs(self) -> Iterator[tuple[str, Any]]:
        """Every ``(key, value)`` in order, as of one snapshot of the store (for a copy).

        The store's rows are read whole, in one transaction (a copy holds
        every value anyway), so no key another writer moves meanwhile is
        missed; the values here (changed, or kept) stand for theirs.
        """
        return self._pairs(self._pending_keys())  # what is pending now, before the copy takes it

    def _pairs(self, last: dict[str, None]) -> Iterator[tuple[str, Any]]:
        local, cache = self._local, self._cache
        for key, blob in self._engine.rows():
            state = local.get(key)
            if state is None:
                value = cache.get(key, _MISSING)
                yield key, self._decode(blob) if value is _MISSING else value
            elif state == _UNSURE:
                yield key, cache[key]
            else:
                continue
            last.pop(key, None)
        for key in last:
            yield key, cache[key]

    # -- the cache's bound -------------------------------------------------------------

    def _admit(self, key: str, value: Any, blob: bytes) -> None:
        """Keep *value*, the store's *blob* of *key*: the engine remembers it was seen so."""
        self._cache[key] = value
        self._engine.remember(key, blob)
        if len(self._cache) > self._bound:
            self._trim(key)

    def _trim(self, newest: str | None = None) -> None:
        """Drop the oldest values cached that need not stay, down to 3/4 of the capacity.

        Values that must stay are skipped: dirty ones, and the session's
        (values the program may still change in place). A session value the
        program no longer reaches goes too, once it is seen unchanged since
        its last sync (before values newer than it); one changed is marked
        dirty, for the next sync to write. If what must stay is more than the
        capacity, the next trim waits for a quarter of the capacity more:
        never a scan per value.
        """
        cache, capacity = self._cache, self.capacity
        if len(cache) <= capacity:
            self._bound = capacity
            return
        excess = len(cache) - (capacity * 3) // 4
        local, dirty, session = self._local, self._pending.dirty, self._pending.session
        dropped: list[str] = []
        held: list[str] = []  # the session's, in the order cached
        for key in cache:  # the oldest first, session values among them
            if key in local or key in dirty or key == newest:
                continue
            if key in session:
                held.append(key)
            else:
                dropped.append(key)
            if len(dropped) + len(held) >= excess:
                break
        if held:
            # Old session values the program no longer reaches go before
            # values read since (a job's loop hands out a record per task: left
            # to pile up, they would push out what it read ahead).
            freed = self._let_go(held, len(held))
            dropped = freed + dropped[: max(0, excess - len(freed))]
        for key in dropped:
            del cache[key]
        self._engine.forget(dropped)
        self._bound = max(capacity, len(cache) + capacity // 4)

    def _let_go(self, held: list[str], wanted: int) -> list[str]:
        """Up to *wanted* of the session's keys *held* that may leave memory: out of the session.

        One the program still reaches stays. One it does not, and whose
        value is as last synced, may go; one changed in place since (or
        that cannot be encoded now) becomes dirty, so the next sync writes
        it or names it.
        """
        pending, engine = self._pending, self._engine
        reached = set(reachable_among(self._cache, held))
        free: list[str] = []
        for key in held:
            if key in reached:
                continue
            value = self._cache[key]
            try:
                blob = orjson.dumps(value, option=FAST_OPTIONS)
            except TypeError:
                blob = b""
            if b"null" in blob and has_non_finite(value):
                blob = b""  # a NaN written as null: changed, and it cannot be written
            if blob and engine.saw(key, blob):
                pending.session.discard(key)
                free.append(key)
                if len(free) >= wanted:
                    break
            else:
                pending.session.discard(key)
                pending.dirty[key] = False
        return free
