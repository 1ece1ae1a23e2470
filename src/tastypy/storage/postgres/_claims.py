"""Claims of a PostgreSQL store's tasks: leases in server time, with fencing tokens.

:class:`LeasedClaims` is the capability ``"claims"`` of
:class:`~._engine.PostgresStorage` (a mixin). A task's claim is its row of
``tastypy.claims`` (``docs/FORMAT.md``):

- :meth:`take` is one statement: the row becomes this open's if nobody
  holds it, its holder's lease ran out, or this open holds it already. Each
  new holder raises the row's ``token``. The lease lasts :attr:`lease`
  seconds of the *server's* clock, renewed while this open holds claims by
  a heartbeat thread (``_heartbeat.py``); a process killed, paused or cut
  off stops renewing and loses its claims when the lease ends.
- :meth:`claim` counts the try in the row (``tries`` only grows) before it
  returns, so a try survives the process; the row outlives the claim, and
  :meth:`logged_tries` reads it.
- **Fencing.** A sync (``_engine.py``) writes a task this open claimed only
  while the row still carries this open's token: once another process has
  claimed the task again, the late holder's changes to it are dropped, its
  memory takes the store's record, and a warning names the task
  (:attr:`fenced` lists them). The new holder's state is never undone nor
  its tries counted twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._heartbeat import Heartbeat
from ._link import Connection, Link
from ._schema import q
from ._target import Target, stored_key, user_key

__all__ = ["DEFAULT_LEASE", "LeasedClaims"]

log = logging.getLogger("tastypy")

DEFAULT_LEASE = 60.0  # seconds

_TAKE = q(
    """
    INSERT INTO {s}.claims AS c (store, key, token, holder, expires, claimed)
    VALUES (%s, %s, 1, %s, now() + make_interval(secs => %s), now())
    ON CONFLICT (store, key) DO UPDATE SET
        token = CASE WHEN c.holder = EXCLUDED.holder THEN c.token ELSE c.token + 1 END,
        holder = EXCLUDED.holder,
        expires = EXCLUDED.expires,
        claimed = CASE WHEN c.holder = EXCLUDED.holder THEN c.claimed ELSE now() END
    WHERE c.holder IS NULL OR c.expires <= now() OR c.holder = EXCLUDED.holder
    RETURNING token, tries
    """
)
# One statement for a whole try_it: the task's committed record must be to do
# and under max_tries, counting every claim's tries; its row of claims must be
# free, run out, or this open's. Then the lease is taken, the try counted and
# the record handed back (the caller may hold an older one).
#
# The claim row keeps its own copy of the record's state, written by the same
# transaction that commits the record (_engine.py). The conflict branch checks
# that copy, on the row's latest version, under its lock: the record was read
# from the statement's snapshot, which may predate a commit that finished the
# task and let go of its claim since. (A task finished without ever being
# claimed has no row, and only the snapshot's record speaks for it.)
#
# The statement done again with the same nonce (its connection was lost and
# made again) counts nothing twice.
_CLAIM_TASKS = q(
    """
    WITH facts AS (
        SELECT w.k, coalesce(r.tries, 0) AS tries, coalesce(r.state, 0) AS state,
               r.key IS NULL AS new, r.value
        FROM unnest(%(keys)s::text[]) AS w(k)
        LEFT JOIN {s}.records r ON r.store = %(store)s AND r.key = w.k AND r.value IS NOT NULL
    ), taken AS (
        INSERT INTO {s}.claims AS c
            (store, key, token, holder, expires, claimed, tries, new, nonce, state)
        SELECT %(store)s, f.k, 1, %(me)s, now() + make_interval(secs => %(lease)s), now(),
               f.tries + 1, f.new, %(nonce)s, 0
        FROM facts f
        WHERE f.state = 0 AND (%(limit)s = 0 OR f.tries < %(limit)s)
        ORDER BY f.k
        ON CONFLICT (store, key) DO UPDATE SET
            token = CASE WHEN c.holder = EXCLUDED.holder THEN c.token ELSE c.token + 1 END,
            holder = EXCLUDED.holder,
            expires = EXCLUDED.expires,
            claimed = now(),
            tries = CASE WHEN c.nonce = EXCLUDED.nonce THEN c.tries
                         ELSE GREATEST(c.tries, EXCLUDED.tries - 1) + 1 END,
            new = EXCLUDED.new,
            nonce = EXCLUDED.nonce
        WHERE c.nonce = EXCLUDED.nonce
           OR ((c.holder IS NULL OR c.expires <= now() OR c.holder = EXCLUDED.holder)
               AND c.state = 0
               AND (%(limit)s = 0 OR GREATEST(c.tries, EXCLUDED.tries - 1) < %(limit)s))
        RETURNING c.key, c.tries, c.token
    )
    SELECT f.k, t.tries, t.token, f.value, f.state, f.tries
    FROM facts f LEFT JOIN taken t ON t.key = f.k
    """
)
# Undo claims that were never worked on (a run that stopped): the try uncounted.
_UNCLAIM = q(
    "UPDATE {s}.claims SET holder = NULL, expires = '-infinity', tries = greatest(tries - 1, 0) "
    "WHERE store = %s AND key = ANY(%s) AND holder = %s"
)
_LET_GO = q(
    "UPDATE {s}.claims SET holder = NULL, expires = '-infinity' "
    "WHERE store = %s AND key = ANY(%s) AND holder = %s"
)


def _nonce() -> int:
    """What tells a claim statement done again (its connection lost) from a new claim."""
    return int.from_bytes(os.urandom(8), "big") >> 1


def holder_name() -> str:
    """Who this open is, in ``tastypy.claims.holder``: ``host:pid:nonce``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class LeasedClaims:
    """Capability ``"claims"`` of a PostgreSQL store (see the module notes)."""

    _id: int
    _link: Link
    _target: Target
    _seen: dict[str, int]

    if TYPE_CHECKING:

        def _check_writable(self) -> None: ...

        @property
        def location(self) -> str: ...

    def _init_claims(self) -> None:
        self._me = holder_name()
        self._lease = DEFAULT_LEASE
        self._tokens: dict[str, int] = {}  # key -> token of this open's claim (taken or held)
        self._taking: set[str] = set()  # taken, not claimed yet
        self._counted: dict[str, int] = {}  # key -> tries this open's claims counted
        self._logged: dict[str, int] = {}  # key -> tries its row counted, at the last take
        self._new: dict[str, bool] = {}  # key -> the dead claims' "new" (dead_claims)
        self.fenced: list[str] = []  # keys whose changes a sync dropped: claimed again since
        self._heartbeat: Heartbeat | None = None

    # -- the lease ----------------------------------------------------------

    @property
    def lease(self) -> float:
        """Seconds a claim lives without renewal (server time); renewed every third of it."""
        return self._lease

    @lease.setter
    def lease(self, seconds: float) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not (0.5 <= seconds <= 86_400)
        ):
            raise ValueError(
                f"lease must be a number of seconds from 0.5 to 86400, not {seconds!r}"
            )
        self._lease = float(seconds)
        if self._heartbeat is not None:
            self._heartbeat.lease = self._lease

    def _beat(self) -> None:
        if self._heartbeat is None or not self._heartbeat.alive:
            self._heartbeat = Heartbeat(self._target, self._id, self._me, self._lease)

    # -- taking and claiming ------------------------------------------------

    @contextlib.contextmanager
    def claiming(self) -> Iterator[None]:
        """Nothing to hold: the lease taken by :meth:`take` excludes the others."""
        yield

    def take(self, key: str) -> bool:
        """Lease *key* for this open, unless another live holder has it: one statement."""
        self._check_writable()

        def work(conn: Connection) -> tuple[Any, ...] | None:
            return conn.execute(
                _TAKE, (self._id, stored_key(key), self._me, self._lease)
            ).fetchone()

        row = self._link.run(work)
        if row is None:
            return False
        self._beat()
        self._tokens[key] = int(row[0])
        self._logged[key] = int(row[1])
        if key not in self._counted:
            self._taking.add(key)
        return True

    def claim_task(self, key: str, limit: int) -> tuple[int | None, bytes | None, bool]:
        """``try_it`` in one statement: lease *key*, if it is to be tried, and count the try.

        The task is to be tried if its committed record is neither done nor
        aborted, has fewer than *limit* tries (0: no limit) counting every
        claim's, and no other live holder has it. Returns the try's number
        (None if refused), the committed record's JSON (None if there is
        none), and whether the task is finished there (done, aborted, or out
        of tries): then the caller's view of the store is behind.
        """
        found = self._claim([key], limit)
        _key, tries, blob, finished = found[0]
        return tries, blob, finished

    def claim_tasks(self, keys: list[str], limit: int) -> list[tuple[str, int, bytes | None]]:
        """:meth:`claim_task` for many *keys* in one statement: those claimed, in no order.

        Each with its try's number and the committed record's JSON.
        """
        return [
            (key, tries, blob)
            for key, tries, blob, _finished in self._claim(list(dict.fromkeys(keys)), limit)
            if tries is not None
        ]

    def _claim(
        self, keys: list[str], limit: int
    ) -> list[tuple[str, int | None, bytes | None, bool]]:
        """Each of *keys* (no two alike): its try's number or None, its record, finished."""
        self._check_writable()
        if not keys:
            return []
        params = {
            "store": self._id,
            "me": self._me,
            "lease": self._lease,
            "limit": limit,
            "nonce": _nonce(),
            "keys": [stored_key(key) for key in keys],
        }

        def work(conn: Connection) -> list[tuple[Any, ...]]:
            return conn.execute(_CLAIM_TASKS, params).fetchall()

        rows = self._link.run(work)
        found: list[tuple[str, int | None, bytes | None, bool]] = []
        for stored, tries, token, blob, state, counted in rows:
            key = user_key(stored)
            if tries is None:
                finished = state != 0 or bool(limit and counted >= limit)
                found.append((key, None, blob, finished))
                continue
            self._tokens[key] = int(token)
            self._taking.discard(key)
            self._counted[key] = self._logged[key] = int(tries)
            found.append((key, int(tries), blob, False))
        if any(tries is not None for _k, tries, _b, _f in found):
            self._beat()
        return found

    def unclaim(self, keys: list[str]) -> None:
        """End this open's claims of *keys*, which were never worked on: each try uncounted."""
        mine = [key for key in keys if key in self._tokens]
        if not mine:
            return

        def work(conn: Connection) -> None:
            conn.execute(_UNCLAIM, (self._id, [stored_key(key) for key in mine], self._me))

        self._link.run(work)
        for key in mine:
            self._forget(key)
            self._logged.pop(key, None)

    def taking(self, key: str) -> bool:
        """Whether *key* is taken and neither claimed nor let go since."""
        return key in self._taking

    def untake(self, key: str) -> None:
        """Let go of a :meth:`take` not followed by a claim (a claim held stays)."""
        if key in self._taking:
            self._taking.discard(key)
            self._let_go([key])

    def untake_left(self) -> None:
        """Let go of takes that an exception cut short."""
        if self._taking:
            left, self._taking = list(self._taking), set()
            self._let_go(left)

    def logged_tries(self, key: str) -> int:
        """The most tries any claim counted for *key* (its row, as of this open's take)."""
        if key in self._logged:
            return max(self._logged[key], self._counted.get(key, 0))

        def work(conn: Connection) -> int:
            row = conn.execute(
                q("SELECT tries FROM {s}.claims WHERE store = %s AND key = %s"),
                (self._id, stored_key(key)),
            ).fetchone()
            return int(row[0]) if row else 0

        return self._link.run(work)

    def logged_tries_of(self, keys: list[str]) -> dict[str, int]:
        """:meth:`logged_tries` of each of *keys* that has any, in one or two round trips.

        The store's tried claims are read whole when there are fewer of them
        than *keys* (adding many new tasks: the usual case, no array of all
        the keys sent); else only those of *keys*.
        """
        wanted = len(keys)

        def work(conn: Connection) -> dict[str, int]:
            rows = conn.execute(
                q("SELECT key, tries FROM {s}.claims WHERE store = %s AND tries > 0 LIMIT %s"),
                (self._id, wanted + 1),
            ).fetchall()
            if len(rows) > wanted:
                rows = conn.execute(
                    q(
                        "SELECT key, tries FROM {s}.claims "
                        "WHERE store = %s AND key = ANY(%s) AND tries > 0"
                    ),
                    (self._id, [stored_key(key) for key in keys]),
                ).fetchall()
            return {user_key(stored): int(tries) for stored, tries in rows}

        tried = self._link.run(work) if keys else {}
        found = {key: tried[key] for key in keys if key in tried}
        for key in keys:
            if key in self._logged:  # as logged_tries: this open's take of it knows best
                found[key] = self.logged_tries(key)
        return {key: tries for key, tries in found.items() if tries}

    def claim(self, key: str, tries: int, *, new: bool = False) -> None:
        """Count the *tries* th try of *key* in its row, durably, before returning."""
        self._check_writable()

        token = self._tokens.get(key)

        def work(conn: Connection) -> int:
            done = conn.execute(
                q(
                    "UPDATE {s}.claims SET tries = GREATEST(tries, %s), new = %s "
                    "WHERE store = %s AND key = %s AND holder = %s AND token = %s"
                ),
                (tries, new, self._id, stored_key(key), self._me, token),
            )
            return done.rowcount

        if token is None or self._link.run(work) != 1:
            self._forget(key)
            raise InterruptedError(
                0, f"{self.location}: the lease of task {key!r} ran out before its try was logged"
            )
        self._taking.discard(key)
        self._counted[key] = max(tries, self._counted.get(key, 0))
        self._logged[key] = max(tries, self._logged.get(key, 0))

    def committed(self, key: str) -> bool:
        """Whether a record of *key* is committed, as of this open's last sync."""
        return key in self._seen

    def claimed_new(self, key: str) -> bool:
        """Whether the unreleased claim of *key* that ran out found no record committed."""
        return self._new.get(key, False)

    def holder(self, key: str) -> str | None:
        """The other live holder of *key*, or None."""

        def work(conn: Connection) -> str | None:
            row = conn.execute(
                q(
                    "SELECT holder FROM {s}.claims WHERE store = %s AND key = %s "
                    "AND holder <> %s AND expires > now()"
                ),
                (self._id, stored_key(key), self._me),
            ).fetchone()
            return str(row[0]) if row else None

        return self._link.run(work)

    # -- ending claims ------------------------------------------------------

    def release(self, key: str) -> None:
        """End this open's claim of *key*, if it has one."""
        self.release_many([key])

    def release_many(self, keys: list[str]) -> None:
        """End this open's claims of *keys* (those it has), in one statement."""
        mine = [key for key in keys if key in self._tokens]
        if mine:
            self._let_go(mine)

    def _let_go(self, keys: list[str]) -> None:

        stored = [stored_key(key) for key in keys]

        def work(conn: Connection) -> None:
            conn.execute(_LET_GO, (self._id, stored, self._me))

        self._link.run(work)
        for key in keys:
            self._forget(key)

    def _forget(self, key: str) -> None:
        self._tokens.pop(key, None)
        self._taking.discard(key)
        self._counted.pop(key, None)

    @property
    def held(self) -> frozenset[str]:
        """The keys this open holds (taken or claimed, as far as it knows)."""
        return frozenset(self._tokens)

    def settled(self) -> None:
        """Nothing to do: every try is in its row already, which outlives the claim."""

    def forget_tries(self, key: str) -> None:
        """Count no more the tries claims gave *key* (a reset): its row's count goes to 0."""

        def work(conn: Connection) -> None:
            conn.execute(
                q("UPDATE {s}.claims SET tries = 0 WHERE store = %s AND key = %s"),
                (self._id, stored_key(key)),
            )

        self._link.run(work)
        self._counted.pop(key, None)
        self._logged.pop(key, None)

    def own_tries(self) -> dict[str, int]:
        """Each key this open's claims counted tries for, with the most counted."""
        return dict(self._counted)

    def dead_claims(self) -> dict[str, dict[str, int]]:
        """Claims whose lease ran out unreleased, by holder: {holder: {key: tries}}."""

        def work(conn: Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                q(
                    "SELECT holder, key, tries, new FROM {s}.claims WHERE store = %s "
                    "AND holder IS NOT NULL AND holder <> %s AND expires <= now() AND tries > 0"
                ),
                (self._id, self._me),
            ).fetchall()

        dead: dict[str, dict[str, int]] = {}
        for holder, stored, tries, new in self._link.run(work):
            key = user_key(stored)
            dead.setdefault(str(holder), {})[key] = int(tries)
            self._new[key] = bool(new)
        return dead

    def forget_writer(self, writer: str) -> None:
        """End the claims of *writer* whose lease ran out: their tries are committed now."""

        def work(conn: Connection) -> None:
            conn.execute(
                q(
                    "UPDATE {s}.claims SET holder = NULL WHERE store = %s AND holder = %s "
                    "AND expires <= now()"
                ),
                (self._id, writer),
            )

        self._link.run(work)

    def claims_log_tries(self) -> dict[str, tuple[int, bool]]:
        """Every task's most tries counted by claims, with whether its claim found no record."""

        def work(conn: Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                q(
                    "SELECT key, tries, new FROM {s}.claims WHERE store = %s AND tries > 0 "
                    "ORDER BY key"  # the order a reader adds the tasks of claims alone in
                ),
                (self._id,),
            ).fetchall()

        return {user_key(k): (int(t), bool(n)) for k, t, n in self._link.run(work)}

    # -- fencing (called by the sync, inside its transaction) ---------------

    def _lost(self, conn: Connection, keys: list[str]) -> list[str]:
        """Which of *keys* (held here) another process has claimed since: their token moved on."""

        held = [key for key in keys if key in self._tokens]
        if not held:
            return []
        rows = conn.execute(
            q("SELECT key, token, holder FROM {s}.claims WHERE store = %s AND key = ANY(%s)"),
            (self._id, [stored_key(key) for key in held]),
        ).fetchall()
        now = {user_key(k): (int(t), h) for k, t, h in rows}
        return [
            key
            for key in held
            if key not in now or now[key][0] != self._tokens[key] or now[key][1] != self._me
        ]

    def _fenced(self, keys: list[str]) -> None:
        """After a sync: *keys* were dropped from it (claimed again elsewhere); say so."""
        for key in keys:
            self._forget(key)
        self.fenced += keys
        log.warning(
            "tastypy: %s: this process's lease of %d task(s) ran out and another process "
            "claimed them since (%s); their changes here were not written, and they hold "
            "the other process's records now",
            self.location,
            len(keys),
            ", ".join(repr(key) for key in keys[:5]) + (" ..." if len(keys) > 5 else ""),
        )

    def _stop_claims(self) -> None:
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()
