"""The engine's tables, their version, and creating them on first use.

Every store of a database lives in the same few tables of the schema
``tastypy`` (``docs/FORMAT.md`` documents them). ``tastypy.format`` holds
one row, the version of this layout: an open refuses a newer one, and a
writable open migrates an older one (:data:`MIGRATIONS`). A read-only open
of an older layout reads it as it is.

Version 2 added ``stores.size``, the number of keys a store holds, kept by
every commit, so that ``len()`` of a store larger than memory is one row;
version 3 ``stores.size_at``, the commit that count is right as of: a
writer of an older version still running (it keeps no such mark) commits
without raising it, and the count is made again (``_engine.py``). Until
version 3, sizes are counted.

Version 4 added ``tallies``, a tracker's tasks counted by state, aborted
and tries, kept by triggers on ``records`` (so by every statement that
writes a record, whoever runs it, in the same transaction), and
``records_notable``, a partial index of the records not done that name
errors or a retry time: counting a store's tasks reads a few rows, not
every record (``_tallies.py``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from ...errors import NotAStoreError, SettingsError

if TYPE_CHECKING:
    from ._link import Connection

__all__ = [
    "ABORTED",
    "COUNT_SQL",
    "LOCK_SPACE",
    "NOTABLE",
    "SCHEMA",
    "VERSION",
    "ensure",
    "q",
    "size_sql",
]

SCHEMA = "tastypy"
VERSION = 4
# The first key of every advisory lock the engine takes (the second is a store's id).
LOCK_SPACE = 0x7A57  # "tast"
_CREATE_LOCK = 0  # the second key while the tables are made

# records has no foreign key to stores: its check, a query per row, made a
# bulk load 2.7 times slower. Removing a store removes its records first,
# under the store's lock (the engine's discard(); docs/FORMAT.md).
_TABLES = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE {s}.format (
    version integer NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {s}.stores (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    meta json NOT NULL DEFAULT '{{}}',
    version bigint NOT NULL DEFAULT 0,
    next_pos bigint NOT NULL DEFAULT 0,
    horizon bigint NOT NULL DEFAULT 0,
    size bigint NOT NULL DEFAULT 0,
    size_at bigint NOT NULL DEFAULT 0,
    created timestamptz NOT NULL DEFAULT now(),
    changed timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {s}.records (
    store bigint NOT NULL,
    key text NOT NULL,
    pos bigint NOT NULL,
    version bigint NOT NULL,
    value json,
    state smallint,
    tries bigint,
    PRIMARY KEY (store, key)
);
CREATE INDEX records_in_order ON {s}.records (store, pos);
CREATE INDEX records_by_commit ON {s}.records (store, version);
CREATE TABLE {s}.claims (
    store bigint NOT NULL REFERENCES {s}.stores (id) ON DELETE CASCADE,
    key text NOT NULL,
    token bigint NOT NULL,
    holder text,
    expires timestamptz NOT NULL,
    claimed timestamptz,
    tries bigint NOT NULL DEFAULT 0,
    new boolean NOT NULL DEFAULT false,
    nonce bigint,
    state smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (store, key)
);
CREATE INDEX claims_by_holder ON {s}.claims (store, holder) WHERE holder IS NOT NULL;
CREATE TABLE {s}.side_logs (
    store bigint NOT NULL REFERENCES {s}.stores (id) ON DELETE CASCADE,
    name text NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    line bytea NOT NULL,
    PRIMARY KEY (store, name, seq)
);
"""

# Layout 4: the tallies, their triggers, and the index of notable records.
# A record counts if it has a value and a state (a tracker's, a JSON
# object); "aborted" is its state 2, or a done record whose _aborted is true
# (as Python reads it: the strpos spares parsing the others); tries -1 is
# an unusable _tries (NULL). One statement-level trigger per operation (a
# trigger with transition tables takes one event), each adding what its
# statement's rows changed, grouped: a COPY of a million rows is one upsert
# of a few tally rows. Commits of a store already queue on its lock, so the
# tally rows add no waiting.
ABORTED = (
    "(state = 2 OR (state = 1 AND strpos(value::text, '\"_aborted\"') > 0 "
    "AND {s}.truthy(value -> '_aborted')))"
)
_COUNTED = "value IS NOT NULL AND state IS NOT NULL"
_TALLIES = """
CREATE TABLE {s}.tallies (
    store bigint NOT NULL REFERENCES {s}.stores (id) ON DELETE CASCADE,
    state smallint NOT NULL,
    aborted boolean NOT NULL,
    tries bigint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (store, state, aborted, tries)
);
CREATE FUNCTION {s}.truthy(v json) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE json_typeof(v)
        WHEN 'boolean' THEN v::text = 'true'
        WHEN 'number' THEN v::text::numeric <> 0
        WHEN 'string' THEN v::text <> '""'
        WHEN 'array' THEN json_array_length(v) > 0
        WHEN 'object' THEN EXISTS (SELECT FROM json_object_keys(v))
        ELSE false END
$$;
CREATE FUNCTION {s}.tally_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {s}.tallies AS t (store, state, aborted, tries, n)
        SELECT store, state, ABORTED, coalesce(tries, -1), count(*) FROM new_rows
        WHERE COUNTED GROUP BY 1, 2, 3, 4
        ON CONFLICT (store, state, aborted, tries) DO UPDATE SET n = t.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {s}.tallies AS t (store, state, aborted, tries, n)
        SELECT store, state, ABORTED, coalesce(tries, -1), -count(*) FROM old_rows
        WHERE COUNTED GROUP BY 1, 2, 3, 4
        ON CONFLICT (store, state, aborted, tries) DO UPDATE SET n = t.n + EXCLUDED.n;
    ELSE
        INSERT INTO {s}.tallies AS t (store, state, aborted, tries, n)
        SELECT store, state, aborted, tries, sum(d) FROM (
            SELECT store, state, ABORTED AS aborted, coalesce(tries, -1) AS tries, 1 AS d
            FROM new_rows WHERE COUNTED
            UNION ALL
            SELECT store, state, ABORTED, coalesce(tries, -1), -1 FROM old_rows WHERE COUNTED
        ) AS changed GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0
        ON CONFLICT (store, state, aborted, tries) DO UPDATE SET n = t.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tally_inserts AFTER INSERT ON {s}.records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {s}.tally_records();
CREATE TRIGGER tally_updates AFTER UPDATE ON {s}.records
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.tally_records();
CREATE TRIGGER tally_deletes AFTER DELETE ON {s}.records
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {s}.tally_records();
CREATE INDEX records_notable ON {s}.records (store, pos) WHERE NOTABLE;
""".replace("ABORTED", ABORTED).replace("COUNTED", _COUNTED)
# Records not done that may name errors or a retry time (the tracker's
# _errors and _retry_at): status reads only these, through the index.
NOTABLE = (
    "state <> 1 AND (strpos(value::text, '\"_errors\"') > 0 "
    "OR strpos(value::text, '\"_retry_at\"') > 0)"
)
_TALLIES = _TALLIES.replace("NOTABLE", NOTABLE)
_COUNT_TALLIES = (
    "INSERT INTO {s}.tallies (store, state, aborted, tries, n) "
    f"SELECT store, state, {ABORTED}, coalesce(tries, -1), count(*) FROM {{s}}.records "
    f"WHERE {_COUNTED} GROUP BY 1, 2, 3, 4"
)

# What turns layout version N into N + 1: statements run in one transaction
# under the creation lock. ALTER TABLE waits for every commit under way (each
# reads its store's row first) and holds back those that follow.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE {s}.stores ADD COLUMN IF NOT EXISTS size bigint NOT NULL DEFAULT 0",),
    # Development commits wrote layout 2 with size_at already; others without.
    2: (
        "ALTER TABLE {s}.stores ADD COLUMN IF NOT EXISTS size_at bigint NOT NULL DEFAULT 0",
        "UPDATE {s}.stores s SET size_at = s.version, size = (SELECT count(*) "
        "FROM {s}.records r WHERE r.store = s.id AND r.value IS NOT NULL)",
    ),
    # CREATE TRIGGER locks records against writes until this commits: the
    # count made after it misses no commit, and every later one is tallied.
    3: (_TALLIES, _COUNT_TALLIES),
}


# A store's number of keys, in SQL over its row ``s`` of stores: counted, or
# (layout 3 on) the count its commits keep if that is as of its last commit,
# else counted (a writer of an older layout committed since; the next sync
# of layout 3 makes the count again).
COUNT_SQL = "(SELECT count(*) FROM {s}.records c WHERE c.store = s.id AND c.value IS NOT NULL)"
_KEPT_SQL = f"(CASE WHEN s.size_at = s.version THEN s.size ELSE {COUNT_SQL} END)"


def size_sql(layout: int) -> str:
    """The SQL of a store's number of keys, for tables of *layout*."""
    return _KEPT_SQL if layout >= 3 else COUNT_SQL


@functools.cache
def q(text: str) -> bytes:
    """*text* with ``{s}`` standing for the engine's schema, quoted as an identifier.

    As bytes, rendered once: psycopg then reuses its parse of the statement
    (a ``Composed`` would be rendered anew at each execution).
    """
    return sql.SQL(text).format(s=sql.Identifier(SCHEMA)).as_bytes(None)


def _version(conn: Connection, where: str) -> int | None:
    """The layout's version in this database; None if there are no tables yet."""
    # Scans of the catalogs, not to_regclass(): a scan sees what another
    # session committed while this transaction waited for the lock, where a
    # name lookup may answer from this session's cache of names not found.
    found = conn.execute(
        "SELECT count(c.oid), count(c.oid) FILTER (WHERE c.relname = 'format') "
        "FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid "
        "WHERE n.nspname = %s",
        (SCHEMA,),
    ).fetchone()
    assert found is not None
    relations, has_format = found
    if not has_format:
        if relations:
            raise NotAStoreError(
                f"{where}: the database's schema {SCHEMA!r} holds tables that are not "
                "tastypy's (no tastypy.format)"
            )
        return None
    rows = conn.execute(q("SELECT version FROM {s}.format")).fetchall()
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        raise NotAStoreError(f"{where}: tastypy.format must hold one row, its version")
    version: int = rows[0][0]
    return version


def _make_or_migrate(conn: Connection, where: str) -> int:
    """Make the tables, or migrate them to :data:`VERSION`, in one transaction; the version."""
    with conn.transaction():
        # Two processes making the tables at once: one makes them, the other waits.
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, _CREATE_LOCK))
        version = _version(conn, where)
        if version is None:
            conn.execute(q(_TABLES))
            conn.execute(q(_TALLIES))
            conn.execute(q("INSERT INTO {s}.format (version) VALUES (%s)"), (VERSION,))
            return VERSION
        while version < VERSION:
            for statement in MIGRATIONS[version]:
                conn.execute(q(statement))
            version += 1
            conn.execute(q("UPDATE {s}.format SET version = %s"), (version,))
        return version


def ensure(conn: Connection, where: str, *, create: bool) -> int | None:
    """Check the tables' version, making or migrating them if *create*; that version.

    None: there are no tables (and *create* was false). A read-only caller
    (not *create*), or one whose role may not migrate the tables, may get an
    older version than :data:`VERSION`.

    Raises
    ------
    SettingsError
        If a newer tastypy made them.
    NotAStoreError
        If the schema holds something else.
    """
    version = _version(conn, where)
    if create and (version is None or version < VERSION):
        try:
            version = _make_or_migrate(conn, where)
        except psycopg.errors.InsufficientPrivilege:
            # Only the tables' owner may migrate them (ALTER TABLE): this role
            # goes on with the layout as it is, as a read-only open does.
            version = _version(conn, where)
            if version is None:
                raise
    if version is not None and version > VERSION:
        raise SettingsError(
            f"{where}: the tables are of layout version {version}, made by a newer tastypy "
            f"(this one reads up to {VERSION}); upgrade tastypy"
        )
    return version
