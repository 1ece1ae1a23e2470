"""PersistentOrderedDict: a dict that keeps itself synchronized to disk."""

from __future__ import annotations

import logging
import os
import reprlib
import threading
import weakref
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

import orjson

from . import _lifecycle
from ._codec import FAST_OPTIONS, check_new_key, encode_value, has_non_finite, normalize_key
from ._settings import CLOSED, IgnoreAll, check_settings
from .errors import LockedError, ReadOnlyError, SettingsError, StoreClosedError
from .storage import FileStorage, Storage

__all__ = ["POD", "PersistentOrderedDict"]

log = logging.getLogger(__name__)

DEFAULT_SYNC_AT = 1000

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
    so ``pod[k]["x"] = 1`` is caught. A sync writes one atomic, durable batch.
    The store also syncs at interpreter exit (also after an exception or
    ``KeyboardInterrupt``), on SIGTERM, and when it is garbage-collected.

    Opening a path that this process already has open for writing returns
    the same object. Not thread-safe: share a POD between threads only behind
    a lock. One writing process per store; read-only opens from any number.
    """

    _open: ClassVar[weakref.WeakValueDictionary[str, PersistentOrderedDict]] = (
        weakref.WeakValueDictionary()
    )
    _KIND: ClassVar[str] = "pod"
    _storage: Storage | None = None
    _closed = True

    def __new__(cls, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("readonly"):
            existing = PersistentOrderedDict._open.get(os.path.realpath(path))
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
        path: str | os.PathLike[str],
        gzipped: bool | None = None,
        file_size: int | None = None,
        sync_at: int | None = None,
        *,
        readonly: bool = False,
        timeout: float | None = 0.0,
        durable: bool = True,
    ) -> None:
        check_settings(gzipped, file_size, sync_at, timeout)
        if self._storage is not None:  # __new__ handed back the live object
            self._check_same_settings(gzipped, file_size, sync_at)
            return
        storage = FileStorage(
            path,
            file_size=file_size,
            gzipped=gzipped,
            readonly=readonly,
            durable=durable,
            timeout=timeout,
        )
        try:
            meta = storage.meta
            self._data: dict[str, Any] = storage.load()
            # Settle the kind before writing anything (a tracker refuses a POD's data).
            kind = self._adopt_kind(meta.get("kind") or self._KIND, path)
            self._sync_at: int = (
                meta.get("sync_at", DEFAULT_SYNC_AT) if sync_at is None else sync_at
            )
            wanted = {**meta, "kind": kind, "sync_at": self._sync_at}
            if not readonly and wanted != meta:
                storage.set_meta(wanted)
        except BaseException:
            storage.close()
            raise
        self._storage = storage
        self._path = Path(path)
        self._readonly = readonly
        # key -> True if the key must go (again) to the end of the store on
        # disk (new, or deleted since the last sync), False if it is changed
        # in place. Insertion order of appended keys matches self._data.
        self._dirty: dict[str, bool] = IgnoreAll() if readonly else {}
        # Encoded values from assignment, valid until the key is read again.
        self._encoded: dict[str, bytes] = {}
        self._held = False
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._closed = False
        if not readonly:
            PersistentOrderedDict._open[os.path.realpath(path)] = self
            _lifecycle.register(self)

    def _adopt_kind(self, kind: str, path: object) -> str:
        """The kind of store to record; any kind opens as a plain POD."""
        return kind

    # -- the mapping ------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        if type(key) is not str:
            key = normalize_key(key)
        value = self._data[key]
        dirty = self._dirty
        if key not in dirty:
            # The caller may mutate the value after we return, so this key must
            # stay dirty: if it is the one that reaches sync_at, sync the
            # others first, then mark it.
            if len(dirty) + 1 >= self._sync_at and dirty and not self._held:
                self._auto_sync()
            dirty[key] = False
        self._encoded.pop(key, None)  # the caller may now mutate the value
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        if type(key) is not str:
            key = normalize_key(key)
        data = self._data
        present = key in data
        if self._readonly:
            self._refuse()
        encoded = encode_value(value)
        dirty = self._dirty
        if present:
            if key not in dirty:
                dirty[key] = False
        else:
            if not key.isascii():
                check_new_key(key)
            dirty.pop(key, None)
            dirty[key] = True
        self._encoded[key] = encoded
        data[key] = value
        if len(dirty) >= self._sync_at and not self._held:
            self._auto_sync()

    def __delitem__(self, key: Any) -> None:
        if type(key) is not str:
            key = normalize_key(key)
        if self._readonly:
            self._refuse()
        del self._data[key]
        dirty = self._dirty
        dirty.pop(key, None)
        dirty[key] = True
        self._encoded.pop(key, None)
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
            return f"<{name} {str(self._path)!r} closed>"
        preview = reprlib.repr(self._data)
        counts = f"{len(self._data)} keys, {len(self._dirty)} unsynced"
        return f"<{name} {str(self._path)!r} {counts}: {preview}>"

    def popitem(self) -> tuple[str, Any]:
        """Remove and return the last ``(key, value)``, like ``dict.popitem``."""
        try:
            key = next(reversed(self._data))
        except StopIteration:
            raise KeyError("popitem(): store is empty") from None
        value = self._data[key]
        del self[key]
        return key, value

    def clear(self) -> None:
        """Delete every key (on disk at the next sync)."""
        data = self._data
        if self._readonly:
            self._refuse()
        self._dirty.update(dict.fromkeys(data, True))
        data.clear()
        self._encoded.clear()
        if len(self._dirty) >= self._sync_at and not self._held:
            self._auto_sync()

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``; or, with one ``str``/``int`` naming a key, :meth:`sync_key`.

        ``pod.update("k")`` is the seed API's way to sync one key now. A lone
        ``str`` or ``int`` can never be a valid ``dict.update`` argument, so
        the two meanings cannot collide.
        """
        if len(args) == 1 and not kwargs and isinstance(args[0], (str, int)):
            self.sync_key(args[0])
            return
        super().update(*args, **kwargs)

    def iteritems(self) -> Iterator[tuple[str, Any]]:
        """Iterator over ``(key, value)`` pairs in order (marks each key dirty)."""
        return iter(self.items())

    # -- synchronization --------------------------------------------------------

    def mark_dirty(self, key: Any) -> None:
        """Note that *key*'s value changed through a reference held outside."""
        if type(key) is not str:
            key = normalize_key(key)
        if key not in self._data:
            raise KeyError(key)
        self._encoded.pop(key, None)
        dirty = self._dirty
        if key not in dirty:
            dirty[key] = False
            if len(dirty) >= self._sync_at and not self._held:
                self._auto_sync()

    def dirty(self) -> set[str]:
        """The keys that the next sync will look at (read or changed since the last one)."""
        return set(self._dirty)

    def sync(self) -> None:
        """Write every dirty key to disk as one atomic, durable commit.

        Raises
        ------
        TypeError
            If a value can no longer be encoded (changed by nested mutation);
            the store on disk is left as it was and every key stays dirty.
        OSError
            If writing fails; the store on disk is left as it was.
        """
        self._check_writable()
        with self._lock, _lifecycle.critical():
            if self._dirty:
                self._commit(None)

    def sync_key(self, key: Any) -> None:
        """Write *key* to disk now (with any keys added before it, to keep order)."""
        if type(key) is not str:
            key = normalize_key(key)
        self._check_writable()
        if key not in self._data and key not in self._dirty:
            raise KeyError(key)
        with self._lock, _lifecycle.critical():
            if self._dirty.get(key):
                keys = []
                for other, appended in self._dirty.items():
                    if appended:
                        keys.append(other)
                    if other == key:
                        break
            else:
                keys = [key]
            self._commit(keys)

    def _commit(self, keys: list[str] | None) -> None:
        """Commit *keys* (every dirty key if None); they stay dirty on failure."""
        dirty, encoded = self._dirty, self._encoded
        pending = dirty.items() if keys is None else [(k, dirty.get(k, False)) for k in keys]
        assert self._storage is not None
        self._storage.commit(self._changes(pending))
        if keys is None:
            dirty.clear()
            encoded.clear()
        else:
            for key in keys:
                dirty.pop(key, None)
                encoded.pop(key, None)

    def _changes(self, pending: Iterable[tuple[str, bool]]) -> Iterator[tuple[str, bytes | None]]:
        """The storage changes for dirty keys, made lazily.

        A generator, so each change tuple is freed before the next is made:
        a list of them would trigger the cyclic GC over all the data.
        """
        data, encoded = self._data, self._encoded
        dumps, checked = orjson.dumps, encode_value
        for key, appended in pending:
            if appended:
                yield key, None  # (re)goes to the end: drop its old place
            blob = encoded.get(key)
            if blob is None:
                if key not in data:
                    continue  # deleted
                value = data[key]
                try:
                    blob = dumps(value, option=FAST_OPTIONS)
                except TypeError:  # e.g. non-str dict keys: the careful path
                    blob = b""
                if not blob or (b"null" in blob and has_non_finite(value)):
                    try:
                        blob = checked(value, keep=False)
                    except TypeError as exc:
                        raise TypeError(f"cannot sync key {key!r}: {exc}") from None
            yield key, blob

    def _auto_sync(self) -> None:
        self.sync()

    def _exit_sync(self) -> None:
        if not self._closed and os.getpid() == self._pid:
            self.sync()

    def hold(self) -> None:
        """Suspend automatic syncing (explicit :meth:`sync` still works)."""
        self._held = True

    def unhold(self) -> None:
        """Resume automatic syncing and sync what is outstanding."""
        self._held = False
        if not self._readonly:
            self.sync()

    def revert(self) -> None:
        """Reload from disk, discarding unsynced changes."""
        self._check_open()
        assert self._storage is not None
        with self._lock:
            self._data = self._storage.load()
            self._dirty.clear()
            self._encoded.clear()

    def copy(
        self,
        path: str | os.PathLike[str],
        file_size: int | None = None,
        gzipped: bool | None = None,
    ) -> None:
        """Write everything to a new store at *path* and sync there from now on.

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
            encoded = (
                (key, encode_value(value, keep=False, key=key))
                for key, value in self._data.items()
            )
            new = FileStorage.create_with(
                path,
                encoded,
                file_size=self._storage.file_size if file_size is None else file_size,
                gzipped=self._storage.gzipped if gzipped is None else gzipped,
                durable=self._storage.durable,
                meta=self._storage.meta,
            )
            old, self._storage = self._storage, new
            old.close()
            PersistentOrderedDict._open.pop(os.path.realpath(self._path), None)
            self._path = Path(path)
            PersistentOrderedDict._open[os.path.realpath(path)] = self
            self._dirty.clear()
            self._encoded.clear()

    def compact(self) -> None:
        """Sync, then fold the journal into the data files now (atomic, like a sync).

        The store does this by itself from time to time and when closed; call
        it to leave the data files complete, e.g. before copying them.
        """
        self.sync()
        assert self._storage is not None
        with self._lock, _lifecycle.critical():
            self._storage.compact()

    # -- life cycle ---------------------------------------------------------------

    def close(self) -> None:
        """Sync (unless read-only) and release the store. Idempotent.

        If the final sync fails, the error propagates and the store stays open.
        """
        if self._closed:
            return
        if not self._readonly:
            self.sync()
        with self._lock:
            self._closed = True
            self._data = CLOSED
            assert self._storage is not None
            self._storage.close()
            _lifecycle.unregister(self)
            if PersistentOrderedDict._open.get(os.path.realpath(self._path)) is self:
                del PersistentOrderedDict._open[os.path.realpath(self._path)]

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed and os.getpid() == self._pid:
                self.close()
        except Exception:
            log.exception("tastypy: could not sync %s when it was garbage-collected", self._path)

    # -- properties -----------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The store's directory."""
        return self._path

    @property
    def file_size(self) -> int:
        """At most this many values per data file."""
        assert self._storage is not None
        return self._storage.file_size

    @property
    def gzipped(self) -> bool:
        """Whether data files are gzip-compressed."""
        assert self._storage is not None
        return self._storage.gzipped

    @property
    def sync_at(self) -> int:
        """Number of dirty keys that triggers a sync."""
        return self._sync_at

    @property
    def readonly(self) -> bool:
        return self._readonly

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
            raise StoreClosedError(f"{self._path} is closed; open it again to use it")

    def _check_writable(self) -> None:
        self._check_open()
        if self._readonly:
            self._refuse()

    def _refuse(self) -> NoReturn:
        raise ReadOnlyError(f"{self._path} is open read-only; open it without readonly=True")

    def _check_same_settings(
        self, gzipped: bool | None, file_size: int | None, sync_at: int | None
    ) -> None:
        for name, asked in (("gzipped", gzipped), ("file_size", file_size)):
            current = getattr(self, name)
            if asked is not None and asked != current:
                raise SettingsError(
                    f"{self._path} is open in this process with {name}={current!r}; "
                    f"{name}={asked!r} was asked for"
                )
        if sync_at is not None:
            self._sync_at = sync_at


POD = PersistentOrderedDict
