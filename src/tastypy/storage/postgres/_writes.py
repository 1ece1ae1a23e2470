"""Writing a commit's rows: one statement for a small batch, COPY for a large one.

A sync hands :func:`write_rows` the rows of ``tastypy.records`` its commit
sets, each key once. A small batch goes in one ``INSERT ... SELECT FROM
unnest(...) ON CONFLICT DO UPDATE``. From :data:`BULK_ROWS` rows on, the
arrays cost more than the work (psycopg builds and escapes each one), so:

- keys the store has never held go straight into ``tastypy.records`` by
  ``COPY``, as fast as the server loads rows. A key with a row left by an
  old deletion makes that COPY fail on the primary key; it is undone (a
  savepoint) and those rows take the next way instead;
- the other rows (updates, deletions, keys added back) are copied into a
  temporary table and go from there in one ``INSERT ... SELECT ... ON
  CONFLICT DO UPDATE`` (a role that may not make temporary tables: the one
  statement instead).

All of it is inside the sync's transaction: it commits whole or not at all.
For a tracker's records, each row carries the task's state and tries (read
from its JSON by :func:`task_facts`), and the same transaction gives the
claim rows of the keys written their record's new state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import compress

import orjson
import psycopg

from ._link import Connection
from ._schema import q
from ._target import KEY_MARK, stored_key

__all__ = [
    "ABORTED",
    "BULK_ROWS",
    "DONE",
    "TO_DO",
    "NewRows",
    "Rows",
    "copy_appended",
    "grew_enough",
    "task_facts",
    "write_rows",
]

log = logging.getLogger(__name__)
TO_DO, DONE, ABORTED = 0, 1, 2  # records.state of a task record
BULK_ROWS = 2_000  # from this many rows on, a batch goes by COPY
_MAX_TRIES = 2**62
_CHUNK = 1 << 20  # bytes of COPY data sent at a time
_RUN = 10_000  # keys of an append made into COPY text at a time
# A commit that adds this many keys, a tenth of the store or more, has the
# planner's statistics made again (see analyze_written).
ANALYZE_ROWS = 10_000
# How the tracker writes every new task: its facts need no parse. (The
# tracker's _records.NEW_RECORD; the engine does not import the layer above.)
_FRESH = b'{"_done":false,"_tries":0}'


@dataclass
class Rows:
    """Rows of ``tastypy.records`` a commit sets, as columns (no object per row).

    Their store and commit are given apart. ``positions``: a row's place in
    the order, -1 for the place it has. ``values``: its JSON text, None for
    a deleted key. ``states`` and ``tries``: a task record's (else None).
    ``new``: the store had no live record of the key before (maybe a
    deletion's row).
    """

    keys: list[str] = field(default_factory=list)  # as stored (``_target.stored_key``)
    positions: list[int] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    states: list[int | None] = field(default_factory=list)
    tries: list[int | None] = field(default_factory=list)
    new: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def split(self) -> tuple[Rows, Rows]:
        """The new rows, and the others."""
        if all(self.new):
            return self, Rows()
        if not any(self.new):
            return Rows(), self
        old = [not each for each in self.new]
        return self._select(self.new), self._select(old)

    def _select(self, which: list[bool]) -> Rows:
        columns = (self.keys, self.positions, self.values, self.states, self.tries, self.new)
        return Rows(*(list(compress(column, which)) for column in columns))  # type: ignore[arg-type]

    def extend(self, other: Rows) -> None:
        self.keys += other.keys
        self.positions += other.positions
        self.values += other.values
        self.states += other.states
        self.tries += other.tries
        self.new += other.new


def task_facts(blob: bytes) -> tuple[int | None, int | None]:
    """A task record's state and tries, for ``records.state`` and ``records.tries``.

    As the tracker reads them: done, else aborted, else to do, by the
    fields' truth; tries a whole number (missing: 0; unusable: None, which
    the claims count as 0 and the server's counts refuse). Not a JSON
    object: no state.
    """
    if blob == _FRESH:
        return TO_DO, 0
    try:
        value = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(value, dict):
        return None, None
    tries = value.get("_tries", 0)
    if type(tries) is not int or not 0 <= tries < _MAX_TRIES:
        tries = None  # unusable (the tracker refuses such a record): counted as 0 by claims
    state = DONE if value.get("_done") else ABORTED if value.get("_aborted") else TO_DO
    return state, tries


_SET = """
    value = EXCLUDED.value,
    version = EXCLUDED.version,
    state = EXCLUDED.state,
    tries = EXCLUDED.tries,
    pos = CASE WHEN EXCLUDED.pos < 0 THEN r.pos ELSE EXCLUDED.pos END
"""
_UPSERT = q(
    """
    INSERT INTO {s}.records AS r (store, key, pos, version, value, state, tries)
    SELECT %s, k, p, %s, v::json, st, tr
    FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::smallint[], %s::bigint[])
        AS t(k, p, v, st, tr)
    ON CONFLICT (store, key) DO UPDATE SET"""
    + _SET
)
_COPY_RECORDS = q("COPY {s}.records (store, key, pos, version, value, state, tries) FROM STDIN")
_BATCH = "pg_temp.tastypy_batch"  # the temporary table of a large batch's other rows
_MAKE_BATCH = (
    f"CREATE TEMPORARY TABLE {_BATCH} (store bigint, key text, pos bigint, version bigint, "
    "value json, state smallint, tries bigint) ON COMMIT DROP"
)
_COPY_BATCH = f"COPY {_BATCH} (store, key, pos, version, value, state, tries) FROM STDIN"
_UPSERT_BATCH = q(
    "INSERT INTO {s}.records AS r (store, key, pos, version, value, state, tries) "
    f"SELECT store, key, pos, version, value, state, tries FROM {_BATCH} "
    "ON CONFLICT (store, key) DO UPDATE SET" + _SET
)
# The claim rows of the keys this commit wrote take their record's state
# (the claims check that copy: see _claims.py), and are no longer "new" (a
# claim that found no record: its task now has one, or was deleted since,
# and a reader must not count it as a task only the claim knows). A
# commit's rows are those of its version.
# The rows are locked in key order first, as the claim statements take
# them (_claims.py): locked in another order, a sync and a claim of many
# tasks each waited for a row the other held (a deadlock, seen in a test).
_CLAIM_STATES = q(
    """
    WITH written AS (
        SELECT c.key, coalesce(r.state, 0) AS state
        FROM {s}.claims c JOIN {s}.records r ON r.store = c.store AND r.key = c.key
        WHERE c.store = %(store)s AND r.version = %(version)s
            AND (c.state <> coalesce(r.state, 0) OR c.new)
        ORDER BY c.key
        FOR UPDATE OF c
    )
    UPDATE {s}.claims c SET state = w.state, new = false
    FROM written w WHERE c.store = %(store)s AND c.key = w.key
    """
)


def grew_enough(added: int, end: int) -> bool:
    """Whether a commit that adds *added* keys, up to position *end*, must analyze them."""
    return added >= ANALYZE_ROWS and added * 10 >= end


def analyze_written(conn: Connection) -> None:
    """Have the server's planner learn of the rows this transaction wrote, before it goes on.

    Its statistics of the records table predate them: it would take a store
    with a million new rows for one of a few, and read a key by scanning
    them all until autovacuum analyzes the table; the claims' update of a
    commit (:data:`_CLAIM_STATES`) took 1.5 s for a million new tasks so.
    ``ANALYZE`` in a transaction samples its own new rows. Best effort, in a
    savepoint (a role that does not own the table is skipped with a warning).
    """
    try:
        with conn.transaction():
            conn.execute(q("ANALYZE {s}.records"))
    except psycopg.Error as exc:
        if conn.broken or conn.closed:
            raise
        log.info("could not ANALYZE the records: %s", exc)


def write_rows(
    conn: Connection,
    store: int,
    version: int,
    rows: Rows,
    *,
    tasks: bool,
    analyze: bool = False,
) -> None:
    """Write *rows* as commit *version* of *store*; with *tasks*, update its claims' states.

    *analyze*: :func:`analyze_written` once the rows are written.
    """
    if len(rows) < BULK_ROWS:
        _upsert(conn, store, version, rows)
    else:
        new, rest = rows.split()
        # Few new keys, or one with a deletion's row among them: the other way.
        if len(new) < BULK_ROWS or not _copy_new(conn, store, version, new):
            rest.extend(new)
        if rest and (len(rest) < BULK_ROWS or not _copy_through_batch(conn, store, version, rest)):
            _upsert(conn, store, version, rest)
    if analyze:
        analyze_written(conn)
    if tasks:
        conn.execute(_CLAIM_STATES, {"store": store, "version": version})


def _upsert(conn: Connection, store: int, version: int, rows: Rows) -> None:
    values = [None if value is None else value.decode() for value in rows.values]
    conn.execute(
        _UPSERT, (store, version, rows.keys, rows.positions, values, rows.states, rows.tries)
    )


def _copy_new(conn: Connection, store: int, version: int, rows: Rows) -> bool:
    """COPY *rows* straight into the records; False (and nothing done) if a key has a row."""
    try:
        with conn.transaction():  # a savepoint: a failed COPY leaves the sync going
            _copy(conn, _COPY_RECORDS, store, version, rows)
    except psycopg.errors.UniqueViolation:
        return False
    return True


def _copy_through_batch(conn: Connection, store: int, version: int, rows: Rows) -> bool:
    """COPY *rows* into a temporary table, then upsert them from it; False if not allowed.

    A role without the TEMPORARY privilege (a common hardening) cannot make
    the table: nothing is done, and the rows take the one-statement way.
    """
    try:
        with conn.transaction():  # a savepoint: a refusal leaves the sync going
            conn.execute(_MAKE_BATCH)
            _copy(conn, _COPY_BATCH, store, version, rows)
            conn.execute(_UPSERT_BATCH)
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def _copy(conn: Connection, statement: bytes | str, store: int, version: int, rows: Rows) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for chunk in _text_rows(store, version, rows):
            copy.write(chunk)


# COPY's text format: a tab between columns, a newline after each row, \N for
# NULL, and a backslash, tab, newline or carriage return within a value escaped.
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))
_BYTE_ESCAPES = tuple((old.encode(), new.encode()) for old, new in _ESCAPES)


def _text(field: str) -> str:
    if "\\" in field or "\t" in field or "\n" in field or "\r" in field:
        for old, new in _ESCAPES:
            field = field.replace(old, new)
    return field


def _json_text(blob: bytes) -> bytes:
    # orjson writes control characters escaped, so a backslash is what there is.
    if b"\\" in blob or b"\t" in blob or b"\n" in blob or b"\r" in blob:
        for old, new in _BYTE_ESCAPES:
            blob = blob.replace(old, new)
    return blob


def _text_rows(store: int, version: int, rows: Rows) -> Iterator[bytes]:
    """*rows* in COPY's text format, in chunks of about :data:`_CHUNK` bytes."""
    head = f"{store}\t".encode()
    middle = f"\t{version}\t"
    parts: list[bytes] = []
    size = 0
    last: object = parts  # the value the tail is of (none yet)
    tail = b""
    for key, pos, value, state, tries in zip(
        rows.keys, rows.positions, rows.values, rows.states, rows.tries, strict=True
    ):
        if value is not last:  # new tasks share one value: its columns are written once
            last = value
            columns = (
                b"\\N" if value is None else _json_text(value),
                b"\\N" if state is None else str(state).encode(),
                b"\\N" if tries is None else str(tries).encode(),
            )
            tail = b"\t".join(columns) + b"\n"
        line = head + (_text(key) + "\t" + str(pos) + middle).encode() + tail
        parts.append(line)
        size += len(line)
        if size >= _CHUNK:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


@dataclass(frozen=True)
class NewRows:
    """Keys no row of the store has, added at its end from position *first*, in order.

    Each key's value is *blob* (JSON text), or ``others[key]``.
    """

    keys: list[str]
    blob: bytes
    others: dict[str, bytes]
    first: int


def copy_appended(
    conn: Connection, store: int, version: int, rows: NewRows, *, tasks: bool, analyze: bool
) -> None:
    """COPY *rows* into the records of *store*, as commit *version*.

    With *tasks* (a tracker's store), each row's facts too, and the claims
    of the keys take their state. A key that has a row fails the COPY
    (``UniqueViolation``). *analyze*: :func:`analyze_written` after the COPY.
    """
    with conn.cursor() as cur, cur.copy(_COPY_RECORDS) as copy:
        for chunk in _appended_text(store, version, rows, tasks):
            copy.write(chunk)
    if analyze:
        analyze_written(conn)
    if tasks:
        conn.execute(_CLAIM_STATES, {"store": store, "version": version})


# A run of keys that need no escape: none holds a character COPY's text
# format escapes, nor one stored_key() changes (a run's keys joined by
# \x01 are checked at once: a hit sends that run the slow way, key by key).
_PLAIN_CHECK = ("\\", "\t", "\n", "\r", "\x00", KEY_MARK)


def _appended_text(store: int, version: int, rows: NewRows, tasks: bool) -> Iterator[bytes]:
    """*rows* in COPY's text format, a run of keys at a time (see :func:`copy_appended`)."""
    keys, others, first = rows.keys, rows.others, rows.first
    head = f"{store}\t"
    tails: dict[bytes, str] = {}

    def tail(value: bytes) -> str:  # the row's columns after its position
        found = tails.get(value)
        if found is None:
            state, tries = task_facts(value) if tasks else (None, None)
            columns = (
                str(version),
                _json_text(value).decode(),
                "\\N" if state is None else str(state),
                "\\N" if tries is None else str(tries),
            )
            found = tails[value] = "\t" + "\t".join(columns) + "\n"
            if len(tails) > 1_000:  # values of their own (tried keys): not kept
                tails.clear()
        return found

    common = tail(rows.blob)
    for start in range(0, len(keys), _RUN):
        run = keys[start : start + _RUN]
        joined = "\x01".join(run)
        plain = not any(mark in joined for mark in _PLAIN_CHECK)
        if plain and (not others or not any(key in others for key in run)):
            text = "".join([f"{head}{key}\t{pos}{common}" for pos, key in enumerate(run, first)])
        else:
            text = "".join(
                [
                    f"{head}{_text(stored_key(key))}\t{pos}"
                    f"{common if key not in others else tail(others[key])}"
                    for pos, key in enumerate(run, first)
                ]
            )
        first += len(run)
        yield text.encode()
