"""The memory engine: a complete :class:`~tastypy.storage.Storage` that keeps everything in RAM.

For tests, and for a POD that needs no disk. A :class:`MemoryStore` holds
the data; each :class:`MemoryStorage` is one open of it, as a
:class:`~tastypy.storage.FileStorage` is one open of a directory. So a test
can close a POD and open the same store again, read-only beside a writer,
or see a second writer refused, just as with files.

Values are kept as the encoded JSON bytes the POD commits and decoded anew
by each :meth:`MemoryStorage.load`, so a loaded dict shares nothing with
the store (as with files).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from ..errors import CorruptStoreError, LockedError, ReadOnlyError, StoreClosedError
from ._merge import Merge, merge

__all__ = ["MemorySideLog", "MemoryStorage", "MemoryStore"]


class MemoryStore:
    """The data of one in-memory store: keys in order, encoded values, meta.

    Thread-safe. Lives as long as a reference to it (or to an open
    :class:`MemoryStorage` of it) does; nothing survives the process.
    """

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._lock = threading.Lock()
        # Held by a shared open's sync and locked() block: one writer commits at a time.
        self._commit_lock = threading.RLock()
        self._values: dict[str, bytes] = {}
        self._meta: dict[str, Any] = {}
        self._writer: MemoryStorage | None = None
        self._side_logs: dict[str, bytearray] = {}
        self.commits = 0  # non-empty batches committed: the store's version
        # Shared opens, and the commits since the oldest version one of them
        # has seen (the others' changes it has yet to merge).
        self._shared: weakref.WeakSet[MemoryStorage] = weakref.WeakSet()
        self._log: list[list[tuple[str, bytes | None]]] = []
        self._log_start = 0  # the version before self._log[0]

    def __repr__(self) -> str:
        return f"<MemoryStore {self.name!r}: {len(self._values)} keys>"


class MemoryStorage:
    """One open of a :class:`MemoryStore` (a new, empty one if *store* is None).

    One writable open per store at a time, like the file engine's lock:
    another raises :class:`~tastypy.errors.LockedError` until the first is
    closed. Read-only opens are unlimited and see each commit whole.

    With *shared*, any number of shared opens write the store at once (and
    exclude a plain writer, as it excludes them): each :meth:`sync` commits
    on top of the others' commits and says how to merge them
    (``docs/SHARED.md``). Threads of one process can so share a store.

    Notes
    -----
    Commits are atomic: a batch applies entirely or not at all (if *changes*
    raises midway, nothing is applied). "Durable" means only that a commit
    is visible to every later open in this process.
    """

    def __init__(
        self,
        store: MemoryStore | None = None,
        *,
        readonly: bool = False,
        durable: bool = True,
        shared: bool = False,
    ) -> None:
        self.store = MemoryStore() if store is None else store
        self.readonly = readonly
        self.durable = durable
        self.shared = shared and not readonly
        self.capabilities = frozenset({"shared"}) if self.shared else frozenset()
        self._closed = False
        # Whether the store was new (never committed to, no meta) at this open:
        # discard() empties only such a store, as the file engine removes only one it made.
        self._created = not (
            readonly or self.store.commits or self.store._values or self.store._meta
        )
        self._version = 0  # the last commit this open has merged
        self._seen: dict[str, int] = {}  # key -> hash of its value as this open last saw it
        if readonly:
            return
        with self.store._lock:
            if self.store._writer is not None:
                raise LockedError(
                    f"{self.store.name} is already open for writing (in this process); "
                    "close that store first"
                )
            if self.shared:
                self.store._shared.add(self)
                self._version = self.store.commits
                self._trim_log()
            elif len(self.store._shared):
                raise LockedError(
                    f"{self.store.name} is open for shared writing (in this process); "
                    "open it with shared=True too, or close those first"
                )
            else:
                self.store._writer = self

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "writable"
        return f"<MemoryStorage of {self.store!r}, {mode}>"

    @property
    def name(self) -> str:
        """What error messages call the store."""
        return self.store.name

    @property
    def location(self) -> str:
        """What messages call the store: ``memory:<name>``."""
        return f"memory:{self.store.name}"

    @property
    def options(self) -> dict[str, Any]:
        """The memory engine has no settings of its own."""
        return {}

    @property
    def meta(self) -> dict[str, Any]:
        """Settings of the mapping layer (a copy)."""
        self._check_open()
        with self.store._lock:
            return dict(self.store._meta)

    def set_meta(self, meta: dict[str, Any]) -> None:
        """Replace the mapping layer's settings."""
        self._check_writable()
        fresh = orjson.loads(orjson.dumps(meta))  # JSON only, as a file would hold
        with self.store._lock:
            self.store._meta = fresh

    def load(self) -> dict[str, Any]:
        """Everything as of the last commit, in order, decoded into a new dict."""
        self._check_open()
        with self.store._lock:
            values = list(self.store._values.items())
            if self.shared:
                self._version = self.store.commits
                self._seen = {key: hash(blob) for key, blob in values}
                self._trim_log()
        data: dict[str, Any] = {}
        for key, blob in values:
            try:
                data[key] = orjson.loads(blob)
            except orjson.JSONDecodeError as exc:  # only if a caller committed bad bytes
                raise CorruptStoreError(f"{self.location}: the value of {key!r}: {exc}") from None
        return data

    def commit(self, changes: Iterable[tuple[str, bytes | None]]) -> None:
        """Apply *changes* as one atomic batch; a raising *changes* applies nothing.

        ``(key, bytes)`` sets a key (in place if present, else at the end);
        ``(key, None)`` deletes it (a missing key is ignored).
        """
        self._check_writable()
        if self.shared:
            self.sync(changes)
            return
        batch = [(key, None if blob is None else bytes(blob)) for key, blob in changes]
        if not batch:
            return
        # *changes* ran to its end above, so nothing below can fail midway:
        # applied in place, at a cost that follows the batch, not the store.
        with self.store._lock:
            values = self.store._values
            for key, blob in batch:
                if blob is None:
                    values.pop(key, None)
                else:
                    values[key] = blob
            self.store.commits += 1
            self.store._log_start = self.store.commits  # no shared open needs the log

    def sync(self, changes: Iterable[tuple[str, bytes | None]]) -> Merge:
        """Commit *changes* on top of the others' commits; how to merge theirs into memory.

        Of *changes*, only those that differ from what this open last saw
        (its last :meth:`load` or sync) are committed: a key this writer did
        not change is never written back over another's change. A raising
        *changes* commits nothing.
        """
        self._check_writable()
        if not self.shared:
            raise ReadOnlyError(f"{self.location}: sync() is for shared opens (shared=True)")
        batch = [(key, None if blob is None else bytes(blob)) for key, blob in changes]
        store = self.store
        with store._commit_lock, store._lock:
            seen = self._seen
            theirs = [
                change
                for commit in store._log[self._version - store._log_start :]
                for change in commit
            ]
            mine: list[tuple[str, bytes | None]] = []
            now: dict[str, int | None] = {}  # this batch's effect on what this open saw
            for key, blob in batch:
                before = now[key] if key in now else seen.get(key)
                if blob is None:
                    if before is not None:
                        mine.append((key, None))
                        now[key] = None
                elif hash(blob) != before:
                    mine.append((key, blob))
                    now[key] = hash(blob)
            result = merge(seen.__contains__, theirs, mine)
            last_seen = {key: seen.get(key) for key, _blob in theirs}
            result.unchanged = lambda key, blob: last_seen.get(key) == hash(blob)
            values = store._values  # holds theirs already
            for key, blob in mine:
                if blob is None:
                    values.pop(key, None)
                else:
                    values[key] = blob
            for key, blob in (*theirs, *mine):
                if blob is None:
                    seen.pop(key, None)
                else:
                    seen[key] = hash(blob)
            if mine:
                store.commits += 1
                store._log.append(mine)
            self._version = store.commits
            self._trim_log()
        return result

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store for this open's commits only (shared opens): the others' wait."""
        self._check_writable()
        with self.store._commit_lock:
            yield

    def _trim_log(self) -> None:
        """Drop the commits every shared open has merged (the store's lock is held)."""
        store = self.store
        oldest = min((each._version for each in store._shared), default=store.commits)
        if oldest > store._log_start:
            del store._log[: oldest - store._log_start]
            store._log_start = oldest

    def compact(self) -> None:
        """Nothing to fold: every commit is already in its final form."""
        self._check_writable()

    def describe(self) -> dict[str, Any]:
        """The store's name and how many batches it committed."""
        return {"engine": "memory", "name": self.store.name, "commits": self.store.commits}

    def side_log(self, name: str) -> MemorySideLog:
        """The side log *name* of this store, kept with it in memory."""
        self._check_open()
        with self.store._lock:
            lines = self.store._side_logs.setdefault(name, bytearray())
        return MemorySideLog(self, name, lines)

    def discard(self) -> None:
        """Close, and empty the store this open created (a copy into it failed midway).

        Refuses a store that held anything when this open began.
        """
        self._check_writable()
        if not self._created:
            raise RuntimeError(
                f"{self.location}: discard() empties only a store this open created"
            )
        with self.store._lock:
            self.store._values = {}
            self.store._meta = {}
            self.store._side_logs = {}
        self.close()

    def close(self) -> None:
        """Release the store for another writer. Idempotent; the data stays."""
        if self._closed:
            return
        self._closed = True
        if not self.readonly:
            with self.store._lock:
                if self.store._writer is self:
                    self.store._writer = None
                self.store._shared.discard(self)
                if self.shared:
                    self._trim_log()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.location} is closed; open it again to use it")

    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise ReadOnlyError(f"{self.location} is open read-only")


class MemorySideLog:
    """A side log of a :class:`MemoryStore`: its lines, in memory with the store."""

    def __init__(self, owner: MemoryStorage, name: str, lines: bytearray) -> None:
        self._owner = owner
        self._lines = lines
        self.name = name

    @property
    def location(self) -> str:
        return f"{self._owner.location}/{self.name}"

    @property
    def empty(self) -> bool:
        return not self._lines

    def read(self) -> bytes:
        with self._owner.store._lock:
            return bytes(self._lines)

    def append(self, line: bytes) -> None:
        self._owner._check_writable()
        with self._owner.store._lock:
            self._lines += line

    def flush(self) -> None:
        """Nothing to wait for in memory."""

    def clear(self) -> None:
        self._owner._check_writable()
        with self._owner.store._lock:
            del self._lines[:]

    def close(self) -> None:
        """Nothing to release."""
