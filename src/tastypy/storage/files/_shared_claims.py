"""A shared writer's claims API (capability "claims"): a mixin of :class:`SharedFileStorage`.

A task is held by a byte lock in ``claims/`` (:mod:`._claim_locks`) and by
the claim lines of this writer's log in ``writers/``, which the others read
(:mod:`._claims`). ``docs/SHARED.md`` gives the design; the tracker's
``FleetTasks`` gives these calls their meaning.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ._claim_locks import AVAILABLE as CLAIM_LOCKS
from ._claims import claim_line, release_line, reset_line

if TYPE_CHECKING:
    from ._claim_locks import ClaimLocks
    from ._claims import Fleet
    from ._commit_lock import CommitLock
    from ._writers import WriterEntry

__all__ = ["WriterClaims"]


class WriterClaims:
    """The claims of one shared writer (a mixin; the writer's state is its own)."""

    _fleet: Fleet
    _writer: WriterEntry | None
    _claim_locks: ClaimLocks
    _commit_lock: CommitLock | None
    _hash: dict[str, int]
    _held: set[str]  # keys this open claimed and has not released
    _tries: dict[str, int]  # key -> tries this open's claims counted
    _fresh: set[str]  # held keys claimed "new", not said committed since
    _taking: str | None  # taken, neither claimed nor untaken yet
    _settled: bool  # every try this open's claims counted is committed

    if TYPE_CHECKING:

        def _check_writable(self) -> None: ...

        def locked(self) -> contextlib.AbstractContextManager[None]: ...

    def claiming(self) -> contextlib.AbstractContextManager[None]:
        """What a claim is made under, with every writer's claims read.

        Where a claim is a byte lock (:meth:`take`), no commit lock: the
        catch-up inside reads what is published as durable, and other
        writers claim and commit meanwhile. Elsewhere the logs alone decide,
        so the commit lock is held exclusively.
        """
        self._check_writable()
        if CLAIM_LOCKS:
            self._fleet.refresh()
            return contextlib.nullcontext()
        return self.locked()

    def take(self, key: str) -> bool:
        """Lock *key* against the other writers' claims; False if a live one holds it.

        No commit lock is needed. Follow with :meth:`claim`, or :meth:`untake`.
        """
        self._check_writable()
        self.untake_left()
        self._taking = key
        taken = self._claim_locks.take(key)
        if not taken:
            self._taking = None
        return taken

    def taking(self, key: str) -> bool:
        """Whether *key* is taken (by :meth:`take`) and neither claimed nor let go since."""
        return self._taking == key

    def untake_left(self) -> None:
        """Undo a :meth:`take` that an exception cut short before its claim or untake."""
        left = self._taking
        if left is not None:
            self.untake(left)

    def untake(self, key: str) -> None:
        """Undo a :meth:`take` that did not lead to a claim (a claim held stays)."""
        self._taking = None
        if key not in self._held:
            self._claim_locks.drop((key,))

    def committed(self, key: str) -> bool:
        """Whether a record of *key* is committed, as of this open's last catch-up."""
        return key in self._hash

    def claimed_new(self, key: str) -> bool:
        """Whether another writer's claim of *key*, not released, found no record of it."""
        return self._fleet.claimed_new(key)

    def clear_claims_logs(self) -> None:
        """Nothing to do here: a shared writer settles dead writers' logs at its syncs."""

    def holder(self, key: str) -> str | None:
        """The other live writer whose log holds *key* (inside :meth:`claiming`), or None."""
        return self._fleet.holder(key)

    def logged_tries(self, key: str) -> int:
        """The most tries any writer's unreleased claims counted for *key* (0 if none)."""
        return max(self._fleet.tries(key), self._tries.get(key, 0))

    def logged_tries_of(self, keys: list[str]) -> dict[str, int]:
        """:meth:`logged_tries` of each of *keys* that has any."""
        found = {key: self.logged_tries(key) for key in keys}
        return {key: tries for key, tries in found.items() if tries}

    def claim(self, key: str, tries: int, *, new: bool = False) -> None:
        """Claim *key* for this open, its *tries* th try (inside :meth:`claiming`).

        *new*: no record of *key* is committed. Written before this returns,
        so it survives this process being killed.
        """
        assert self._writer is not None
        self._writer.append(claim_line(key, tries, new))
        self._settled = False
        self._held.add(key)
        self._taking = None
        if new:
            self._fresh.add(key)
        else:
            self._fresh.discard(key)
        if tries > self._tries.get(key, 0):
            self._tries[key] = tries

    def release(self, key: str) -> None:
        """End this open's claim of *key*, if it has one."""
        if key not in self._held:
            return
        assert self._writer is not None
        with self._log_lock():
            self._writer.append(release_line(key))
        self._held.discard(key)
        self._fresh.discard(key)
        self._tries.pop(key, None)  # committed before the release: the record counts them
        self._claim_locks.drop((key,))  # after the log says so: never held by a log alone

    def release_many(self, keys: list[str]) -> None:
        """End this open's claims of *keys* (those it has), in one write."""
        mine = [key for key in keys if key in self._held]
        if not mine:
            return
        assert self._writer is not None
        with self._log_lock():
            self._writer.append(b"".join(release_line(key) for key in mine))
        self._held.difference_update(mine)
        self._fresh.difference_update(mine)
        tries = self._tries
        for key in mine:  # committed before the release: the records count them
            tries.pop(key, None)
        self._claim_locks.drop(mine)

    def _log_lock(self) -> contextlib.AbstractContextManager[None]:
        """What a release line is written under: nothing where claims are byte locks.

        The line goes before the byte lock is let go, so no log claims a key
        another writer has taken since. Without byte locks the logs alone
        decide, read under the commit lock: the line is written under it.
        """
        assert self._commit_lock is not None
        return self._commit_lock.held() if not CLAIM_LOCKS else contextlib.nullcontext()

    @property
    def held(self) -> frozenset[str]:
        """The keys this open holds."""
        return frozenset(self._held)

    def settled(self) -> None:
        """Every try this open's claims counted is committed: its log may go at close.

        The log says so of each task it claimed as new and still holds: a
        claim line without "new" (so that, this process killed later, a task
        deleted since does not come back).
        """
        fresh = self._fresh
        done = [key for key in fresh if key in self._held and key in self._hash]
        if done:
            assert self._writer is not None
            with self._log_lock():
                self._writer.append(b"".join(claim_line(k, self._tries.get(k, 0)) for k in done))
        fresh.difference_update(done)
        fresh.intersection_update(self._held)
        self._settled = True

    def forget_tries(self, key: str) -> None:
        """Count no more the tries this open's claims gave *key* (its tries were reset).

        A line in the log says so at once, so that the reset holds even if
        this process is killed before it releases the task.
        """
        if self._tries.pop(key, None) is not None:
            assert self._writer is not None
            with self._log_lock():
                self._writer.append(reset_line(key))

    def own_tries(self) -> dict[str, int]:
        """Each key this open's claims counted tries for, with the most counted."""
        return dict(self._tries)

    def dead_claims(self) -> dict[str, dict[str, int]]:
        """Dead writers whose logs count tries: writer -> {key: tries} (inside :meth:`locked`)."""
        return self._fleet.dead()

    def forget_writer(self, writer: str) -> None:
        """Remove dead *writer*'s log, what it counts being settled (inside :meth:`locked`)."""
        self._fleet.forget(writer)
