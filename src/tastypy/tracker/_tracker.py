"""ProgressTracker: a POD of task records for jobs that must resume."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from .._codec import check_new_key, encode_value, normalize_key
from ..errors import CorruptStoreError, DuplicateKeyError, SettingsError
from ..pod import PersistentOrderedDict
from ..storage import Storage
from ..storage.engines import is_url
from . import _tries
from ._counts import TaskCounts
from ._fleet import FleetTasks
from ._progress import Progress
from ._records import (
    NEW_RECORD,
    check_records,
    fresh_records,
    record_problem,
    refuse_record,
    with_defaults,
)
from ._retry import RETRY_AT, RetryPolicy, waiting
from ._run import RunSummary, run
from ._served import ServedCounts
from ._to_do import ToDo

if TYPE_CHECKING:
    from ..storage.protocol import Counts

__all__ = ["ProgressTracker", "Tracker"]

log = logging.getLogger(__name__)


class ProgressTracker(ToDo, FleetTasks, Progress, PersistentOrderedDict):
    """A :class:`PersistentOrderedDict` whose values are task records.

    Each value is a dict with ``_done`` (bool) and ``_tries`` (int); attach any
    other fields (``tracker[key]["result"] = ...``) and they persist.

    Parameters
    ----------
    path, gzipped, file_size, sync_at, readonly, timeout, durable, storage
        As for :class:`PersistentOrderedDict`.
    max_tries
        Give up on a task after this many tries; ``None`` or ``0``: no limit.
        Stored with the data; an explicit value replaces the stored one.

    Notes
    -----
    A try counted by :meth:`try_it` is written to ``tries.jsonl`` in the store
    before ``try_it`` returns (one small ``write``, no ``fsync``), so it stays
    counted even if the task kills the process — a task that crashes the
    program cannot be retried forever. Counts (:meth:`num_done` and friends)
    are kept incrementally and always equal a recount: records changed
    through ``tracker[key][...]``, or through records the program still
    holds, are re-checked before the next count. Thread-safe like the POD:
    each :meth:`try_it` is atomic, so two threads never both take the last
    try a task has left.
    """

    _KIND = "tracker"
    # Served on demand only where the engine counts the records too: a
    # tracker's counts, checks and tasks to do are then queries (_served.py).
    _ON_DEMAND_NEEDS = frozenset({"on_demand", "counts"})

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        gzipped: bool | None = None,
        file_size: int | None = None,
        sync_at: int | None = None,
        max_tries: int | None = None,
        *,
        readonly: bool = False,
        timeout: float | None = 0.0,
        durable: bool = True,
        storage: Storage | None = None,
        shared: bool = False,
        name: str | None = None,
        lease: float | None = None,
        retry_delay: float | None = None,
        backoff: float | None = None,
        max_retry_delay: float | None = None,
    ) -> None:
        if max_tries is not None and (type(max_tries) is not int or max_tries < 0):
            raise ValueError(f"max_tries must be None or a whole number >= 0, not {max_tries!r}")
        retry = (retry_delay, backoff, max_retry_delay)
        RetryPolicy.checked(*retry)  # refused before anything opens
        caps = storage.capabilities if storage is not None else frozenset()
        if "shared" in caps and "claims" not in caps:
            # try_it must claim a task across writers (docs/SHARED.md).
            raise SettingsError(
                f"{storage.location if storage is not None else ''}: this engine's shared "
                "opens cannot claim tasks, so a tracker cannot use one"
            )
        _check_lease(path, lease)
        reopened = getattr(self, "_tally", None) is not None
        super().__init__(
            path,
            gzipped,
            file_size,
            sync_at,
            readonly=readonly,
            timeout=timeout,
            durable=durable,
            storage=storage,
            shared=shared,
            name=name,
        )
        if lease is not None and not self._readonly:
            self._set_lease(lease)
        if reopened:
            if max_tries is not None:
                self._set_max_tries(max_tries)
            self._set_retry(*retry)
            return
        assert self._storage is not None
        meta = self._storage.meta
        stored = meta.get("max_tries") or 0
        valid = type(stored) is int and stored >= 0
        self._tally = self._new_tally(stored if valid else 0)
        self._touched = self._tally.unchecked  # every key touched is re-checked before a count
        self._finished: set[str] = set()
        self._tries_log = _tries.TriesLog(
            self._storage.side_log(_tries.NAME), readonly=self._readonly
        )
        try:
            self._retry = RetryPolicy.from_meta(meta)
        except ValueError as exc:
            self.close()  # nothing was changed yet: this writes nothing
            raise CorruptStoreError(f"{self._where}: setting meta.{exc}") from None
        if max_tries is None and not valid:
            self.close()  # nothing was changed yet: this writes nothing
            raise CorruptStoreError(
                f"{self._where}: setting meta.max_tries must be a whole number "
                f">= 0 or null, not {stored!r}"
            )
        # Read the logged tries before anything here can sync (and so empty the log).
        try:
            self._check_records()
            logged = self._tries_log.read()
            if not self._shared:  # a shared writer counts them when it claims, and settles
                # those of dead writers as it syncs
                logged += _claimed_tries(self._storage, self._data)
        except BaseException:  # a hand-edited record, a tries.jsonl that is a link or a FIFO
            self.close()  # nothing was changed yet: this writes nothing
            raise
        if max_tries is not None:
            self._set_max_tries(max_tries)
        self._set_retry(*retry)
        self._repair_all()
        if self._shared and logged:
            self._fleet_adopt_tries_log()  # a plain writer's, left by a crash
        else:
            self._replay_tries(logged)

    def _new_tally(self, max_tries: int) -> TaskCounts:
        """Counts kept here, or, served on demand, asked of the store (``_served.py``)."""
        if self._window is None:
            return TaskCounts(max_tries)
        self._window.shape = with_defaults  # each record as it is read
        return ServedCounts(self._window, max_tries)

    def _set_lease(self, lease: float) -> None:
        """Give the engine's claims *lease* seconds (checked by ``_check_lease``)."""
        self._storage.lease = lease  # type: ignore[union-attr]  # PostgreSQL's claims

    def _value_check(self) -> Callable[[Any], str | None]:
        """A task record whose ``_tries`` is unusable must not be written."""
        return record_problem

    def _adopt_kind(self, kind: str, path: object) -> str:
        if kind != self._KIND and self._data:
            raise SettingsError(f"{path} holds a plain POD, not a tracker; open it as a POD")
        return self._KIND

    # -- keeping counts right -------------------------------------------------------

    def __setitem__(self, key: Any, value: Any) -> None:
        if not isinstance(value, dict):
            raise TypeError(
                f"a tracker's values are task records (dicts), not {type(value).__name__}"
            )
        problem = record_problem(value)
        if problem is not None:
            raise TypeError(f"task {key!r}: {problem}")
        added = [f for f in ("_done", "_tries") if f not in value]
        value.setdefault("_done", False)
        value.setdefault("_tries", 0)
        try:
            super().__setitem__(key, value)  # notes the key in _touched, i.e. the tally
        except BaseException:
            for name in added:  # refused: the caller's dict is as it was
                value.pop(name, None)
            raise

    def clear(self) -> None:
        with self._lock:
            try:
                super().clear()
            finally:  # even if the automatic sync it set off failed
                self._tally.recount(self._data)

    def revert(self) -> None:
        with self._lock:
            logged = self._tries_log.read()
            # The tries this process's claims counted, perhaps not yet committed.
            own = self._fleet().own_tries() if self._shared else {}
            super().revert()
            self._check_records()
            self._repair_all()
            logged += [(key, tries, None) for key, tries in own.items()]
            self._replay_tries(logged)

    def _check_records(self) -> None:
        """Refuse a store holding a record whose ``_tries`` is unusable (``_records.py``)."""
        if self._window is None:
            check_records(self._where, self._data)
            return
        key = cast("Counts", self._storage).unusable_task()  # the store's tallies know
        if key is not None:
            refuse_record(self._where, key, self._data.get(key))

    def _repair_all(self) -> None:
        """Give records missing ``_done``/``_tries`` defaults; recount everything.

        Served on demand, each record gets them as it is read instead.
        """
        if self._window is not None:
            return
        data = self._data
        for key, record in data.items():
            if not isinstance(record, dict) or "_done" not in record or "_tries" not in record:
                repaired = with_defaults(record)
                if self._readonly:
                    self._set_in_view(key, repaired)
                else:
                    self[key] = repaired
        self._tally.recount(data)

    def _set_max_tries(self, max_tries: int) -> None:
        self._tally.max_tries = max_tries
        if not self._readonly and self._storage is not None:
            meta = self._storage.meta
            if meta.get("max_tries") != max_tries:
                self._storage.set_meta({**meta, "max_tries": max_tries})
        self._tally.recount(self._data)

    def _set_retry(self, delay: object, backoff: object, most: object) -> None:
        """Replace the retry settings given (not None), stored with the tracker."""
        if delay is None and backoff is None and most is None:
            return
        self._retry = RetryPolicy.checked(delay, backoff, most, self._retry)
        if not self._readonly and self._storage is not None:
            meta = self._storage.meta
            wanted = {**meta, **self._retry.meta()}
            if wanted != meta:
                self._storage.set_meta(wanted)

    def _commit(self, keys: list[str] | None, *, full: bool = False) -> list[str]:
        if keys is not None:
            keys = self._in_order(keys)  # the keys added before them first (the POD's rule)
        if self._shared:
            return self._fleet_commit(keys, full)
        # First make the log agree with what this commit writes (a reset, a
        # deleted task), so no later reopen undoes it.
        self._tries_log.settle(self._data, keys)
        left = self._commit_here(keys, full)
        if keys is None and not left:  # every try logged so far is now in the store
            try:
                self._tries_log.clear()
                clear = getattr(self._storage, "clear_claims_logs", None)
                if clear is not None:  # shared writers' logs, settled by this commit
                    clear()
            except OSError as exc:
                # The commit is durable; a log left full only repeats what it
                # holds (settle() made the two agree), so this costs nothing.
                log.warning(
                    "%s: could not empty %s: %s", self._where, self._tries_log.location, exc
                )
        return left

    def _commit_here(self, keys: list[str] | None, full: bool) -> list[str]:
        """The POD's commit, below the tracker's bookkeeping."""
        return PersistentOrderedDict._commit_as_given(self, keys, full=full)

    def _replay_tries(self, logged: list[tuple[str, int, dict[str, Any] | None]]) -> None:
        """Apply what was logged after the last sync (a crash cut it off).

        A logged outcome (a record ``run()`` logged when a try ended) comes
        back whole; a logged try raises the task's count to it.
        """
        for key, tries, outcome in logged:
            record = self._data.get(key)
            if outcome is not None:
                record = dict(outcome)
                record.setdefault("_done", False)
                record["_tries"] = max(tries, record.get("_tries", 0))
            elif record is None:
                record = {"_done": False, "_tries": tries}
            elif not isinstance(record.get("_tries"), int) or record["_tries"] >= tries:
                continue
            else:
                record["_tries"] = tries
            if self._readonly:
                self._set_in_view(key, record)
                self._tally.unchecked.add(key)
            else:
                self[key] = record
        self._tally.refresh(self._data)

    def _log_outcome(self, key: str) -> None:
        """Log the record of *key* as it is now: the outcome of a try, kept if the process dies.

        For :meth:`run`, once it has recorded a try's result or error: the
        try was counted in the log before the task ran, so its outcome goes
        there too, or a crash before the next sync would cost the try and
        lose the outcome. Does nothing for a record that cannot be encoded.
        """
        with self._lock:
            if self._shared:  # its claim ends once the next sync commits the outcome
                self._finished.add(key)
                return
            record = self._data.get(key)
            if not isinstance(record, dict) or record_problem(record) is not None:
                return
            try:
                encoded = encode_value(record, keep=False, key=key)
            except TypeError:
                return  # the sync will name it
            self._tries_log.append_record(key, record, encoded)

    def close(self) -> None:
        super().close()
        self._tries_log.close()

    def copy(
        self,
        path: str | os.PathLike[str] | Storage,
        file_size: int | None = None,
        gzipped: bool | None = None,
        *,
        name: str | None = None,
    ) -> None:
        super().copy(path, file_size, gzipped, name=name)
        with self._lock:
            served = isinstance(self._tally, ServedCounts)
            if served != (self._window is not None):  # loaded whole now, or served
                self._tally = self._new_tally(self._tally.max_tries)
                self._touched = self._tally.unchecked
                self._tally.recount(self._data)
        # Every try is in the new store now; the old store keeps its own log.
        self._tries_log.close()
        assert self._storage is not None
        self._tries_log = _tries.TriesLog(self._storage.side_log(_tries.NAME), readonly=False)

    # -- the seed API ---------------------------------------------------------------

    @property
    def retry_policy(self) -> RetryPolicy:
        """``retry_delay``, ``backoff`` and ``max_retry_delay``, as stored (see ``_retry.py``)."""
        return self._retry

    @property
    def max_tries(self) -> int | None:
        """The limit on tries per task (``None``: no limit)."""
        return self._tally.max_tries or None

    def add(self, key: Any) -> None:
        """Add a task: not done, never tried.

        Raises
        ------
        DuplicateKeyError
            If the task exists (a :class:`KeyError`).
        """
        with self._lock:
            if key in self:
                raise DuplicateKeyError(f"task {key!r} is already in {self._where}")
            if not self._shared:
                self[key] = {"_done": False, "_tries": 0}
            elif not self._fleet_add([self._new_key(key)]):  # another process added it
                raise DuplicateKeyError(f"task {key!r} is already in {self._where}")

    def add_if_absent(self, key: Any) -> None:
        """Add the task unless it exists."""
        with self._lock:
            if key in self:
                return
            if not self._shared:
                self[key] = {"_done": False, "_tries": 0}
            else:  # committed at once, unless another process added it first
                self._fleet_add([self._new_key(key)])

    @staticmethod
    def _new_key(key: Any) -> str:
        """*key* as stored, checked as a new key is (a shared add commits it at once)."""
        name: str = key if type(key) is str else normalize_key(key)
        if not name.isascii():
            check_new_key(name)
        return name

    def add_many(self, keys: Iterable[Any]) -> None:
        """Add many tasks at once (fast); all or nothing.

        Raises
        ------
        DuplicateKeyError
            If any task exists already or appears twice; then none is added.
        """
        normalized = [k if type(k) is str else normalize_key(k) for k in keys]
        for key in normalized:  # refuse bad keys before adding any
            if not key.isascii():
                check_new_key(key)
        self._check_writable()
        fresh = dict.fromkeys(normalized)
        if len(fresh) != len(normalized):
            raise DuplicateKeyError(
                f"task {_first_repeat(normalized)!r} is already in {self._where} or listed twice"
            )
        with self._lock:
            if self._shared:  # looked for under the store's lock, then added
                self._fleet_add(fresh, refuse=True)
                return
            clash = next((k for k in fresh if k in self._data), None)
            if clash is not None:
                raise DuplicateKeyError(
                    f"task {clash!r} is already in {self._where} or listed twice"
                )
            self._add_fresh(fresh)

    def add_many_if_absent(self, keys: Iterable[Any]) -> None:
        """Add the tasks that are not there yet, in order (fast)."""
        normalized = [k if type(k) is str else normalize_key(k) for k in keys]
        for key in normalized:  # refuse bad keys before adding any
            if not key.isascii():
                check_new_key(key)
        self._check_writable()
        with self._lock:
            if self._shared:  # looked for under the store's lock, then added
                self._fleet_add(normalized)
                return
            data = self._data
            self._add_fresh(dict.fromkeys(k for k in normalized if k not in data))

    def _add_fresh(self, keys: dict[str, None]) -> None:
        if self._shared:
            self._fleet_add(list(keys))
            return
        # Every new record encodes the same: skip the per-key encode and checks
        # of __setitem__ (an untried task has no status bits to count). The
        # caller holds the lock.
        self._add_new(fresh_records(keys), NEW_RECORD)

    def check(self, key: Any) -> bool:
        """True if the task is done (False if it does not exist)."""
        record = self._data.get(key if type(key) is str else normalize_key(key))
        return bool(record and record.get("_done"))

    done = check

    def check_or_add(self, key: Any) -> bool:
        """Add the task if missing; return whether it is done."""
        with self._lock:
            self.add_if_absent(key)
            return self.check(key)

    def tries(self, key: Any) -> int:
        """How many times the task was tried."""
        tries = self[key].get("_tries")
        return tries if type(tries) is int else 0

    def _set(self, key: Any, field: str, value: Any) -> None:
        if type(key) is not str:
            key = normalize_key(key)
        self._check_writable()
        with self._lock:  # read and change as one step: no sync in between
            self._hand_out(key)[field] = value  # marked dirty and recounted

    def increment_tries(self, key: Any) -> None:
        with self._lock:
            self._set(key, "_tries", self.tries(key) + 1)

    def decrement_tries(self, key: Any) -> None:
        """One try fewer, never below zero."""
        with self._lock:
            self._set(key, "_tries", max(0, self.tries(key) - 1))

    def reset_tries(self, key: Any) -> None:
        """Count no tries of the task, and drop any wait for its next try."""
        with self._lock:
            self._set(key, "_tries", 0)
            self._drop_wait(key)
            if self._shared:  # this process's own claims of it count no more
                self._fleet().forget_tries(key if type(key) is str else normalize_key(key))

    def mark_done(self, key: Any) -> None:
        self._set(key, "_done", True)

    def mark_not_done(self, key: Any) -> None:
        """To be done again: not done, and no wait for its next try."""
        with self._lock:
            self._set(key, "_done", False)
            self._drop_wait(key)

    def _drop_wait(self, key: Any) -> None:
        key = key if type(key) is str else normalize_key(key)
        if RETRY_AT in self._data[key]:
            self._hand_out(key).pop(RETRY_AT, None)

    def try_it(self, key: Any) -> bool:
        """Count a try and return True if the task should be tried now.

        Adds the task if missing. Returns False, counting nothing, if it is
        done, aborted, or already tried ``max_tries`` times. The try is logged
        to disk before this returns (see the class notes).
        """
        if type(key) is not str:
            key = normalize_key(key)
        self._check_writable()
        if self._shared:
            return self._fleet_try(key, self._tally.max_tries)
        with self._lock:  # one claim at a time: two threads never both get True
            if key not in self._data:
                self._add_new(fresh_records([key]), NEW_RECORD)
            record = self._hand_out(key)
            tries = record.get("_tries")
            tries = tries if type(tries) is int else 0
            if record.get("_done") or record.get("_aborted") or waiting(record):
                return False
            limit = self._tally.max_tries
            if limit and tries >= limit:
                return False
            try:
                self._tries_log.append(key, tries + 1)
            except OSError as exc:  # e.g. a full disk: no try is counted that is not logged
                raise type(exc)(
                    exc.errno,
                    f"{self._tries_log.location}: {exc.strerror}; the try of task {key!r} was "
                    "not counted (do not try it now)",
                ) from exc
            record["_tries"] = tries + 1
            return True

    # -- names of tastypy 0.0.3 ----------------------------------------------------

    def abort(self, key: Any) -> None:
        """Give up on the task for good (until :meth:`unabort`)."""
        self._set(key, "_aborted", True)

    def unabort(self, key: Any) -> None:
        self._check_writable()
        with self._lock:
            self[key].pop("_aborted", None)

    def aborted(self, key: Any) -> bool:
        return bool(self._data[key if type(key) is str else normalize_key(key)].get("_aborted"))

    def errors(self, key: Any) -> list[dict[str, Any]]:
        """The recorded failed attempts of a task, oldest first (see :meth:`run`)."""
        return list(self[key].get("_errors", []))

    def run(
        self,
        fn: Callable[[str], Any],
        keys: Iterable[Any] | None = None,
        *,
        workers: int = 1,
        progress: bool = True,
        executor: Any = None,
        timeout: float | None = None,
        retry_on: Any = None,
        giveup_on: Any = None,
        wait_for_retries: bool = True,
    ) -> RunSummary:
        """Run *fn* on every task that should be tried; see :func:`tastypy.tracker._run.run`."""
        return run(
            self,
            fn,
            keys,
            workers=workers,
            progress=progress,
            executor=executor,
            timeout=timeout,
            retry_on=retry_on,
            giveup_on=giveup_on,
            wait_for_retries=wait_for_retries,
        )


Tracker = ProgressTracker


def _first_repeat(keys: list[str]) -> str:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    return ""


def _claimed_tries(
    storage: Storage | None, data: dict[str, Any]
) -> list[tuple[str, int, dict[str, Any] | None]]:
    """Tries that shared writers' claims logs count (dead ones' too), as logged tries.

    A task missing from *data* counts only if its claim found no record
    committed (its writer died before committing it); else it was deleted
    since. Only the file engine keeps such logs; another engine has none.
    """
    counted = getattr(storage, "claims_log_tries", None)
    if counted is None:
        return []
    return [(key, tries, None) for key, (tries, new) in counted().items() if new or key in data]


MIN_LEASE, MAX_LEASE = 0.5, 86_400  # seconds: as the PostgreSQL engine's lease setter


def _check_lease(path: object, lease: float | None) -> None:
    """Refuse a bad *lease*, or one for a store that has no leases (files, memory)."""
    if lease is None:
        return
    if (
        isinstance(lease, bool)
        or not isinstance(lease, (int, float))
        or not (MIN_LEASE <= lease <= MAX_LEASE)
    ):
        raise ValueError(
            f"lease must be a number of seconds from {MIN_LEASE} to {MAX_LEASE}, not {lease!r}"
        )
    if not (isinstance(path, (str, os.PathLike)) and is_url(path)):
        raise SettingsError(
            "lease= is for a tracker on PostgreSQL (a postgresql:// URL): on one "
            "machine a claim lasts exactly as long as its process"
        )
