"""A tracker one of several processes share: tasks claimed across them (``docs/SHARED.md``).

:class:`FleetTasks` is a mixin of :class:`~._tracker.ProgressTracker`, used
when its store is shared (``Tracker(path, shared=True)``). The engine keeps
the claims (capability ``"claims"``); this module gives them the tracker's
meaning:

- ``try_it(key)`` takes the task's claim lock (refused at once if another
  live process holds it), then, taking no lock the others wait for, brings
  in what they committed and logged, refuses a task done, aborted or
  exhausted (counting every writer's logged tries), else claims it,
  counting the try in this process's claims log before returning True;
- a claim ends at :meth:`release`, at the sync that commits the task done
  or aborted or a finished attempt of ``run()`` (released after that
  commit), or when the process ends;
- tasks are added under the lock and committed at once, so a task another
  process added (and perhaps finished) is never overwritten by a fresh one;
- a dead process's logged tries are settled into the records (committed)
  before its log is removed.

Where the engine claims in one statement (PostgreSQL's ``claim_task`` and
``claim_tasks``: a lease, the try counted, the committed record read on the
server), ``try_it`` and ``run()``'s batches use that instead of the steps
above; a pending change of the task is synced first.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any, cast

import orjson

from .. import _lifecycle
from .._window import UNKNOWN
from ..errors import DuplicateKeyError
from ..storage import Storage
from ._records import NEW_RECORD, fresh_records
from ._retry import waiting

__all__ = ["FleetTasks"]

if TYPE_CHECKING:
    from ..storage.protocol import Claims as FleetStorage
    from ..storage.protocol import OnDemand
    from ._tries import TriesLog


class FleetTasks:
    """The shared-store half of a tracker (a mixin; see the module notes)."""

    _lock: threading.RLock
    _data: dict[str, Any]
    _storage: Storage | None
    _shared: bool
    _finished: set[str]  # attempts run() ended: released at the next full sync
    _held: bool  # automatic syncs suspended (the POD's hold())
    _dirty: dict[str, bool]
    _sync_at: int
    _tries_log: TriesLog
    _where: str
    _window: Any

    if TYPE_CHECKING:  # the POD's and the tracker's, which this mixin calls

        def _commit(self, keys: list[str] | None, *, full: bool = False) -> list[str]: ...

        def _commit_here(self, keys: list[str] | None, full: bool) -> list[str]: ...

        def _hand_out(self, key: str) -> Any: ...

        def _catch_up_shared(self) -> None: ...

        def _replay_tries(self, logged: list[tuple[str, int, dict[str, Any] | None]]) -> None: ...

        def _raise_bad(self, left: list[str]) -> None: ...

        def _auto_sync(self) -> None: ...

        def _add_new(self, values: dict[str, Any], encoding: bytes) -> None: ...

        def _known(self, key: str) -> Any: ...

        def _present(self, keys: list[str]) -> set[str] | dict[str, Any]: ...

        def __setitem__(self, key: Any, value: Any) -> None: ...

    def _fleet(self) -> FleetStorage:
        return cast("FleetStorage", self._storage)

    def _catch_up(self) -> None:
        """Bring in what the others committed (the engine's lock held): a sync of nothing."""
        self._catch_up_shared()

    def _fleet_try(self, key: str, limit: int) -> bool:
        """``try_it`` on a shared store: see the module notes."""
        storage = self._fleet()
        claim_task = getattr(storage, "claim_task", None)
        if claim_task is not None:
            return self._fleet_try_at_once(claim_task, key, limit)
        with self._lock:
            # Refusals first, without the store's lock: a task done here stays
            # done, and tries only grow.
            record = self._data.get(key)
            if record is not None:
                tries = record.get("_tries")
                if (
                    record.get("_done")
                    or record.get("_aborted")
                    or (limit and type(tries) is int and tries >= limit)
                    or waiting(record)
                ):
                    return False
            # Another live process holds it: refused with one system call. A
            # signal that cuts this short after the lock was taken leaves it
            # taken until this process's next try_it (take() lets it go then).
            if not storage.take(key):
                return False
            tries = -1
            # No signal between the claim and its record, and no automatic sync
            # either (one would release a claim whose record it does not see yet,
            # or call the tries settled before the record counts them): a sync
            # due runs once the record is set.
            held, self._held = self._held, True
            try:
                with _lifecycle.critical():
                    try:
                        # A signal handler's sync or try_it between take() and here
                        # let the lock go: take it again.
                        if not storage.taking(key) and not storage.take(key):
                            return False
                        with storage.claiming():
                            tries = self._claim(storage, key, limit)
                        if tries < 0:
                            return False
                        self._finished.discard(key)  # this try is not run()'s last one
                        if key in self._data:
                            self._hand_out(key)["_tries"] = tries
                        else:
                            self[key] = {"_done": False, "_tries": tries}
                    finally:
                        if tries < 0:
                            storage.untake(key)
            finally:
                self._held = held
            if not held and len(self._dirty) >= self._sync_at:
                self._auto_sync()
            return True

    def _fleet_try_at_once(self, claim_task: Any, key: str, limit: int) -> bool:
        """``try_it`` where the engine claims in one statement (PostgreSQL's ``claim_task``).

        The engine reads the committed record itself, so nothing is caught up
        first; the claimed task's record comes from the store. A change of it
        still pending here is synced first, so that the store's record is it.
        """
        with self._lock:
            record = self._known(key)  # the claim reads the store's record itself
            if isinstance(record, dict) and (_finished(record, limit) or waiting(record)):
                return False  # done here stays done, and tries only grow
            settled = self._settled_elsewhere()
            if record is None and settled.get(key) and self._unseen(key):
                return False  # another process settled it, as this one's last sync learned
            self._sync_pending([key])
            held, self._held = self._held, True
            try:
                with _lifecycle.critical():
                    tries, blob, behind = claim_task(key, limit)
                    if tries is None:
                        if behind:
                            self._catch_up()  # done elsewhere: so others may be too
                        return False
                    self._finished.discard(key)  # this try is not run()'s last one
                    settled.pop(key, None)
                    self._take_claimed(key, tries, blob)
                    if waiting(self._data.get(key)):  # the store's record says: not yet
                        self._unclaim([key])
                        return False
            finally:
                self._held = held
            if not held and len(self._dirty) >= self._sync_at:
                self._auto_sync()
            return True

    def _batch_claims(self) -> bool:
        """Whether the engine claims many tasks in one statement (PostgreSQL)."""
        return self._shared and hasattr(self._storage, "claim_tasks")

    def _fleet_try_many(self, keys: list[str], limit: int) -> list[str]:
        """``try_it`` for each of *keys* in one round trip: those claimed, in their order.

        Only where :meth:`_batch_claims`. As :meth:`_fleet_try_at_once`, each.
        """
        claim_tasks = self._fleet().claim_tasks  # type: ignore[attr-defined]
        with self._lock:
            candidates: list[str] = []
            settled = self._settled_elsewhere()
            for key in dict.fromkeys(keys):
                record = self._known(key)
                if record is None and settled.get(key) and self._unseen(key):
                    continue  # another process settled it, as this one's last sync learned
                if not (
                    isinstance(record, dict) and (_finished(record, limit) or waiting(record))
                ):
                    candidates.append(key)
            if not candidates:
                return []
            self._sync_pending(candidates)
            held, self._held = self._held, True
            try:
                with _lifecycle.critical():
                    rows = claim_tasks(candidates, limit)
                    for key, tries, blob in rows:
                        self._finished.discard(key)
                        settled.pop(key, None)
                        self._take_claimed(key, tries, blob)
                    early = {key for key, _t, _b in rows if waiting(self._data.get(key))}
                    if early:  # the store's records say: not yet
                        self._unclaim(list(early))
                        rows = [row for row in rows if row[0] not in early]
            finally:
                self._held = held
            if not rows and self._window is None:
                # None could be claimed: this view may be behind. (Served on
                # demand, the claim read the store: nothing here to bring up
                # to date but the values in memory, and the next sync does.)
                self._catch_up()
            elif not held and len(self._dirty) >= self._sync_at:
                self._auto_sync()
        claimed = {key for key, _tries, _blob in rows}
        return [key for key in candidates if key in claimed]

    def _settled_elsewhere(self) -> dict[str, bool]:
        """Served on demand: the tasks other processes settled, as this one's syncs learned.

        Key -> True if done or aborted (its record not in memory here: try_it
        need not ask the store). Loaded whole, the records in memory say so:
        empty.
        """
        settled = getattr(self._storage, "settled_tasks", None)
        if self._window is None or settled is None:
            return _NOTHING_SETTLED
        found: dict[str, bool] = settled()
        return found

    def _unseen(self, key: str) -> bool:
        """Served on demand: whether *key* is as the store has it (not in memory, not changed)."""
        return self._window is not None and self._window.peek(key) is UNKNOWN

    def _unclaim(self, keys: list[str]) -> None:
        """Give back claims of *keys* that were never worked on, their tries uncounted."""
        if not keys:
            return
        storage = self._fleet()
        with self._lock, _lifecycle.critical():
            storage.unclaim(keys)  # type: ignore[attr-defined]
            for key in keys:
                record = self._data.get(key)
                if isinstance(record, dict) and _tries_of(record) > 0:
                    self._hand_out(key)["_tries"] = _tries_of(record) - 1

    def _sync_pending(self, keys: list[str]) -> None:
        """Commit the changes still pending of *keys* (those that have one)."""
        pending = [key for key in keys if key in self._dirty]
        if pending:
            asked = set(pending)  # the commit may take keys added before them: those stay
            self._raise_bad([key for key in self._commit(pending) if key in asked])

    def _take_claimed(self, key: str, tries: int, blob: bytes | None) -> None:
        """Set *key*'s record after its claim: the store's one, with the try counted."""
        record: Any = None if blob is None else orjson.loads(blob)
        if isinstance(record, dict):
            record["_tries"] = tries
        elif record is not None:
            record = {"value": record, "_done": False, "_tries": tries}
        else:
            record = {"_done": False, "_tries": tries}
        if blob is not None and self._window is not None:
            self._window.found(key, blob)  # in its place: the sync need not ask where
        self[key] = record

    def _claim(self, storage: FleetStorage, key: str, limit: int) -> int:
        """Claim *key* (its lock taken), logging the try: its number, or -1 if refused."""
        self._catch_up()
        record = self._data.get(key)
        tries = 0
        if record is not None:
            if record.get("_done") or record.get("_aborted") or waiting(record):
                return -1
            found = record.get("_tries")
            tries = found if type(found) is int else 0
        tries = max(tries, storage.logged_tries(key))
        if (limit and tries >= limit) or storage.holder(key) is not None:
            return -1
        try:
            # "new": no record is committed (one added here and not yet synced
            # is not): a killed writer's try of it then brings it back.
            storage.claim(key, tries + 1, new=not storage.committed(key))
        except OSError as exc:  # e.g. a full disk: no try is counted that is not logged
            raise type(exc)(
                exc.errno,
                f"{exc.strerror}; the try of task {key!r} was not counted (do not try it now)",
            ) from exc
        return tries + 1

    def _fleet_add(self, keys: list[str] | dict[str, None], *, refuse: bool = False) -> list[str]:
        """Add the tasks among *keys* that no process has added, and commit them at once.

        Returns those added here. *refuse*: add none if any is there, and
        raise ``DuplicateKeyError`` naming it (``add_many``).
        """
        storage = self._fleet()
        with self._lock, _lifecycle.critical(), storage.locked():
            self._catch_up()
            wanted = keys if isinstance(keys, dict) else dict.fromkeys(keys)
            unique = list(wanted)
            if self._append_new(storage, unique, wanted):
                return unique
            there = self._present(unique)
            clash = next((key for key in unique if key in there), None) if refuse else None
            if clash is not None:
                raise DuplicateKeyError(
                    f"task {clash!r} is already in {self._where} or listed twice"
                )
            fresh = [key for key in unique if key not in there]
            if fresh:
                # One look for all the keys' tries counted by claims, one commit.
                tried = storage.logged_tries_of(fresh)
                held, self._held = self._held, True  # no automatic sync half-way
                try:
                    self._add_records(fresh, tried)
                finally:
                    self._held = held
                self._commit(fresh)
            return fresh

    def _append_new(self, storage: FleetStorage, keys: list[str], lookup: Collection[str]) -> bool:
        """Served on demand, *keys* none of which is known here: add them all in one COPY.

        False (nothing done) if one is in memory or changed here, or if the
        engine finds one in the store (or anything else that needs a sync's
        way: ``OnDemand.append_new``). Keys added here before them and not
        synced are committed first, to keep the order. The tries claims
        counted of them are kept. *lookup*: the keys, to look in. The
        caller holds the store's lock, and has caught up.
        """
        window = self._window
        if window is None or not keys or window.knows_any(lookup):
            return False
        ahead = window.additions()
        if ahead:  # added before these: they go to the store's end first (one that
            self._commit(ahead)  # cannot be written stays pending, as in any sync)
        tried = storage.logged_tries_of(keys)
        others = {key: orjson.dumps({"_done": False, "_tries": n}) for key, n in tried.items()}
        if not cast("OnDemand", window.engine).append_new(keys, NEW_RECORD, others):
            return False
        window.appended()
        return True

    def _add_records(self, keys: list[str], tried: dict[str, int]) -> None:
        """Add new records for *keys*, in order, with the tries *tried* counted (else 0)."""
        run: list[str] = []  # untried keys in a row: added in one go
        for key in keys:
            if key not in tried:
                run.append(key)
                continue
            if run:
                self._add_new(fresh_records(run), NEW_RECORD)
                run = []
            self[key] = {"_done": False, "_tries": tried[key]}
        if run:
            self._add_new(fresh_records(run), NEW_RECORD)

    def _fleet_adopt_tries_log(self) -> None:
        """Apply a plain writer's ``tries.jsonl``, commit what it says and empty it, at once.

        Under the store's commit lock, before any other shared writer can
        commit over those records: once shared writers have committed newer
        records, the log would be stale.
        """
        storage = self._fleet()
        with self._lock, _lifecycle.critical(), storage.locked():
            self._catch_up()
            logged = self._tries_log.read()
            self._replay_tries(logged)
            keys = [key for key in dict.fromkeys(k for k, _t, _r in logged) if key in self._data]
            if keys:
                self._commit(keys)
            self._tries_log.clear()

    def _fleet_commit(self, keys: list[str] | None, full: bool) -> list[str]:
        """A sync of a shared tracker: dead writers' tries settled, finished claims released.

        The commit lock is held exclusively only for the commit itself (and,
        when a dead writer's tries are to be settled, from reading them to
        removing its log), so that other processes go on claiming meanwhile.
        """
        storage = self._fleet()
        storage.untake_left()  # a try_it that a signal cut short holds nothing after a sync
        if keys is not None and not keys:  # a sync of nothing: no claims to look at
            return self._commit_here(keys, full)
        dead: dict[str, dict[str, int]] = {}
        if keys is None:
            with storage.claiming():
                dead = storage.dead_claims()
        if dead:
            with storage.locked():
                dead = storage.dead_claims()  # what the logs count now, nobody committing
                self._catch_up()  # the records as committed, before raising their tries
                self._settle(dead)
                left = self._commit_here(keys, full)
                unsaved = set(left)
                for writer, counted in dead.items():
                    if unsaved.isdisjoint(counted):  # its tries are all committed now
                        storage.forget_writer(writer)
        else:
            left = self._commit_here(keys, full)
        if keys is None and not left:
            # After the commit: another process that can claim a task sees its record.
            self._release_finished(storage)
            storage.settled()  # every try this process counted is in the store now
        return left

    def _settle(self, dead: dict[str, dict[str, int]]) -> None:
        """Raise the records' tries to what dead writers' logs count (committed next).

        Automatic syncs wait meanwhile: the sync this is part of commits them
        all, and one set off in the middle would settle the same logs again.
        """
        storage = self._fleet()
        held, self._held = self._held, True
        try:
            for counted in dead.values():
                for key, tries in counted.items():
                    record = self._data.get(key)
                    if record is None:
                        # Never committed (its writer died first: the try counts, or
                        # max_tries would not hold), or deleted since (it does not).
                        if storage.claimed_new(key):
                            self[key] = {"_done": False, "_tries": tries}
                        continue
                    found = record.get("_tries")
                    if type(found) is int and found < tries:
                        self._hand_out(key)["_tries"] = tries
        finally:
            self._held = held

    def _release_finished(self, storage: FleetStorage) -> None:
        """End the claims whose work is committed: done, aborted, or an attempt that ended."""
        finished, data = self._finished, self._data
        ended = []
        for key in storage.held:
            record = data.get(key)
            if (
                key in finished
                or not isinstance(record, dict)
                or record.get("_done")
                or record.get("_aborted")
            ):
                ended.append(key)
        storage.release_many(ended)
        finished.clear()

    def release(self, key: Any) -> None:
        """Let another process try *key*: sync it, then end this process's claim of it.

        Only for a shared tracker; a task this process does not hold is left alone.
        """
        if not self._shared:
            return
        storage = self._fleet()
        with self._lock, _lifecycle.critical(), storage.locked():
            if key in storage.held:
                if key in self._data and key in self._commit([key]):
                    # Not committed (a value that cannot be written): the claim
                    # stays, and with it the count of its tries.
                    self._raise_bad([key])
                storage.release(key)

    def holders(self) -> Iterator[str]:
        """The keys this process holds (shared trackers)."""
        return iter(sorted(self._fleet().held)) if self._shared else iter(())


_NOTHING_SETTLED: dict[str, bool] = {}  # never written: only read, and popped from


def _tries_of(record: Any) -> int:
    tries = record.get("_tries") if isinstance(record, dict) else 0
    return tries if type(tries) is int else 0


def _finished(record: dict[str, Any], limit: int) -> bool:
    """Whether *record* is done, aborted, or (with *limit*) out of tries."""
    return bool(record.get("_done") or record.get("_aborted")) or bool(
        limit and _tries_of(record) >= limit
    )
