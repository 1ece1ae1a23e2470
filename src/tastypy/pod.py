"""PersistentOrderedDict: a dict that keeps itself synchronized to disk."""

from __future__ import annotations

import logging
import os
import reprlib
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar, cast

import orjson

from . import _lifecycle, _registry
from ._codec import check_new_key, encode_value, normalize_key
from ._copy import copy_into
from ._locked import locked_block
from ._pending import Pending
from ._settings import (
    CLOSED,
    DEFAULT_SHARED_SYNC_AT,
    DEFAULT_SYNC_AT,
    IgnoreAll,
    check_engine_given,
    check_same_settings,
    check_settings,
    sync_at_of,
)
from ._window import Window
from .errors import (
    LockedError,
    ReadOnlyError,
    SettingsError,
    StoreClosedError,
)
from .storage import Storage
from .storage.engines import is_url, open_engine, store_key

__all__ = ["POD", "PersistentOrderedDict"]

log = logging.getLogger(__name__)

# How long the sync at exit or on SIGTERM waits for another thread's operation.
EXIT_LOCK_SECONDS = 10.0

if TYPE_CHECKING:
    from .storage import Merge, Shared
    from .storage.protocol import OnDemand

_Self = TypeVar("_Self", bound="PersistentOrderedDict")


class PersistentOrderedDict(MutableMapping[str, Any]):
    """A ``dict`` that keeps itself synchronized to JSON files in a directory.

    Parameters
    ----------
    path
        The store's directory; created (with parents) if missing. A store
        already there is loaded.
    gzipped
        Write gzip-compressed data files (default ``False``).
    file_size
        At most this many values per data file (default 1000).
    sync_at
        Sync once this many keys are dirty (default 1000).
    readonly
        Load the store but never write to it or lock it.
    timeout
        Seconds to wait if another process holds the store for writing
        (default 0: raise :class:`LockedError` at once; ``None``: wait forever).
    durable
        ``fsync`` before a sync returns (default). ``False`` is faster but a
        power loss may lose recent syncs (never mixes them).
    storage
        An engine object to use instead of opening *path* (then give no
        *path*, and the engine's own settings to the engine): for example
        ``tastypy.storage.memory.MemoryStorage()`` for a POD with no disk.
    shared
        Let other processes on this machine write the store at the same time,
        each opening it with ``shared=True``: each sync commits the keys this
        process changed on top of the others' commits (per key, the last
        writer wins) and brings in what they committed; :meth:`refresh`
        brings it now. Plain and shared writers exclude each other.

    ``gzipped``, ``file_size`` and ``sync_at`` are stored with the data, so
    reopening needs only the path. Reopening with a different explicit
    ``gzipped`` or ``file_size`` raises :class:`SettingsError` (use
    :meth:`copy` to change them); an explicit ``sync_at`` replaces the stored one.

    Raises
    ------
    LockedError
        If another process holds the store for writing.
    NotAStoreError
        If *path* exists but is neither a store nor an empty directory.
    CorruptStoreError
        If the store's files are damaged.

    Notes
    -----
    Keys are strings; ``int``, ``float``, ``bool`` and ``None`` keys are
    converted as JSON object keys are. Values must be JSON-encodable.

    Any access to a key through the mapping, read or write, marks it dirty,
    so ``pod[k]["x"] = 1`` is caught by the next sync. A value handed out
    (or assigned) and changed in place after that sync is written, at the
    latest, by the sync at close or exit, which checks every key the session
    touched and writes those that changed. A sync writes one atomic, durable
    batch. The store also syncs at interpreter exit (also after an exception
    or ``KeyboardInterrupt``), on SIGTERM, and when it is garbage-collected.

    A value that can no longer be encoded (changed by nested mutation to hold
    a NaN, say) never costs the other keys: a sync writes them and leaves
    that key out, the store keeping its last synced value. An explicit
    :meth:`sync` or :meth:`close` then raises ``TypeError`` naming the key;
    an automatic sync logs a warning; at exit one line goes to stderr.

    Opening a path that this process already has open for writing returns
    the same object; each such open needs its own :meth:`close` (or ``with``
    block), and only the last one releases the store. Thread-safe: every
    operation is atomic with respect to syncs (iterating while another
    thread adds keys raises ``RuntimeError``, as for a dict). One writing
    process per store; read-only opens from any number.
    """

    _KIND: ClassVar[str] = "pod"
    # The capabilities an engine needs for this class to be served on demand
    # (else it is loaded whole).
    _ON_DEMAND_NEEDS: ClassVar[frozenset[str]] = frozenset({"on_demand"})
    # The data as a Window (the same object as _data), if the engine serves it on demand.
    _window: Window | None = None
    _storage: Storage | None = None
    _closed = True
    _lock: threading.RLock
    _opens: int
    _where: str  # what messages call the store
    _sync_at: int
    _shared = False  # other processes may write the store at the same time
    _in_block = False  # inside a locked() block
    _committing = False  # a commit runs (in the thread holding the lock)
    _committer = 0  # that thread's ident
    _exit_failure: str | None = None  # the last failure an exit sync reported
    # A set that collects every key touched through the mapping, or None;
    # the tracker's counts re-check the keys in it.
    _touched: set[str] | None = None

    def __new__(cls, path: str | os.PathLike[str] | None = None, *args: Any, **kwargs: Any) -> Any:
        if path is not None and not kwargs.get("readonly"):
            existing = _registry.find(store_key(path, kwargs.get("name")))
            if existing is not None and not existing._closed:
                if type(existing) is not cls:
                    raise LockedError(
                        f"{path} is already open in this process as a "
                        f"{type(existing).__name__}; close that object first"
                    )
                return existing
        return super().__new__(cls)

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        gzipped: bool | None = None,
        file_size: int | None = None,
        sync_at: int | None = None,
        *,
        readonly: bool = False,
        timeout: float | None = 0.0,
        durable: bool = True,
        storage: Storage | None = None,
        shared: bool = False,
        name: str | None = None,
    ) -> None:
        check_settings(gzipped, file_size, sync_at, timeout)
        if type(shared) is not bool:
            raise TypeError(f"shared must be True or False, not {shared!r}")
        if self._storage is not None:  # __new__ handed back the live object
            with self._lock:
                check_same_settings(self._where, self.storage.options, gzipped, file_size)
                if sync_at is not None:
                    self._sync_at = sync_at
                self._opens += 1
            return
        if storage is None:
            if path is None:
                raise TypeError("give the store's path (or an engine as storage=)")
            storage = open_engine(
                path,
                readonly=readonly,
                durable=durable,
                timeout=timeout,
                shared=shared,
                options={"file_size": file_size, "gzipped": gzipped},
                name=name,
            )
        else:
            check_engine_given(
                storage, path, gzipped, file_size, readonly, durable, timeout, name=name
            )
            if shared and "shared" not in storage.capabilities:
                raise SettingsError(
                    f"{storage.location}: this engine object is not a shared open; "
                    "make it shared, or leave out shared=True"
                )
            readonly = storage.readonly
        self._lock = threading.RLock()
        where = storage.location
        self._pending = Pending(readonly=readonly)
        try:
            self._data: dict[str, Any] = self._first_data(storage)
            meta = storage.meta
            # Settle the kind before writing anything (a tracker refuses a POD's data).
            kind = self._adopt_kind(meta.get("kind") or self._KIND, where)
            self._sync_at = sync_at_of(meta, sync_at, where, _default_sync_at(path))
            wanted = {**meta, "kind": kind, "sync_at": self._sync_at}
            if not readonly and wanted != meta:
                storage.set_meta(wanted)
        except BaseException:
            storage.close()
            raise
        self._storage = storage
        self._shared = "shared" in storage.capabilities
        self._where = where  # what messages call the store
        self._path = Path(path) if path is not None and not is_url(path) else None
        self._registered: str | None = None  # its key in _registry, if it is listed
        self._readonly = readonly
        # Aliases of the pending sets for the hot paths (never rebound).
        # key -> True if the key must go (again) to the end of the store on
        # disk (new, or deleted since the last sync), False if it is changed
        # in place. Insertion order of appended keys matches self._data.
        self._dirty = self._pending.dirty
        # Encodings made at assignment, of values that cannot change in place.
        self._encoded = self._pending.encoded
        self._held = False
        self._pid = os.getpid()
        self._opens = 1  # opens of this path in this process not yet closed
        self._closed = False
        if not readonly:
            if path is not None:
                self._registered = store_key(path, name)
                _registry.add(self._registered, self)
            _lifecycle.register(self)

    def _first_data(self, storage: Storage) -> dict[str, Any]:
        """The store loaded whole, or a window onto it if its engine serves it on demand."""
        if storage.capabilities >= self._ON_DEMAND_NEEDS:
            self._window = Window(cast("OnDemand", storage), self._pending)
            # The dict-like window stands in for the dict (_window.py).
            return cast("dict[str, Any]", self._window)
        return storage.load()

    def _value_check(self) -> Callable[[Any], str | None] | None:
        """What says why a value must not be written, beyond JSON (None: no check).

        It returns the reason, or None if the value is fine. A value it
        refuses is handled as one that cannot be encoded: left out of the
        sync, which names it (the tracker's check of its records).
        """
        return None

    def _adopt_kind(self, kind: str, path: object) -> str:
        """The kind of store to record; any kind opens as a plain POD."""
        return kind

    # -- the mapping ------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        if type(key) is not str:
            key = normalize_key(key)
        with self._lock:
            return self._hand_out(key)

    # -- the seam for subclasses (the tracker) ------------------------------------
    #
    # A subclass reads self._data freely (under self._lock) but changes the
    # data only through the mapping or these methods, which keep the pending
    # sets (what the next sync writes) right.

    def _add_new(self, values: dict[str, Any], encoding: bytes) -> None:
        """Add keys not in the store, each with a value of the given *encoding*.

        For a subclass that makes many values it knows the JSON of (the
        tracker's fresh records, each its own dict): no encode per key. The
        caller holds the lock and has normalized the keys; may auto-sync.
        """
        self._check_writable()
        data, dirty, encoded = self._data, self._dirty, self._encoded
        for key, value in values.items():
            if not key.isascii():
                check_new_key(key)
            data[key] = value
            dirty.pop(key, None)
            dirty[key] = True
            encoded[key] = encoding
        if len(dirty) >= self._sync_at and not self._held:
            self._auto_sync()

    def _set_in_view(self, key: str, value: Any) -> None:
        """Change what a read-only POD shows for *key*, writing nothing.

        For a subclass that shows more than the store holds (the tracker's
        view of tries logged since the last sync).
        """
        assert self._readonly
        if self._window is not None:
            self._window.pin(key, value)  # kept in memory: the store does not have it so
        else:
            self._data[key] = value

    def _hand_out(self, key: str) -> Any:
        """The value of *key*, which the caller may now change: it stays dirty.

        The caller holds the lock and has normalized *key*.
        """
        value = self._data[key]  # a missing key raises KeyError, and nothing changes
        if self._touched is not None:
            self._touched.add(key)
        dirty = self._dirty
        if key not in dirty:
            # The caller may mutate the value after we return, so this key must
            # stay dirty: if it is the one that reaches sync_at, sync the
            # others first, then mark it.
            if len(dirty) + 1 >= self._sync_at and dirty and not self._held:
                self._auto_sync()
                # A shared store's sync may have put the others' value of the key
                # in its place, reloaded everything, or deleted it.
                value = self._data[key]
                dirty = self._dirty
            dirty[key] = False
        self._encoded.pop(key, None)  # the caller may now mutate the value
        return value

    def __setitem__(self, key: Any, value: Any) -> None:  # noqa: PLR0912  # one hot path, inline
        if type(key) is not str:
            key = normalize_key(key)
        if self._readonly:
            self._refuse()
        # Checked now, so a bad value never gets in. The encoding is kept for
        # the sync only if nothing can change the value in place meanwhile: a
        # dict or list the caller assigned may be changed through the
        # caller's own reference before then (and the reference dropped).
        mutable = isinstance(value, (dict, list, tuple))
        encoded = encode_value(value, keep=not mutable, key=key)
        if self._window is not None:
            self._set_in_window(key, value, None if mutable else encoded)
            return
        with self._lock:
            data = self._data
            dirty = self._dirty
            encodings = self._encoded
            # Order matters if a signal handler syncs mid-way: every state in
            # between is one a sync may write.
            # Marked dirty before the value changes (a KeyboardInterrupt in
            # between leaves a dirty key, never a changed clean one) and again
            # after (a signal handler's sync in between took the first mark).
            if mutable:
                encodings.pop(key, None)
            else:
                encodings[key] = encoded
            if key in data:
                if key not in dirty:
                    dirty[key] = False
                data[key] = value
                if key not in dirty:
                    dirty[key] = False
            else:
                if not key.isascii():
                    check_new_key(key)
                dirty.pop(key, None)
                dirty[key] = True
                data[key] = value
                if key not in dirty:
                    dirty[key] = True
            if self._touched is not None:
                self._touched.add(key)
            if len(dirty) >= self._sync_at and not self._held:
                self._auto_sync()

    def _set_in_window(self, key: str, value: Any, encoded: bytes | None) -> None:
        """``__setitem__`` on a store served on demand: never asks the store about *key*.

        A key it does not know is set *unsure*: in place if the store has
        it, else at the end, as the store decides at the sync (``_window.py``).
        """
        with self._lock:
            window = cast("Window", self._window)
            dirty, encodings = self._dirty, self._encoded
            there = window.holds(key)
            if there is None and not key.isascii():
                check_new_key(key)
            # Marked before and after the change, as in __setitem__.
            if encoded is None:
                encodings.pop(key, None)
            else:
                encodings[key] = encoded
            if there is False:  # deleted here: it goes to the end
                dirty.pop(key, None)
                dirty[key] = True
                window[key] = value
                if key not in dirty:
                    dirty[key] = True
            else:
                if key not in dirty:
                    dirty[key] = False
                window[key] = value
                if key not in dirty:
                    dirty[key] = False
            if len(dirty) >= self._sync_at and not self._held:
                self._auto_sync()

    def __delitem__(self, key: Any) -> None:
        if type(key) is not str:
            key = normalize_key(key)
        if self._readonly:
            self._refuse()
        with self._lock:
            del self._data[key]
            self._encoded.pop(key, None)
            if self._touched is not None:
                self._touched.add(key)
            dirty = self._dirty
            dirty.pop(key, None)
            dirty[key] = True
            if len(dirty) >= self._sync_at and not self._held:
                self._auto_sync()

    def __contains__(self, key: object) -> bool:
        if type(key) is not str:
            try:
                key = normalize_key(key)
            except TypeError:
                return False
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        name = type(self).__name__
        if self._closed:
            return f"<{name} {self._where!r} closed>"
        if self._window is not None:  # no query: a repr must not wait for a server
            return f"<{name} {self._where!r} served on demand, {len(self._dirty)} unsynced>"
        preview = reprlib.repr(self._data)
        counts = f"{len(self._data)} keys, {len(self._dirty)} unsynced"
        return f"<{name} {self._where!r} {counts}: {preview}>"

    def popitem(self) -> tuple[str, Any]:
        """Remove and return the last ``(key, value)``, like ``dict.popitem``."""
        with self._lock:
            try:
                key = next(reversed(self._data))
            except StopIteration:
                raise KeyError("popitem(): store is empty") from None
            value = self._data[key]
            del self[key]
            return key, value

    def clear(self) -> None:
        """Delete every key (on disk at the next sync)."""
        if self._readonly:
            self._refuse()
        with self._lock:
            data = self._data
            if self._window is not None:  # every key of the store, then: no value
                keys = list(data)
                self._dirty.update(dict.fromkeys(keys, True))
                self._window.drop_all(keys)
            else:
                self._dirty.update(dict.fromkeys(data, True))
                data.clear()
            self._encoded.clear()
            if len(self._dirty) >= self._sync_at and not self._held:
                self._auto_sync()

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``; or, with one ``str`` naming a key, :meth:`sync_key`.

        ``pod.update("k")`` is the seed API's way to sync one key now. A lone
        ``str`` is never a useful ``dict.update`` argument, so the two meanings
        cannot collide; anything else (``pod.update(42)`` included) behaves
        exactly as ``dict.update`` does, as one batch: the automatic sync
        waits for the end of the call (one commit, however many keys).
        """
        if len(args) == 1 and not kwargs and isinstance(args[0], str):
            self.sync_key(args[0])
            return
        if len(args) > 1:
            raise TypeError(f"update expected at most 1 argument, got {len(args)}")
        pairs: list[tuple[Any, Any]] = []  # read first: a slow iterable holds no lock
        if args:
            other = args[0]
            if isinstance(other, Mapping):
                pairs = [(key, other[key]) for key in other]
            elif hasattr(other, "keys"):
                pairs = [(key, other[key]) for key in other.keys()]  # noqa: SIM118  # as dict.update
            else:
                pairs = [(key, value) for key, value in other]
        pairs += kwargs.items()
        with self._lock:  # one batch: no automatic sync until every key is set
            held, self._held = self._held, True
            try:
                for key, value in pairs:
                    self[key] = value
            finally:
                self._held = held
            if len(self._dirty) >= self._sync_at and not self._held:
                self._auto_sync()

    def iteritems(self) -> Iterator[tuple[str, Any]]:
        """Iterator over ``(key, value)`` pairs in order (marks each key dirty)."""
        return iter(self.items())

    # -- synchronization --------------------------------------------------------

    def mark_dirty(self, key: Any) -> None:
        """Note that *key*'s value changed through a reference held outside."""
        if type(key) is not str:
            key = normalize_key(key)
        with self._lock:
            if key not in self._data:
                raise KeyError(key)
            self._encoded.pop(key, None)
            if self._touched is not None:
                self._touched.add(key)
            dirty = self._dirty
            if key not in dirty:
                dirty[key] = False
                if len(dirty) >= self._sync_at and not self._held:
                    self._auto_sync()

    def dirty(self) -> set[str]:
        """The keys that the next sync will look at (read or changed since the last one)."""
        with self._lock:
            return set(self._dirty)

    def sync(self) -> None:
        """Write every key assigned, deleted or read since the last sync, atomically and durably.

        Its cost follows what was touched since the last sync. A value handed
        out (or assigned) before that sync and changed in place since, through
        a reference the program kept, is written by the sync at :meth:`close`
        or exit, which checks every value the program can still reach; call
        :meth:`mark_dirty` to have the next ``sync()`` write it.

        Raises
        ------
        TypeError
            If a value can no longer be encoded (changed by nested mutation to
            hold a NaN, say). Every other key was written; that key is not,
            the store keeps its last synced value, and it stays pending until
            its value is fixed. The message names the key.
        OSError
            If writing fails: nothing was committed, every change stays
            pending, and a later ``sync()`` retries. (A commit that reached
            the disk is never reported as failed: if only the compaction that
            may follow it fails, that is logged and retried later.)
        """
        self._check_writable()
        with self._lock, _lifecycle.critical():
            left = self._commit(None) if self._dirty or self._shared else []
        self._raise_bad(left)

    def sync_key(self, key: Any) -> None:
        """Write *key* to disk now (with any keys added before it, to keep order).

        Raises ``TypeError`` as :meth:`sync` does if the value cannot be encoded.
        """
        if type(key) is not str:
            key = normalize_key(key)
        self._check_writable()
        with self._lock, _lifecycle.critical():
            if key not in self._data and key not in self._dirty:
                raise KeyError(key)
            left = self._commit([key])  # with the keys added before it (_in_order)
        self._raise_bad(left)

    def _in_order(self, keys: list[str]) -> list[str]:
        """*keys*, with the keys added before them that go to the store's end too, first.

        A commit of some keys only (``sync_key``, a shared tracker's ``add``
        or claim) that puts one at the end puts there first, in their order,
        the keys changed before it that go there too, so the store's order
        stays the order they were added in.
        """
        window, dirty = self._window, self._dirty
        ends = window.may_append if window is not None else dirty.get
        last = {key for key in keys if dirty.get(key) or ends(key)}
        if not last:
            return keys
        ordered: list[str] = []
        # A copy: a signal handler may write to the POD meanwhile (this runs
        # before the commit marks itself running).
        for other, appended in list(dirty.items()):
            if appended or ends(other):
                ordered.append(other)
            last.discard(other)
            if not last:
                break
        taken = set(ordered)
        return ordered + [key for key in keys if key not in taken]

    def _commit(self, keys: list[str] | None, *, full: bool = False) -> list[str]:
        """Commit *keys* (every dirty key if None; with *full*, every session key too).

        Returns the keys left out because their values cannot be encoded; on
        failure nothing is committed and every key stays dirty. *keys* are
        put :meth:`_in_order` first.
        """
        return self._commit_as_given(None if keys is None else self._in_order(keys), full=full)

    def _commit_as_given(self, keys: list[str] | None, *, full: bool = False) -> list[str]:
        """:meth:`_commit` of exactly *keys* (the caller has put them :meth:`_in_order`)."""
        if self._committing:
            # A signal handler or a finalizer, in this very thread, wrote to
            # the POD while its commit runs (the lock is re-entrant): a
            # nested commit would interleave with it in the journal.
            raise RuntimeError(
                f"{self._where}: cannot sync from inside its own sync (a signal handler or "
                "finalizer that writes to the POD?); its changes stay pending"
            )
        pending = self._pending
        assert self._storage is not None
        self._committing, self._committer = True, threading.get_ident()
        try:
            chosen, reach = pending.take(self._data, keys, full=full)
            left: list[str] = []
            try:
                changes = pending.changes(self._data, chosen, left, self._value_check())
                if self._shared:
                    merged = cast("Shared", self._storage).sync(changes)
                else:
                    self._storage.commit(changes)
            except BaseException:
                pending.restore(chosen)
                raise
            pending.settle(chosen, reach, left)
            if self._window is not None:
                self._window.committed([key for key, _appended in chosen], left)
            if self._shared and merged:
                self._merge_in(merged)
        finally:
            self._committing = False
        return left

    def _merge_in(self, merged: Merge) -> None:
        """Take the other writers' changes that a shared sync brought (see ``storage/_merge.py``).

        A key with a change still pending here keeps this process's value. A
        key only read here (marked, its value as last seen) takes theirs.
        """
        data = self._data
        keep = self._pending.keeps(data, merged.unchanged)
        if self._window is not None:  # the store keeps the order: only cached values change
            self._window.merge_in(merged, keep, orjson.loads)
        else:
            merged.apply(data, orjson.loads, keep=keep)
        if merged.appended and self._window is None:
            # Keys added here and not synced yet go to the end of the store when
            # they are: after the others' new keys, in the order they were added.
            for key, appended in list(self._dirty.items()):
                if appended and key in data:
                    data[key] = data.pop(key)
        if self._touched is not None:
            self._touched.update(merged.theirs)

    def _catch_up_shared(self) -> None:
        """Bring in what the other writers committed, committing nothing (a shared store).

        The caller holds the lock and signals back (``_lifecycle.critical``).
        """
        if self._committing:
            raise RuntimeError(f"{self._where}: cannot catch up from inside its own sync")
        self._committing, self._committer = True, threading.get_ident()
        try:
            merged = cast("Shared", self._storage).sync(())
            if merged:
                self._merge_in(merged)
        finally:
            self._committing = False

    def refresh(self) -> None:
        """See what other processes committed since this one last synced.

        A shared store syncs (which brings the others' changes); a read-only
        one is reloaded (its unsynced view of a tracker's logged tries
        included). A store with one writer, this one, has nothing to bring.
        """
        self._check_open()
        if self._readonly:
            self.revert()
        elif self._shared:
            with self._lock, _lifecycle.critical():
                left = self._commit(None)
            self._raise_bad(left)

    def _raise_bad(self, left: list[str]) -> None:
        if left:
            raise TypeError(self._pending.bad_message(self._where, left))

    def _auto_sync(self) -> None:
        """A sync that the POD decided on: a bad value elsewhere never raises here."""
        if self._committing:
            return  # a write from inside our own commit: it stays dirty for the next sync
        with self._lock, _lifecycle.critical():
            left = self._commit(None)
        pending = self._pending
        new = [k for k in left if k not in pending.warned]
        if new:
            pending.warned.update(new)
            log.warning("%s", pending.bad_message(self._where, new))

    def _exit_sync(self, how: str = "at exit", *, full: bool = True) -> None:
        """The last sync of a program that is ending (or may be): never raises.

        It checks every key the session touched (only the dirty ones if not
        *full*); anything that could not be saved is reported in one line on
        stderr, whatever the logging setup, once for each bad key.
        """
        if self._closed or self._readonly or os.getpid() != self._pid:
            return
        if self._committing and self._committer == threading.get_ident():
            return  # called inside our own commit (a handler): that commit is under way
        if not self._dirty and not (full and self._pending.session):
            return  # nothing to save (a shared store's sync would only catch up)
        if self._in_block:
            _lifecycle.report(
                f"tastypy: {self._where} {how}: a locked() block was under way; "
                "none of its changes were saved"
            )
            return
        # Never hang the exit: another thread may hold the lock while it waits
        # for something this thread holds (a logging lock, at a signal).
        if not self._lock.acquire(timeout=EXIT_LOCK_SECONDS):
            _lifecycle.report(
                f"tastypy: could not sync {self._where} {how}: another thread held it for "
                f"{EXIT_LOCK_SECONDS:g} s; {_not_saved(len(self._dirty))}"
            )
            return
        try:
            with _lifecycle.critical():
                left = self._commit(None, full=full)
        except Exception as exc:
            # The same failure again (at exit, then when collected at
            # shutdown) is said once.
            said = f"{type(exc).__name__}: {exc}"
            if said != self._exit_failure:
                self._exit_failure = said
                _lifecycle.report(
                    f"tastypy: could not sync {self._where} {how}: {exc}; "
                    f"{_not_saved(len(self._dirty))}"
                )
            return
        finally:
            self._lock.release()
        pending = self._pending
        new = [k for k in left if k not in pending.reported]
        if new:
            pending.reported.update(new)
            _lifecycle.report(f"tastypy: {how}, {pending.bad_message(self._where, new)}")

    def hold(self) -> None:
        """Suspend automatic syncing (explicit :meth:`sync` still works)."""
        with self._lock:  # not in the middle of another thread's update()
            self._held = True

    def unhold(self) -> None:
        """Resume automatic syncing and sync what is outstanding."""
        with self._lock:
            self._held = False
        if not self._readonly:
            self.sync()

    def locked(self) -> AbstractContextManager[None]:
        """Read-modify-write as one transaction: ``with pod.locked(): pod["n"] += 1``.

        Inside the block this process sees everything committed so far and,
        in a shared store, no other process commits until the block ends. The
        block's changes commit as one atomic, durable sync at its end; on an
        exception nothing commits and the POD is reloaded as the store is,
        undoing the block's changes in memory too. Automatic syncs wait for
        the end of the block; an exit sync during it saves none of its
        changes. Blocks do not nest. See :mod:`tastypy._locked`.
        """
        return locked_block(self)

    def revert(self) -> None:
        """Reload from disk, discarding unsynced changes."""
        self._check_open()
        assert self._storage is not None
        with self._lock, _lifecycle.critical():  # a reload may put a compaction in place
            if self._window is not None:
                self._window.reset()
            else:
                self._data = self._storage.load()
            self._pending.forget()

    def copy(
        self,
        path: str | os.PathLike[str] | Storage,
        file_size: int | None = None,
        gzipped: bool | None = None,
        *,
        name: str | None = None,
    ) -> None:
        """Write everything to a new store at *path* and sync there from now on.

        *path* may be a directory, or a ``postgresql://`` URL with the new
        store's *name*. It may also be an engine object holding an empty
        store, open for writing: the copy goes there, to whatever engine it is.

        The old location is left as of its last sync. Ignores :meth:`hold`.

        Raises
        ------
        FileExistsError
            If *path* already holds a store.
        TypeError
            If a value cannot be encoded; nothing is written.
        """
        self._check_writable()
        check_settings(gzipped, file_size, None, 0)
        assert self._storage is not None
        with self._lock, _lifecycle.critical():
            if self._committing:
                raise RuntimeError(f"{self._where}: cannot copy from inside its own sync")
            self._committing, self._committer = True, threading.get_ident()
            try:  # a handler's write meanwhile waits (see _commit)
                self._copy_to(path, file_size, gzipped, name)
            finally:
                self._committing = False

    def _copy_to(
        self,
        path: str | os.PathLike[str] | Storage,
        file_size: int | None,
        gzipped: bool | None,
        name: str | None,
    ) -> None:
        """:meth:`copy`, with the lock held and signals held back."""
        assert self._storage is not None
        new, loaded = copy_into(
            self._data, self._pending, self._storage, path, file_size, gzipped, name, self._window
        )
        if loaded is not None:  # from a store served on demand to one loaded whole
            self._data, self._window = loaded, None
        old, self._storage = self._storage, new
        self._shared = "shared" in new.capabilities
        old.close()
        if self._registered is not None:
            _registry.forget(self._registered, self)
            self._registered = None
        self._where = new.location
        if isinstance(path, (str, os.PathLike)):
            self._path = None if is_url(path) else Path(path)
            self._registered = store_key(path, name)
            _registry.add(self._registered, self)
        else:
            self._path = None

    def compact(self) -> None:
        """Sync, then fold the journal into the data files now (atomic, like a sync).

        The store does this by itself from time to time; call it to leave the
        data files complete, e.g. before copying them.
        """
        self.sync()
        assert self._storage is not None
        with self._lock, _lifecycle.critical():
            self._committing, self._committer = True, threading.get_ident()
            try:  # a handler's write meanwhile waits (see _commit)
                self._storage.compact()
            finally:
                self._committing = False

    # -- life cycle ---------------------------------------------------------------

    def close(self) -> None:
        """Sync (unless read-only) and release the store. Idempotent.

        The final sync also checks every value the session handed out or was
        given, and writes those changed in place since they were last synced.
        If this path was opened more than once in this process (``POD(path)``
        returns the same object), only the last ``close()`` releases it; each
        one syncs.

        Raises ``TypeError`` (see :meth:`sync`) or ``OSError`` if the final
        sync fails; the store then stays open.
        """
        if self._closed:
            return
        with self._lock:
            if not self._readonly:
                self._check_open()
                with _lifecycle.critical():
                    left = self._commit(None, full=True)
                self._raise_bad(left)
            self._opens -= 1
            if self._opens > 0:
                return
            self._release()

    def _release(self) -> None:
        """Close for good: let go of the engine, the exit hook and the registry."""
        self._closed = True
        self._data = CLOSED
        self._window = None
        assert self._storage is not None
        with _lifecycle.critical():  # closing may put a compaction in place
            self._storage.close()
        _lifecycle.unregister(self)
        if self._registered is not None:
            _registry.forget(self._registered, self)

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self._closed or os.getpid() != getattr(self, "_pid", None):
            return
        # At interpreter shutdown the at-exit sync has checked everything already.
        self._exit_sync("when it was garbage-collected", full=not _lifecycle.exiting)
        try:
            self._release()
        except Exception:
            log.exception("tastypy: could not close %s when it was garbage-collected", self._where)

    # -- properties -----------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The store's directory (None for a store given as an engine object)."""
        return self._path

    @property
    def storage(self) -> Storage:
        """The engine serving this store (for tools and tests; the POD owns it)."""
        assert self._storage is not None
        return self._storage

    @property
    def file_size(self) -> int:
        """At most this many values per data file (file engine; else AttributeError)."""
        return int(self._engine_option("file_size"))

    @property
    def gzipped(self) -> bool:
        """Whether data files are gzip-compressed (file engine; else AttributeError)."""
        return bool(self._engine_option("gzipped"))

    def _engine_option(self, name: str) -> Any:
        assert self._storage is not None
        options = self._storage.options
        if name not in options:
            raise AttributeError(f"{self._where}: its engine has no setting {name!r}")
        return options[name]

    @property
    def sync_at(self) -> int:
        """Number of dirty keys that triggers a sync."""
        return self._sync_at

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def shared(self) -> bool:
        """Whether other processes may write this store at the same time (``docs/SHARED.md``)."""
        return self._shared

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def held(self) -> bool:
        """Whether automatic syncing is suspended by :meth:`hold`."""
        return self._held

    # -- helpers ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self._where} is closed; open it again to use it")

    def _check_writable(self) -> None:
        self._check_open()
        if self._readonly:
            self._refuse()

    def _refuse(self) -> NoReturn:
        if os.getpid() != self._pid:
            raise LockedError(
                f"{self._where} was opened by process {self._pid}; this forked child may "
                "not change it (its changes could never be synced). Open the store in "
                "the child instead, once the parent has closed it."
            )
        raise ReadOnlyError(f"{self._where} is open read-only; open it without readonly=True")

    def _forked(self) -> None:
        """In a forked child: this POD is the parent's, so it takes no changes.

        Reads work as in a read-only POD: they mark nothing, so never sync.
        """
        self._readonly = True
        self._pending.dirty = self._dirty = IgnoreAll()


def _not_saved(count: int) -> str:
    if count == 1:
        return "1 changed key was not saved"
    return f"{count} changed keys were not saved"


POD = PersistentOrderedDict


def _default_sync_at(path: object) -> int:
    """``sync_at`` for a new store: sooner where many machines share it (PostgreSQL)."""
    on_db = isinstance(path, (str, os.PathLike)) and is_url(path)
    return DEFAULT_SHARED_SYNC_AT if on_db else DEFAULT_SYNC_AT
