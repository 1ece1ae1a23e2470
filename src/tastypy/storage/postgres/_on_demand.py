"""Reading a PostgreSQL store on demand (capability ``"on_demand"``): stores larger than memory.

:class:`OnDemandReads` is a mixin of :class:`~._engine.PostgresStorage`. The
POD's window (``_window.py``) asks it for values by key, for pages of the
store's order, and for its size; the engine then remembers what it saw
(``_seen``, so that a value only read is never written back over another
writer's change) only of the keys the window keeps, and a sync looks the
others up in its own transaction (:meth:`_live`), and reads of the others'
changes only what concerns the keys it keeps (:meth:`_theirs_seen`).
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import TYPE_CHECKING, Any

from ...errors import NotAStoreError
from ._link import Connection, Link
from ._schema import q, size_sql
from ._target import KEY_LIST, stored_key, stored_keys

__all__ = ["NOT_READ", "OnDemandReads"]

NOT_READ = b""  # the value of another's change an open served on demand did not read


class OnDemandReads:
    """Capability ``"on_demand"`` of a PostgreSQL store (see the module notes)."""

    _id: int
    _link: Link
    _seen: dict[str, int]
    _resident: Container[str] | None
    _layout: int
    _version: int
    readonly: bool

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

        def _key(self, stored: str) -> str: ...

        def _read_all(self, conn: Connection) -> tuple[int, int, dict[str, Any], list[Any]]: ...

        def _head(self, conn: Connection, columns: str) -> tuple[Any, ...]: ...

        @property
        def location(self) -> str: ...

    def forget(self, keys: Iterable[str]) -> None:
        """The caller no longer keeps the values of *keys* (on demand)."""
        seen = self._seen
        for key in keys:
            seen.pop(key, None)

    def fetch(self, keys: list[str]) -> dict[str, bytes]:
        """The committed JSON of those of *keys* the store holds now, each as written."""
        self._check_open()
        if not keys:
            return {}
        return self._link.run(lambda conn: self._values(conn, keys))

    def page(
        self, after: int, limit: int, *, before: int | None = None, backwards: bool = False
    ) -> list[tuple[int, str, bytes]]:
        """Up to *limit* of the store's ``(pos, key, JSON)``, in order, after position *after*.

        *before*: only positions below it. *backwards*: in reverse order,
        below *after*. Each page is one query: what it shows is as of then
        (keyset pages, no cursor).
        """
        self._check_open()
        bounds: tuple[int, ...]
        if backwards:
            where, bounds = "pos < %s ORDER BY pos DESC", (after,)
        elif before is None:
            where, bounds = "pos > %s ORDER BY pos", (after,)
        else:
            where, bounds = "pos > %s AND pos < %s ORDER BY pos", (after, before)

        def work(conn: Connection) -> list[Any]:
            return conn.execute(
                q(
                    "SELECT pos, key, value FROM {s}.records "
                    "WHERE store = %s AND value IS NOT NULL AND " + where + " LIMIT %s"
                ),
                (self._id, *bounds, limit),
            ).fetchall()

        return [(int(pos), self._key(stored), blob) for pos, stored, blob in self._link.run(work)]

    def rows(self) -> list[tuple[str, bytes]]:
        """Every ``(key, JSON)`` of the store, in order, as of one commit."""
        self._check_open()
        _version, _next_pos, _meta, rows = self._link.run(self._read_all)
        return [(self._key(stored), blob) for stored, blob in rows]

    def end(self) -> int:
        """The position the next key added will take: every key's is below it."""
        self._check_open()
        return int(self._link.run(lambda conn: self._head(conn, "next_pos"))[0])

    def size(self, keys: list[str]) -> tuple[int, int]:
        """How many keys the store holds now, and how many of *keys* it holds."""
        self._check_open()
        stored = [stored_key(key) for key in keys]
        total = size_sql(self._layout)

        def work(conn: Connection) -> tuple[Any, ...]:
            row = conn.execute(
                q(
                    "SELECT " + total + ", (SELECT count(*) FROM {s}.records r "
                    "WHERE r.store = s.id AND r.key = ANY(%s) AND r.value IS NOT NULL) "
                    "FROM {s}.stores s WHERE s.id = %s"
                ),
                (stored, self._id),
            ).fetchone()
            if row is None:
                raise NotAStoreError(f"{self.location}: the store was removed from the database")
            return tuple(row)

        total_now, among = self._link.run(work)
        return int(total_now), int(among)

    def saw(self, key: str, blob: bytes) -> bool:
        """Whether *blob* is the value of *key* this open last saw (on demand)."""
        return self._seen.get(key) == hash(blob)

    def remember(self, key: str, blob: bytes) -> None:
        """The caller keeps *key*'s value, which the store held as *blob* (on demand)."""
        if not self.readonly:
            self._seen[key] = hash(blob)

    # -- inside a sync (its transaction) ----------------------------------

    def _live(self, conn: Connection, keys: list[str]) -> set[str]:
        """Those of *keys* the store holds (inside a sync, under the lock)."""
        if not keys:
            return set()
        rows = conn.execute(
            q(
                "SELECT key FROM {s}.records "
                f"WHERE store = %s AND key {KEY_LIST} AND value IS NOT NULL"
            ),
            (self._id, stored_keys(keys)),
        )
        return {self._key(stored) for (stored,) in rows}

    def _theirs_seen(
        self, conn: Connection, seen: dict[str, int], settled: dict[str, bool] | None = None
    ) -> list[Any]:
        """On demand: the rows the others changed since, of the keys this open saw.

        The others' other changes need nothing here (a read asks the store),
        so what this holds is the fewer of their changes and the keys seen:
        the keys alone, or the rows of the keys seen if those are fewer.
        *settled* (a tracker's store): filled with whether each task the
        others changed is now done or aborted; then their keys are read
        whatever their number (the tracker keeps them: ``settled_tasks``).
        """
        since = (self._id, self._version)
        if settled is None:
            if not seen:
                return []
            changed = conn.execute(
                q("SELECT count(*) FROM {s}.records WHERE store = %s AND version > %s"), since
            ).fetchone()
            if changed is not None and int(changed[0]) > len(seen):
                return conn.execute(
                    q(
                        "SELECT key, pos, value FROM {s}.records WHERE store = %s "
                        "AND version > %s AND key = ANY(%s) ORDER BY pos"
                    ),
                    (*since, [stored_key(key) for key in seen]),
                ).fetchall()
        rows = conn.execute(
            q(
                "SELECT key, pos, value IS NOT NULL, value IS NOT NULL AND state IN (1, 2) "
                "FROM {s}.records WHERE store = %s AND version > %s ORDER BY pos"
            ),
            since,
        ).fetchall()
        if settled is not None:
            settled.update((self._key(stored), bool(done)) for stored, _p, _t, done in rows)
        wanted = [self._key(stored) for stored, _pos, there, _done in rows if there]
        values = self._values(conn, [key for key in wanted if key in seen])
        return [
            (stored, pos, values.get(self._key(stored), NOT_READ) if there else None)
            for stored, pos, there, _done in rows
        ]

    def _values(self, conn: Connection, keys: list[str]) -> dict[str, bytes]:
        """The JSON of those of *keys* the store holds (inside a transaction)."""
        if not keys:
            return {}
        rows = conn.execute(
            q(
                "SELECT key, value FROM {s}.records "
                "WHERE store = %s AND key = ANY(%s) AND value IS NOT NULL"
            ),
            (self._id, [stored_key(key) for key in keys]),
        )
        return {self._key(stored): blob for stored, blob in rows}
