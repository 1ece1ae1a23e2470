"""Adding many new keys in one commit, without a sync's bookkeeping per key.

``Tracker.add_many`` of a million tasks spent most of its time, before the
rows reached the server, in what a sync does for any batch: each key
checked against what this open saw, each record remembered, each row's
place worked out. Keys that no one has ever stored need none of it: they
go at the end, in order, each with a value the caller gives.

:meth:`Appends.append_new` is that commit: one transaction under the
store's lock, one COPY of the rows straight into ``tastypy.records``,
the claims of those keys given their state, and the store's row moved on.
It does nothing, and says so, whenever the sync's way is needed instead:
another writer committed since this open's last sync, this open holds a
claim of one of the keys, or the store has a row of one (live, or left by
a deletion: the COPY fails on the primary key, and is undone whole).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from ._link import Connection, Link
from ._schema import LOCK_SPACE
from ._writes import NewRows, copy_appended, grew_enough

__all__ = ["Appends"]


class Appends:
    """:meth:`append_new`, a mixin of the PostgreSQL engine (see the module notes)."""

    _id: int
    _link: Link
    _version: int
    _next_pos: int
    _tokens: dict[str, Any]
    _tasks_settled: dict[str, bool]

    if TYPE_CHECKING:

        def _check_writable(self) -> None: ...

        def _head(self, conn: Connection, columns: str) -> tuple[Any, ...]: ...

        def _moved_on(self, conn: Connection, version: int, next_pos: int, grown: int) -> None: ...

    def append_new(self, keys: list[str], blob: bytes, others: dict[str, bytes]) -> bool:
        """Add *keys* (distinct, none of them the store's) at its end, in order, as one commit.

        Each key's value is *blob*, or ``others[key]``: JSON text as a sync
        would write it. The caller keeps none of their values in memory
        (this open does not remember them as seen).

        Returns False, with nothing done, if the store has a row of any of
        the keys, if another writer committed since this open's last sync,
        or if this open holds a claim of one of them: the caller then
        writes them by a sync. A lost connection raises
        :class:`~tastypy.errors.ConnectionFailedError`, never a second
        attempt (the first may have committed).
        """
        self._check_writable()
        if not keys:
            return True
        tokens = self._tokens
        if tokens and any(key in tokens for key in keys):
            return False

        def work(conn: Connection) -> int | None:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, self._id))
                    head = self._head(conn, "version, next_pos, meta->>'kind'")
                    version, next_pos = int(head[0]), int(head[1])
                    if version != self._version:
                        return None
                    tasks = head[2] == "tracker"
                    copy_appended(
                        conn,
                        self._id,
                        version + 1,
                        NewRows(keys, blob, others, first=next_pos),
                        tasks=tasks,
                        analyze=grew_enough(len(keys), next_pos + len(keys)),
                    )
                    self._moved_on(conn, version + 1, next_pos + len(keys), len(keys))
                    return next_pos + len(keys)
            except psycopg.errors.UniqueViolation:  # a key has a row: undone whole
                return None

        next_pos = self._link.run(work, again=False)
        if next_pos is None:
            return False
        self._version += 1
        self._next_pos = next_pos
        settled = self._tasks_settled
        if settled:  # what was heard of those keys is older than this commit
            if len(settled) < len(keys):
                added = set(keys)
                for key in [key for key in settled if key in added]:
                    del settled[key]
            else:
                for key in keys:
                    settled.pop(key, None)
        return True
