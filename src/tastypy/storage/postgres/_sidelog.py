"""A side log of a PostgreSQL store: rows of ``tastypy.side_logs``, one per line.

Each append is its own committed transaction, so a line outlives the
process that wrote it (and, the store being durable, a power cut of the
server too): :meth:`PostgresSideLog.flush` has nothing left to wait for.
"""

from __future__ import annotations

from collections.abc import Callable

from ._link import Connection, Link
from ._schema import q

__all__ = ["PostgresSideLog"]


class PostgresSideLog:
    """The side log *name* of the store with id *store*, reached through *link*."""

    def __init__(
        self, link: Link, store: int, name: str, where: str, check_writable: Callable[[], None]
    ) -> None:
        self._link = link
        self._store = store
        self.name = name
        self._where = where
        self._check_writable = check_writable

    @property
    def location(self) -> str:
        return f"{self._where} (side log {self.name})"

    @property
    def empty(self) -> bool:
        def work(conn: Connection) -> bool:
            row = conn.execute(
                q(
                    "SELECT NOT EXISTS "
                    "(SELECT 1 FROM {s}.side_logs WHERE store = %s AND name = %s)"
                ),
                (self._store, self.name),
            ).fetchone()
            return bool(row and row[0])

        return self._link.run(work)

    def read(self) -> bytes:
        def work(conn: Connection) -> bytes:
            rows = conn.execute(
                q("SELECT line FROM {s}.side_logs WHERE store = %s AND name = %s ORDER BY seq"),
                (self._store, self.name),
            ).fetchall()
            return b"".join(bytes(line) for (line,) in rows)

        return self._link.run(work)

    def append(self, line: bytes) -> None:
        self._check_writable()

        def work(conn: Connection) -> None:
            conn.execute(
                q("INSERT INTO {s}.side_logs (store, name, line) VALUES (%s, %s, %s)"),
                (self._store, self.name, bytes(line)),
            )

        # Not again on a lost connection: the first try may have landed, and a
        # line twice would count twice.
        self._link.run(work, again=False)

    def flush(self) -> None:
        """Nothing to wait for: every append committed."""

    def clear(self) -> None:
        self._check_writable()

        def work(conn: Connection) -> None:
            conn.execute(
                q("DELETE FROM {s}.side_logs WHERE store = %s AND name = %s"),
                (self._store, self.name),
            )

        self._link.run(work)

    def close(self) -> None:
        """Nothing to release: the store's connection serves its logs."""
