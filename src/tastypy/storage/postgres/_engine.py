"""The PostgreSQL engine: a store is rows of a few tables, every open a shared writer.

Layout (``docs/FORMAT.md`` has the details): ``tastypy.stores`` has a row
per store (its name, the layers above's settings, its commit counter and
the next free position); ``tastypy.records`` a row per key (its position in
the store's order, the commit that last set it, its value as the JSON text
that was written, key order included). A deleted key's row stays, its value
NULL, so the other writers learn of the deletion; :meth:`compact` removes
such rows once they are old.

A sync is one transaction: take the store's advisory lock (so commits go one
at a time), read what the others committed since this open's last sync (the
rows whose commit is newer), then write this open's changes in one
statement. What the others did becomes the :class:`~.._merge.Merge` the POD
applies. PostgreSQL makes the transaction atomic, and durable when it
commits (``synchronous_commit``; ``durable=False`` turns it off for the
session).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Container, Iterable, Iterator
from typing import Any

import orjson
import psycopg

from ...errors import (
    CorruptStoreError,
    NotAStoreError,
    ReadOnlyError,
    SettingsError,
    StoreClosedError,
)
from .._merge import Merge, merge
from . import _schema
from ._append import Appends
from ._claims import LeasedClaims
from ._link import Connection, Link
from ._on_demand import OnDemandReads
from ._schema import COUNT_SQL, LOCK_SPACE, q, size_sql
from ._sidelog import PostgresSideLog
from ._tallies import TaskReads
from ._target import KEY_MARK, Target, parse, stored_key, user_key
from ._writes import Rows, grew_enough, task_facts, write_rows

__all__ = ["PostgresStorage"]

Change = tuple[str, "bytes | None"]
log = logging.getLogger(__name__)
SETTLED_KEPT = 100_000  # keys settled_tasks() holds at most
_UNKNOWN = object()  # what an open served on demand last saw of a key it never read
_PAGE = 20_000  # rows a load fetches per round trip


# A commit's row of the store: its version and next position, and the count
# of keys, raised by this commit's growth if it was right before (else counted).
_COMMITTED = q(
    "UPDATE {s}.stores s SET version = %s, next_pos = %s, changed = now(), "
    "size = CASE WHEN s.size_at = s.version THEN s.size + %s ELSE " + COUNT_SQL + " END, "
    "size_at = s.version + 1 WHERE s.id = %s"
)
_COMMITTED_V1 = q(
    "UPDATE {s}.stores SET version = %s, next_pos = %s, changed = now() WHERE id = %s"
)


class PostgresStorage(Appends, LeasedClaims, OnDemandReads, TaskReads):
    """One open of the store *name* in the database at *url*.

    Every writable open is shared (capability ``"shared"``): any number of
    processes, on any number of machines, write the store at once, each
    sync committing on top of the others' (``docs/SHARED.md``). It claims
    tasks too (capability ``"claims"``, ``_claims.py``): leases in server
    time, renewed by a heartbeat, with fencing tokens. Read-only opens see
    each commit whole.

    Raises
    ------
    ConnectionFailedError
        If the server cannot be reached or refuses the login.
    NotAStoreError
        Read-only, if there is no such store; or if the database's
        ``tastypy`` schema holds something else.
    FileExistsError
        With *new*, if the store exists.
    SettingsError
        For a bad name, or tables made by a newer tastypy.

    Notes
    -----
    Not thread-safe: the owning POD serializes calls.
    """

    def __init__(
        self,
        url: str,
        name: object,
        *,
        readonly: bool = False,
        durable: bool = True,
        new: bool = False,
    ) -> None:
        self._target: Target = parse(url, name)
        self.readonly = readonly
        self.durable = durable
        caps = {"on_demand"} if readonly else {"on_demand", "shared", "claims"}
        self.capabilities = frozenset(caps)
        self._link = Link(self._target)
        self._pid = os.getpid()
        self._init_claims()
        self._closed = False
        self._created = False
        self._version = 0  # the last commit this open has merged
        self._next_pos = 0  # the store's next free position, as of then
        self._seen: dict[str, int] = {}  # key -> hash of its value as this open last saw it
        self._tasks_settled: dict[str, bool] = {}  # see settled_tasks()
        # Served on demand (begin_on_demand): _seen covers only keys in
        # _resident, and a key missing from it may be in the store.
        self._resident: Container[str] | None = None
        self._layout = _schema.VERSION
        self._meta: dict[str, Any] = {}
        try:
            self._id = self._link.run(lambda conn: self._open(conn, new))
        except BaseException:
            self._link.close()
            raise
        if self._layout >= 4:  # the tallies: a tracker's counts are queries (_tallies.py)
            self.capabilities = self.capabilities | {"counts"}

    def _open(self, conn: Connection, new: bool) -> int:
        where = self.location
        encoding = conn.execute("SHOW server_encoding").fetchone()
        if not self.readonly and (encoding is None or encoding[0] != "UTF8"):
            raise SettingsError(
                f"{where}: the database's encoding is {encoding and encoding[0]}, and a "
                "store needs UTF8 (keys and values are Unicode): use a database made with "
                "ENCODING 'UTF8'"
            )
        if not self.durable:
            conn.execute("SET synchronous_commit = off")
        layout = _schema.ensure(conn, where, create=not self.readonly)
        row = None
        if layout is not None:
            self._layout = layout
            if not self.readonly:
                made = conn.execute(
                    q(
                        "INSERT INTO {s}.stores (name) VALUES (%s) "
                        "ON CONFLICT DO NOTHING RETURNING id"
                    ),
                    (self._target.name,),
                ).fetchone()
                if made is not None:
                    self._created = True
                    return int(made[0])
            row = conn.execute(
                q("SELECT id, meta::text FROM {s}.stores WHERE name = %s"), (self._target.name,)
            ).fetchone()
        if row is None:
            raise NotAStoreError(f"{where}: there is no such store in the database")
        if new:
            raise FileExistsError(f"{where}: the store exists already; give a new name")
        self._meta = _decode_meta(str(row[1]), where)
        return int(row[0])

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "writable"
        return f"<PostgresStorage {self.location}, {mode}>"

    # -- settings -----------------------------------------------------------

    @property
    def location(self) -> str:
        """The URL without its password, then ``#`` and the store's name."""
        return self._target.location

    @property
    def name(self) -> str:
        """The store's name within the database."""
        return self._target.name

    @property
    def options(self) -> dict[str, Any]:
        """The PostgreSQL engine has no settings of its own."""
        return {}

    @property
    def meta(self) -> dict[str, Any]:
        """Settings of the mapping layer (a copy), as of the last load or sync."""
        self._check_open()
        return dict(self._meta)

    def set_meta(self, meta: dict[str, Any]) -> None:
        """Durably replace the mapping layer's settings."""
        self._check_writable()
        text = orjson.dumps(meta).decode()

        def work(conn: Connection) -> None:
            conn.execute(q("UPDATE {s}.stores SET meta = %s WHERE id = %s"), (text, self._id))

        self._link.run(work)
        self._meta = orjson.loads(text)

    # -- reading ------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """Everything as of the last commit, in order, decoded into a new dict."""
        self._check_open()
        version, next_pos, meta, rows = self._link.run(self._read_all)
        data: dict[str, Any] = {}
        seen: dict[str, int] = {}
        where = self.location
        for stored, blob in rows:
            try:
                key = user_key(stored)
                data[key] = orjson.loads(blob)
            except ValueError as exc:
                raise CorruptStoreError(f"{where}: the record {stored!r}: {exc}") from None
            seen[key] = hash(blob)
        self._version, self._next_pos, self._meta = version, next_pos, meta
        self._resident = None
        if not self.readonly:
            self._seen = seen
        return data

    # -- on demand (capability "on_demand": stores larger than memory) -------

    def begin_on_demand(self, resident: Container[str]) -> None:
        """Serve this open on demand from now on: nothing is loaded.

        *resident* holds the keys whose values the caller keeps (its cache):
        this open remembers what it last saw only of those, and
        :meth:`forget` drops a key the caller lets go.
        """
        self._check_open()

        def work(conn: Connection) -> tuple[Any, ...]:
            return self._head(conn, "version, next_pos, meta::text")

        version, next_pos, meta = self._link.run(work)
        self._version, self._next_pos = int(version), int(next_pos)
        self._meta = _decode_meta(str(meta), self.location)
        self._seen = {}
        self._tasks_settled = {}  # the commits skipped over are never read
        self._resident = resident

    def _read_all(self, conn: Connection) -> tuple[int, int, dict[str, Any], list[Any]]:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            head = self._head(conn, "version, next_pos, meta::text")
            rows: list[Any] = []
            with conn.cursor(name="tastypy_load") as cur:
                cur.itersize = _PAGE
                cur.execute(
                    q(
                        "SELECT key, value FROM {s}.records "
                        "WHERE store = %s AND value IS NOT NULL ORDER BY pos"
                    ),
                    (self._id,),
                )
                while True:
                    page = cur.fetchmany(_PAGE)
                    if not page:
                        break
                    rows += page
        meta = _decode_meta(str(head[2]), self.location)
        return int(head[0]), int(head[1]), meta, rows

    def _head(self, conn: Connection, columns: str) -> tuple[Any, ...]:
        """The store's row (*columns* of it); NotAStoreError if it was dropped meanwhile."""
        row = conn.execute(
            q("SELECT " + columns + " FROM {s}.stores WHERE id = %s"), (self._id,)
        ).fetchone()
        if row is None:
            raise NotAStoreError(f"{self.location}: the store was removed from the database")
        return row

    # -- writing ------------------------------------------------------------

    def commit(self, changes: Iterable[Change]) -> None:
        """One atomic, durable batch (see :meth:`sync`, which this is)."""
        self.sync(changes)

    def sync(self, changes: Iterable[Change]) -> Merge:
        """Commit *changes* on top of the others' commits; how to merge theirs into memory.

        Of *changes*, only those that differ from what this open last saw
        are written: a key this writer did not change is never written back
        over another's change. A raising *changes* commits nothing; a
        failed commit changes nothing, here or in the database.
        """
        self._check_writable()
        batch = [(key, None if blob is None else bytes(blob)) for key, blob in changes]
        done = self._link.run(lambda conn: self._sync(conn, batch))
        version, next_pos, theirs, mine, lost, settled = done
        self._hear(settled, mine)
        if lost:
            self._fenced(lost)
        seen = self._seen
        result = merge(seen.__contains__, theirs, mine)
        last_seen = {key: seen.get(key) for key, _blob in theirs}
        result.unchanged = lambda key, blob: last_seen.get(key) == hash(blob)
        self._remember(theirs, mine)
        self._version, self._next_pos = version, next_pos
        return result

    def _moved_on(self, conn: Connection, version: int, next_pos: int, grown: int) -> None:
        """Set the store's row to commit *version*, that grew the store by *grown* keys."""
        if self._layout >= 3:
            conn.execute(_COMMITTED, (version, next_pos, grown, self._id))
        else:  # an older layout this role may not migrate: no count to keep
            conn.execute(_COMMITTED_V1, (version, next_pos, self._id))

    def _remember(self, theirs: list[Change], mine: list[Change]) -> None:
        """What this open saw last, after a sync: every key, or (on demand) the caller's."""
        seen, resident = self._seen, self._resident
        if resident is None:
            for key, blob in (*theirs, *mine):
                if blob is None:
                    seen.pop(key, None)
                else:
                    seen[key] = hash(blob)
            return
        # Each key's last change of theirs (a key moved comes as a deletion, then a set).
        for key, blob in dict(theirs).items():
            if key in seen:
                if blob is None:
                    del seen[key]
                else:
                    seen[key] = hash(blob)
        for key, blob in mine:
            if blob is None or key not in resident:
                seen.pop(key, None)
            else:
                seen[key] = hash(blob)

    def _sync(
        self, conn: Connection, batch: list[tuple[str, bytes | None]]
    ) -> tuple[int, int, list[Change], list[Change], list[str], dict[str, bool] | None]:
        """The transaction of :meth:`sync`; changes nothing of this object (it may run twice)."""
        seen = self._seen
        on_demand = self._resident is not None
        unknown: object = _UNKNOWN if on_demand else None  # a key this open never saw
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, self._id))
            head = self._head(conn, "version, next_pos, horizon, meta->>'kind'")
            version, next_pos, horizon = (int(each) for each in head[:3])
            tasks = head[3] == "tracker"  # as of now: a tracker may have adopted the store
            settled: dict[str, bool] | None = {}  # on demand, a tracker's: settled_tasks()
            theirs = self._catch_up(
                conn, seen, version, horizon, settled if on_demand and tasks else None
            )
            if self._version < horizon:  # rows of tasks deleted since are gone: what
                settled = None  # was heard of them may be stale (see _hear)
            after: dict[str, bool] = {key: blob is not None for key, blob in theirs}
            mine: list[Change] = []
            now: dict[str, object] = {}  # this batch's effect on what this open saw
            for key, blob in batch:
                before = now[key] if key in now else seen.get(key, unknown)
                if blob is None:
                    if before is not None:
                        mine.append((key, None))
                        now[key] = None
                elif hash(blob) != before:
                    mine.append((key, blob))
                    now[key] = hash(blob)
            lost = self._lost(conn, list(now)) if self._tokens else []
            if lost:  # claimed again elsewhere since: the store's records stand (fencing)
                dropped = set(lost)
                mine = [change for change in mine if change[0] not in dropped]
                known = {key for key, _blob in theirs}
                theirs += self._rows(conn, [key for key in lost if key not in known], seen)
            present: Any = seen.__contains__  # whether a key is there, as theirs left it
            if on_demand and next_pos > 0:  # a key this open never saw: the store says
                live = self._live(conn, [k for k in now if k not in seen and k not in after])
                if live:
                    present = lambda k: k in seen or k in live  # noqa: E731
            if after:
                unmoved = present  # for the keys theirs did not touch
                present = lambda k: after[k] if k in after else unmoved(k)  # noqa: E731
            written = self._write(conn, mine, present, version + 1, next_pos, tasks=tasks)
            if written is None:
                return version, next_pos, theirs, mine, lost, settled
            added, grown = written
            self._moved_on(conn, version + 1, next_pos + added, grown)
        return version + 1, next_pos + added, theirs, mine, lost, settled

    def _hear(self, settled: dict[str, bool] | None, mine: list[Change]) -> None:
        """Keep what a sync heard of the others' tasks (*settled*; None: start again)."""
        news = self._tasks_settled
        if settled is None:  # a compaction removed rows this open never read
            news.clear()
            return
        for key, done in settled.items():
            if done:
                news.pop(key, None)  # the latest news last
                news[key] = True
            else:
                news.pop(key, None)
        for key, _blob in mine:  # this open's own commit is newer than anything it heard
            news.pop(key, None)
        if len(news) > SETTLED_KEPT:  # the oldest news go, half of them at once
            kept = list(news)[len(news) - SETTLED_KEPT // 2 :]
            self._tasks_settled = dict.fromkeys(kept, True)

    def settled_tasks(self) -> dict[str, bool]:
        """What this open's syncs learned of tasks the others settled (on demand, trackers).

        Key -> True: its committed record was done or aborted when last heard
        of, the latest last, at most :data:`SETTLED_KEPT` keys. The caller
        may change it (the tracker forgets a key it claims).
        """
        return self._tasks_settled

    def _catch_up(
        self,
        conn: Connection,
        seen: dict[str, int],
        version: int,
        horizon: int,
        settled: dict[str, bool] | None = None,
    ) -> list[Change]:
        """What the others committed since this open's last sync (the store at *version*).

        *settled*: see :meth:`_theirs`.
        """
        if version == self._version:
            return []
        gone: list[str] = []  # keys the others deleted that no row tells of any more
        if self._version < horizon:  # rows of deleted keys were removed since
            gone = self._vanished(conn, seen)
        return [(key, None) for key in gone] + self._theirs(conn, seen, settled)

    def _theirs(
        self, conn: Connection, seen: dict[str, int], settled: dict[str, bool] | None = None
    ) -> list[Change]:
        """The others' commits since this open's last sync, as one run of changes.

        On demand, only the values of keys this open saw are read: of the
        others, what counts is that they changed (their value stands in as
        :data:`._on_demand.NOT_READ`, which no decoder takes). *settled* (on
        demand, a tracker's store): filled with whether each task the others
        changed is done or aborted now, for :meth:`settled_tasks`.
        """
        if self._resident is not None:
            return self._as_changes(self._theirs_seen(conn, seen, settled), seen)
        rows = conn.execute(
            q(
                "SELECT key, pos, value FROM {s}.records "
                "WHERE store = %s AND version > %s ORDER BY pos"
            ),
            (self._id, self._version),
        ).fetchall()
        return self._as_changes(rows, seen)

    def _rows(self, conn: Connection, keys: list[str], seen: dict[str, int]) -> list[Change]:
        """The store's records of *keys*, as changes that make this open's memory hold them."""
        if not keys:
            return []
        rows = conn.execute(
            q(
                "SELECT key, pos, value FROM {s}.records "
                "WHERE store = %s AND key = ANY(%s) ORDER BY pos"
            ),
            (self._id, [stored_key(key) for key in keys]),
        ).fetchall()
        found = self._as_changes(rows, seen)
        there = {key for key, _blob in found}
        # No record there: this open's memory drops its own, whether or not it
        # had seen one (a task it claimed new, which another claimed since).
        return [(key, None) for key in keys if key not in there] + found

    def _as_changes(self, rows: list[Any], seen: dict[str, int]) -> list[Change]:
        """Rows ``(key, pos, value)`` in order, as changes to what this open saw.

        A row that moved past this open's last position was added since, so
        a key it knew was deleted and added again: it goes to the end.
        """
        theirs: list[Change] = []
        for stored, pos, blob in rows:
            key = self._key(stored)
            if blob is None:
                if key in seen:
                    theirs.append((key, None))
            else:
                if key in seen and int(pos) >= self._next_pos:
                    theirs.append((key, None))
                theirs.append((key, blob))
        return theirs

    def _vanished(self, conn: Connection, seen: dict[str, int]) -> list[str]:
        """Keys this open saw that the store holds no more (rows of deletions were removed)."""
        if self._resident is not None:  # on demand: it saw few
            present = self._live(conn, list(seen))
        else:
            present = {
                self._key(stored)
                for (stored,) in conn.execute(
                    q("SELECT key FROM {s}.records WHERE store = %s AND value IS NOT NULL"),
                    (self._id,),
                )
            }
        return [key for key in seen if key not in present]

    def _write(
        self,
        conn: Connection,
        mine: list[Change],
        present: Any,
        version: int,
        next_pos: int,
        *,
        tasks: bool,
    ) -> tuple[int, int] | None:
        """Write *mine* (applied in order, as a dict would) as commit *version*.

        *tasks*: the store is a tracker's, whose records' state the claims read.

        Returns how many keys went to the end and by how many keys the store
        grew (fewer than none: it shrank); None if there was nothing to write.
        """
        # No object per key (a million of them would be a million for the
        # garbage collector to look at): dicts of the keys, and columns.
        final: dict[str, bytes | None] = {}  # key -> its value at the end, or None
        was: dict[str, bool] = {}  # key -> whether the store had it before
        ends: dict[str, int] = {}  # keys that go to the end, in order; then their places
        for key, blob in mine:
            if key in final:
                there = final[key] is not None
            else:
                there = was[key] = present(key)
            final[key] = blob
            if blob is None:
                ends.pop(key, None)
            elif not there:  # new, or added again after a deletion in this batch
                ends[key] = 0
        for rank, key in enumerate(ends):
            ends[key] = next_pos + rank
        rows = Rows()
        last: object = rows  # the value the facts are of (none yet)
        state: int | None = None
        count: int | None = None
        grown = 0
        for key, blob in final.items():
            before = was[key]
            if blob is None and not before:
                continue  # added and deleted within the batch: the store never had it
            grown += (blob is not None) - before
            if tasks and blob is not last:  # new tasks share one value: parsed once
                last = blob
                state, count = (None, None) if blob is None else task_facts(blob)
            # stored_key(), its common case inlined: a call per key costs 0.2 s a million.
            stored = key if "\x00" not in key and not key.startswith(KEY_MARK) else stored_key(key)
            rows.keys.append(stored)
            rows.positions.append(ends.get(key, -1))
            rows.values.append(blob)
            rows.states.append(state)
            rows.tries.append(count)
            rows.new.append(not before)
        if not rows:
            return None
        analyze = grew_enough(len(ends), next_pos + len(ends))
        write_rows(conn, self._id, version, rows, tasks=tasks, analyze=analyze)
        return len(ends), grown

    def _key(self, stored: str) -> str:
        try:
            return user_key(stored)
        except ValueError as exc:
            raise CorruptStoreError(f"{self.location}: the record {stored!r}: {exc}") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock for this open's commits only: the others' wait.

        A session lock in this open's connection; if the connection is lost
        within the block, the block fails (its lock went with it).
        """
        self._check_writable()

        def lock(conn: Connection) -> None:
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, self._id))

        self._link.run(lock)  # on a new connection if the old one was lost: nothing held yet
        with self._link.pinned() as conn:
            try:
                yield
            finally:
                if not conn.closed and not conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SPACE, self._id))

    def compact(self) -> None:
        """Remove the rows of deleted keys (a writer that saw them compares keys once)."""
        self._check_writable()

        def work(conn: Connection) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, self._id))
                version = int(self._head(conn, "version")[0])
                conn.execute(
                    q("DELETE FROM {s}.records WHERE store = %s AND value IS NULL"), (self._id,)
                )
                conn.execute(q("UPDATE {s}.stores SET horizon = %s WHERE id = %s"),
                             (version, self._id))  # fmt: skip

        self._link.run(work)

    # -- the rest of the protocol -------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The server, the store's name, its size and commits, and when it last changed."""
        self._check_open()

        def work(conn: Connection) -> tuple[Any, ...]:
            total = size_sql(self._layout)
            row = conn.execute(
                q(
                    "SELECT s.version, s.created, s.changed, " + total + " "
                    "FROM {s}.stores s WHERE s.id = %s"
                ),
                (self._id,),
            ).fetchone()
            if row is None:
                raise NotAStoreError(f"{self.location}: the store was removed from the database")
            return tuple(row)

        version, created, changed, records = self._link.run(work)
        return {
            "engine": "postgresql",
            "server": self._target.server,
            "name": self.name,
            "format_version": _schema.VERSION,
            "records": records,
            "commits": version,
            "created": str(created),
            "last_write": str(changed),
        }

    def side_log(self, name: str) -> PostgresSideLog:
        """The side log *name* of this store: rows of ``tastypy.side_logs``."""
        self._check_open()
        return PostgresSideLog(self._link, self._id, name, self.location, self._check_writable)

    def discard(self) -> None:
        """Close, and remove the store this open created (a copy into it failed midway)."""
        self._check_writable()
        if not self._created:
            raise RuntimeError(
                f"{self.location}: discard() removes only a store this open created"
            )

        def work(conn: Connection) -> None:
            with conn.transaction():  # under the lock: no sync writes records meanwhile
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, self._id))
                # records has no foreign key (_schema.py); claims and side logs follow.
                conn.execute(q("DELETE FROM {s}.records WHERE store = %s"), (self._id,))
                conn.execute(q("DELETE FROM {s}.stores WHERE id = %s"), (self._id,))

        self._link.run(work)
        self.close()

    def close(self) -> None:
        """End this open's claims, and close the connection. Idempotent; the data stays."""
        if self._closed:
            return
        self._closed = True
        self._stop_claims()
        if self._tokens and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # else they run out with their lease
                self._let_go(list(self._tokens))
        self._link.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.location} is closed; open it again to use it")

    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise ReadOnlyError(f"{self.location} is open read-only")
        if self._pid != os.getpid():
            raise RuntimeError(
                f"{self.location} was opened by process {self._pid}, before a fork; "
                "open it again in this process"
            )


def _decode_meta(text: str, where: str) -> dict[str, Any]:
    try:
        meta = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CorruptStoreError(f"{where}: the store's settings: {exc}") from None
    if not isinstance(meta, dict):
        raise CorruptStoreError(f"{where}: the store's settings are not a JSON object")
    return meta
