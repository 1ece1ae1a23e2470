"""What the layers above ask of a PostgreSQL target without using it as a store.

For ``storage/engines.py``: is a store there (:func:`probe`), which stores a
database holds (:func:`stores`), who holds a store's tasks now
(:func:`members`), and :func:`verify`. Each opens a connection of its own,
reads, and closes it; none writes.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import orjson

from ...errors import NotAStoreError
from ..damage import ContentChecks, Damage, VerifyReport
from ..protocol import Member, Probe, TaskSummary
from . import _schema
from ._engine import PostgresStorage
from ._link import Connection, Link
from ._schema import q
from ._tallies import LIVE_CLAIMS_ONLY, NOTABLE_ROWS, PARTS
from ._target import parse, user_key

__all__ = ["members", "probe", "stores", "task_keys", "task_summary", "verify"]


def probe(url: str) -> Probe:
    """Whether the store *url* (``URL#name``) names is there: ``store`` or ``missing``."""
    try:
        PostgresStorage(url, None, readonly=True).close()
    except NotAStoreError as exc:
        if "no such store" in str(exc):
            return Probe("missing")
        return Probe("other", str(exc))
    return Probe("store")


def stores(url: str) -> list[dict[str, Any]]:
    """The stores of the database at *url*: name, kind, records, last write (Unix time)."""
    target = parse(url.split("#", 1)[0], "x")  # any name: the server is what counts here
    link = Link(target, reconnect_for=0)
    try:

        def work(conn: Connection) -> list[tuple[Any, ...]]:
            layout = _schema.ensure(conn, target.server, create=False)
            if layout is None:
                return []
            size = _schema.size_sql(layout)
            listing = "SELECT s.name, s.meta::text, s.changed, " + size
            return conn.execute(q(listing + " FROM {s}.stores s ORDER BY s.name")).fetchall()

        rows = link.run(work)
    finally:
        link.close()
    found = []
    for name, meta, changed, count in rows:
        try:
            kind = orjson.loads(meta).get("kind", "pod")
        except (orjson.JSONDecodeError, AttributeError):
            kind = "?"
        found.append(
            {"name": name, "kind": kind, "keys": int(count), "last_write": changed.timestamp()}
        )
    return found


def members(url: str) -> list[Member]:
    """The processes holding tasks of the store at *url* under a live lease, by host and pid."""
    storage = PostgresStorage(url, None, readonly=True)
    try:

        def work(conn: Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                q(
                    "SELECT holder, count(*) "
                    "FROM {s}.claims WHERE store = %s AND holder IS NOT NULL "
                    "AND expires > now() GROUP BY holder ORDER BY holder"
                ),
                (storage._id,),
            ).fetchall()

        rows = storage._link.run(work)
    finally:
        storage.close()
    found = []
    for holder, holding in rows:
        host, _sep, rest = str(holder).rpartition(":")[0].rpartition(":")
        pid = int(rest) if rest.isdigit() else 0
        # No count of its tries since it began: since=0 says so (no rate per process).
        found.append(Member(pid=pid, since=0.0, holding=int(holding), claims=0, host=host))
    return found


# Every task as a readable tracker sees it: each record's state, and its
# tries raised to what claims counted (tries not yet synced); plus a task a
# claim found no record of and whose record was never committed.
_TASKS = """
    WITH t AS (
        SELECT r.key AS key, r.pos AS pos, coalesce(r.state, 0) AS state,
            greatest(coalesce(r.tries, 0), coalesce(c.tries, 0)) AS tries,
            r.value AS value, c.tries AS claimed,
            r.state IS NOT NULL AND r.tries IS NULL AS unusable
        FROM {s}.records r
        LEFT JOIN {s}.claims c ON c.store = r.store AND c.key = r.key AND c.tries > 0
        WHERE r.store = %(store)s AND r.value IS NOT NULL
        UNION ALL
        SELECT c.key, NULL, 0, c.tries, NULL, c.tries, false FROM {s}.claims c
        WHERE c.store = %(store)s AND c.tries > 0 AND c.new AND NOT EXISTS (
            SELECT 1 FROM {s}.records r
            WHERE r.store = c.store AND r.key = c.key AND r.value IS NOT NULL)
    )
"""
# Counted as the tracker counts: done, else aborted, else exhausted, else failed.
_EXHAUSTED = "state = 0 AND %(max)s > 0 AND tries >= %(max)s"
_STATES = (
    "state = 1",
    "state = 2",
    _EXHAUSTED,
    f"state = 0 AND tries > 0 AND NOT ({_EXHAUSTED})",
    "tries > 0",
)


def _counted(aggregate: str) -> str:
    """The counts of done, aborted, exhausted, failed and tried, each *aggregate* filtered."""
    return ", ".join(f"{aggregate.format(f'FILTER (WHERE {each})')}" for each in _STATES)


# Layout 3 and older (a role that may not migrate the tables): every record read.
_COUNTS = q(
    _TASKS
    + " SELECT count(*), "
    + _counted("count(*) {}")
    + ", count(*) FILTER (WHERE unusable) FROM t"
)
# The tasks not done whose records may name errors or a retry time, with the
# tries claims counted.
_NOTABLE = q(
    _TASKS
    + """
    SELECT value, claimed FROM t
    WHERE state <> 1 AND value IS NOT NULL
        AND (strpos(value::text, '"_errors"') > 0 OR strpos(value::text, '"_retry_at"') > 0)
    """
)
# Layout 4 on: the tallies and the claims ahead of their records (_tallies.py).
_COUNTS_TALLIED = q(
    PARTS
    + "SELECT (SELECT "
    + _schema.size_sql(_schema.VERSION)
    + " FROM {s}.stores s WHERE s.id = %(store)s) + "
    + LIVE_CLAIMS_ONLY
    + ", "
    + _counted("coalesce(sum(n) {}, 0)")
    + ", (SELECT count(*) FROM {s}.tallies WHERE store = %(store)s AND tries = -1 AND n > 0)"
    + " FROM parts"
)
_NOTABLE_TALLIED = q(NOTABLE_ROWS)


# Whether a record the tracker refuses (its _tries unusable) is there.
_UNUSABLE = q(
    "SELECT EXISTS (SELECT 1 FROM {s}.records WHERE store = %(store)s AND value IS NOT NULL "
    "AND state IS NOT NULL AND tries IS NULL)"
)
# Each state ``tastypy list`` files a task under, as a condition on t.
_IN_STATE = {
    "done": "state = 1",
    "aborted": "state = 2",
    "exhausted": _EXHAUSTED,
    "failed": f"state = 0 AND tries > 0 AND NOT ({_EXHAUSTED})",
    "untried": "state = 0 AND tries = 0",
    "todo": f"state = 0 AND NOT ({_EXHAUSTED})",
}


def task_keys(url: str, state: str, limit: int | None = None) -> list[str] | None:
    """The keys of the tracker at *url* in *state*, in order, found by the server; or None.

    *state* is one of ``tastypy list``'s (``todo``: failed or untried);
    tasks a claim found with no record come last. None as for
    :func:`task_summary` (then the caller reads the records).
    """
    where = _IN_STATE[state]
    storage = PostgresStorage(url, None, readonly=True)
    try:
        ask = _countable(storage)
        if ask is None:
            return None
        ask["limit"] = limit
        query = q(
            _TASKS + " SELECT key FROM t WHERE " + where + " ORDER BY pos, key LIMIT %(limit)s"
        )

        def work(conn: Connection) -> list[tuple[Any, ...]] | None:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                bad = conn.execute(_UNUSABLE, ask).fetchone()
                if bad is not None and bad[0]:
                    return None  # as in task_summary
                return conn.execute(query, ask).fetchall()

        rows = storage._link.run(work)
    finally:
        storage.close()
    return None if rows is None else [user_key(stored) for (stored,) in rows]


def task_summary(url: str) -> TaskSummary | None:
    """The tracker at *url* counted by the server, in one snapshot; None if it cannot be.

    Counted as a read-only tracker shows it: each record's tries raised to
    what claims counted (a try not synced yet), and a task claimed whose
    record was never committed. None when the counts would not be the
    tracker's: tries logged in the side log since the last sync (the tracker
    adds them), a ``max_tries`` setting it would refuse, or a record whose
    ``_tries`` it would refuse. Then the caller reads the records instead
    (and so says what it refuses).
    """
    storage = PostgresStorage(url, None, readonly=True)
    try:
        ask = _countable(storage)
        if ask is None:
            return None

        def work(conn: Connection) -> tuple[tuple[Any, ...], list[tuple[bytes, int | None]]]:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                tallied = storage._layout >= 4
                counts = conn.execute(_COUNTS_TALLIED if tallied else _COUNTS, ask).fetchone()
                rows = conn.execute(_NOTABLE_TALLIED if tallied else _NOTABLE, ask)
                notable = [(row[0], row[1]) for row in rows]
            assert counts is not None
            return tuple(counts), notable

        counts, notable = storage._link.run(work)
    finally:
        storage.close()
    total, done, aborted, exhausted, failed, tried, unusable = (int(each) for each in counts)
    if unusable:  # a record the tracker refuses: loading it says which, and how to fix it
        return None
    max_tries = ask["max"]
    return TaskSummary(max_tries, total, done, aborted, exhausted, failed, tried, notable)


def _countable(storage: PostgresStorage) -> dict[str, Any] | None:
    """The parameters of the counting queries, or None if the server's counts would be wrong.

    Wrong: tries logged in the side log since the last sync (the tracker
    adds them when it loads), or a ``max_tries`` setting it would refuse.
    """
    stored = storage.meta.get("max_tries") or 0
    if type(stored) is not int or stored < 0 or not storage.side_log("tries").empty:
        return None
    return {"max": stored, "store": storage._id}


def this_host() -> str:
    """How holders on this machine name it (``socket.gethostname()``)."""
    return socket.gethostname()


def verify(url: str, checks: ContentChecks) -> VerifyReport:
    """Read every record of the store at *url*; report what cannot be used.

    The database keeps its own pages whole (PostgreSQL's checksums and WAL);
    what is checked here is what tastypy needs of the rows: each key and
    value decodes, the settings in the meta, and the layers above's checks.
    """
    storage = PostgresStorage(url, None, readonly=True)
    where = storage.location
    report = VerifyReport(path=where)
    try:

        def work(conn: Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                q(
                    "SELECT key, value FROM {s}.records WHERE store = %s "
                    "AND value IS NOT NULL ORDER BY pos"
                ),
                (storage._id,),
            ).fetchall()

        rows = storage._link.run(work)
        meta = storage.meta
    finally:
        storage.close()
    data: dict[str, Any] = {}
    for stored, blob in rows:
        try:
            key = user_key(stored)
            data[key] = orjson.loads(blob)
        except ValueError as exc:
            report.damaged.append(Damage(Path("records"), None, stored, str(exc)))
    if report.damaged:
        report.problems.append(f"{len(report.damaged)} records cannot be read")
    for name, low in checks.settings:
        value = meta.get(name)
        if value is not None and (type(value) is not int or value < low):
            report.problems.append(
                f"{where}: setting meta.{name} must be a whole number >= {low}, not {value!r}"
            )
    report.problems += checks.problems(Path(where), meta, data)
    report.records = len(data)
    return report
