"""A tracker's tasks counted from ``tastypy.tallies`` (layout 4), not from every record.

For ``tastypy status`` (``_catalog.py``): the SQL below. For a tracker
served on demand (capability ``"counts"``): :class:`TaskReads`, a mixin of
the engine, whose queries give the tallies with the committed facts of
the keys a tracker has changed, the tasks to do in pages of the store's
order, and which of many keys the store holds.

The tallies (``_schema.py``: kept by triggers on ``records``) count a
store's task records by state, aborted and tries, as committed. What a
tracker shows differs from them in two ways, both bounded by the claims,
not by the store:

- a claim may have counted more tries than its record says (a try not
  synced yet): that record is counted with the claim's tries instead;
- a claim may have found no record, and none was committed since (its
  writer died first): that task is counted, untried but for its tries.

:data:`PARTS` is those rows, each with the number of tasks it stands for
(``n``, -1 taking a record back out); the counts are sums over them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._link import Connection, Link
from ._schema import ABORTED, NOTABLE, q
from ._target import KEY_LIST, stored_keys

__all__ = ["LIVE_CLAIMS_ONLY", "NOTABLE_ROWS", "PARTS", "TaskFacts", "TaskReads"]

# A record's (state, aborted, tries) as the tallies count it: state None for
# a value that is not a task record, tries -1 for an unusable _tries.
TaskFacts = tuple[int | None, bool, int]
_CHUNK = 10_000  # keys asked about per query
_KEYS = KEY_LIST.replace("%s", "%(keys)s")  # the keys changed here, as one JSON array

# Rows (state, tries, n): a tracker's tasks as a reader sees them, tries -1
# an unusable _tries. A record not a JSON object (no state) is not among
# them: it counts only in the store's size, as a task to do, never tried.
PARTS = """
    WITH ahead AS (
        SELECT coalesce(r.state, 0) AS state,
            CASE WHEN r.state IS NULL THEN 0 ELSE coalesce(r.tries, -1) END AS was,
            c.tries AS tries
        FROM {s}.claims c JOIN {s}.records r ON r.store = c.store AND r.key = c.key
        WHERE c.store = %(store)s AND c.tries > 0 AND r.value IS NOT NULL
            AND c.tries > coalesce(r.tries, 0)
    ), parts AS (
        SELECT state, tries, n FROM {s}.tallies WHERE store = %(store)s AND n <> 0
        UNION ALL SELECT state, was, -1 FROM ahead
        UNION ALL SELECT state, tries, 1 FROM ahead
        UNION ALL SELECT 0, c.tries, 1 FROM {s}.claims c
        WHERE c.store = %(store)s AND c.tries > 0 AND c.new AND NOT EXISTS (
            SELECT 1 FROM {s}.records r
            WHERE r.store = c.store AND r.key = c.key AND r.value IS NOT NULL)
    )
"""
# How many tasks only a claim knows (counted on top of the store's size).
LIVE_CLAIMS_ONLY = """
    (SELECT count(*) FROM {s}.claims c
     WHERE c.store = %(store)s AND c.tries > 0 AND c.new AND NOT EXISTS (
        SELECT 1 FROM {s}.records r
        WHERE r.store = c.store AND r.key = c.key AND r.value IS NOT NULL))
"""
# The records not done that may name errors or a retry time, through the
# partial index records_notable (its predicate, word for word), with the
# tries claims counted for each if more than its record's.
NOTABLE_ROWS = f"""
    SELECT r.value, CASE WHEN c.tries > coalesce(r.tries, 0) THEN c.tries END
    FROM (
        SELECT key, value, tries FROM {{s}}.records
        WHERE store = %(store)s AND value IS NOT NULL AND {NOTABLE}
    ) AS r
    LEFT JOIN {{s}}.claims c ON c.store = %(store)s AND c.key = r.key AND c.tries > 0
"""

_TALLY = q(
    "SELECT NULL, state, aborted, tries, n FROM {s}.tallies WHERE store = %(store)s AND n <> 0 "
    "UNION ALL SELECT key, state, " + ABORTED + ", coalesce(tries, -1), 1 FROM {s}.records "
    "WHERE store = %(store)s AND key " + _KEYS + " AND value IS NOT NULL"
)
_UNUSABLE = q(
    "SELECT key FROM {s}.records WHERE store = %s AND value IS NOT NULL "
    "AND state IS NOT NULL AND tries IS NULL ORDER BY pos LIMIT 1"
)
_HAS_UNUSABLE = q(
    "SELECT EXISTS (SELECT 1 FROM {s}.tallies WHERE store = %s AND tries = -1 AND n > 0)"
)
# A page of the tasks to do (or among the keys asked about), in order, with
# the JSON of a _retry_at the record may name, and whether it is to do.
# To do as the tracker reads a record: not a JSON object (no state: a task
# never tried), or to do with tries under the limit (unusable: none).
_IS_TO_DO = "(state IS NULL OR (state = 0 AND (tries IS NULL OR %(max)s = 0 OR tries < %(max)s)))"
_TO_DO_SQL = (
    "SELECT pos, key, CASE WHEN strpos(value::text, '\"_retry_at\"') > 0 "
    "THEN value -> '_retry_at' END, coalesce(" + _IS_TO_DO + ", false) FROM {s}.records "
    "WHERE store = %(store)s AND pos > %(after)s AND pos < %(before)s AND value IS NOT NULL "
    "AND ((" + _IS_TO_DO + " AND WHICH) OR key " + _KEYS + ") ORDER BY pos LIMIT %(limit)s"
)
_TO_DO = q(_TO_DO_SQL.replace("WHICH", "true"))
# Only those the index of notable records holds (that may name a retry time).
_TO_DO_NOTABLE = q(_TO_DO_SQL.replace("WHICH", "(" + NOTABLE + ")"))
_PRESENT = q(
    f"SELECT key FROM {{s}}.records WHERE store = %s AND key {KEY_LIST} AND value IS NOT NULL"
)


class TaskReads:
    """Capability ``"counts"`` of a PostgreSQL store of layout 4 on (see the module notes)."""

    _id: int
    _link: Link

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

        def _key(self, stored: str) -> str: ...

    def task_tally(
        self, keys: list[str]
    ) -> tuple[list[tuple[int, bool, int, int]], dict[str, TaskFacts]]:
        """The store's tallies ``(state, aborted, tries, n)``, and the facts of *keys* it holds.

        One statement, so both are as of one commit.
        """
        self._check_open()
        ask = {"store": self._id, "keys": stored_keys(keys)}
        rows = self._link.run(lambda conn: conn.execute(_TALLY, ask).fetchall())
        tallies: list[tuple[int, bool, int, int]] = []
        facts: dict[str, TaskFacts] = {}
        for stored, state, aborted, tries, n in rows:
            if stored is None:
                tallies.append((int(state), bool(aborted), int(tries), int(n)))
            else:
                facts[self._key(stored)] = (state, bool(aborted), int(tries))
        return tallies, facts

    def unusable_task(self) -> str | None:
        """The first key whose record's ``_tries`` the tracker cannot use; None if none is."""
        self._check_open()

        def work(conn: Connection) -> Any:
            found = conn.execute(_HAS_UNUSABLE, (self._id,)).fetchone()
            if found is None or not found[0]:
                return None
            return conn.execute(_UNUSABLE, (self._id,)).fetchone()

        row = self._link.run(work)
        return None if row is None else self._key(row[0])

    def to_do_page(  # the page's bounds and what is on it
        self,
        after: int,
        before: int,
        limit: int,
        max_tries: int,
        keys: list[str],
        *,
        notable: bool = False,
    ) -> list[tuple[int, str, bytes | None, bool]]:
        """Up to *limit* ``(pos, key, retry, to_do)`` between positions *after* and *before*.

        The records whose state says to do (*to_do*) and whose tries are
        under *max_tries* (0: no limit), and those of *keys* whatever their
        state, in order; *retry*: the JSON of the ``_retry_at`` a record
        names, or None. *notable*: of the records to do, only those that
        may name errors or a retry time (``records_notable``).
        """
        self._check_open()
        ask = {
            "store": self._id,
            "after": after,
            "before": before,
            "limit": limit,
            "max": max_tries,
            "keys": stored_keys(keys),
        }
        query = _TO_DO_NOTABLE if notable else _TO_DO
        rows = self._link.run(lambda conn: conn.execute(query, ask).fetchall())
        return [
            (int(pos), self._key(stored), retry, bool(due)) for pos, stored, retry, due in rows
        ]

    def present(self, keys: list[str]) -> set[str]:
        """Those of *keys* the store holds now (a query per 10,000 keys)."""
        self._check_open()
        found: set[str] = set()
        for chunk in _chunks(keys):
            ask = (self._id, stored_keys(chunk))

            def work(conn: Connection, ask: tuple[int, str] = ask) -> list[Any]:
                return conn.execute(_PRESENT, ask).fetchall()

            rows = self._link.run(work)
            found.update(self._key(row[0]) for row in rows)
        return found


def _chunks(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]
