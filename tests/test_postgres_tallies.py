"""``tastypy.tallies`` (layout 4): a tracker's tasks counted by the triggers on ``records``.

Each test writes through the public API (or, for an older writer, as its
SQL did) and then compares the tallies with a recount made here in Python
from the records' JSON, by the tracker's own reading of a record: done and
aborted by Python truth, tries a whole number (else unusable). The recount
shares nothing with the triggers' SQL.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest

import tastypy
from tastypy.storage.postgres import PostgresStorage

from _postgres import Server


@pytest.fixture
def url(pg_server: Server) -> str:
    return pg_server.url()


def recount(pg_server: Server, name: str, database: str = "postgres") -> Counter[tuple[Any, ...]]:
    """(state, aborted, tries) -> tasks, from every live record of store *name*, in Python."""
    out = pg_server.psql(
        "SELECT r.value FROM tastypy.records r JOIN tastypy.stores s ON s.id = r.store "
        f"WHERE s.name = '{name}' AND r.value IS NOT NULL",
        database,
    )
    counted: Counter[tuple[Any, ...]] = Counter()
    for line in out.splitlines():
        if not line.strip():
            continue
        value = orjson.loads(line)
        if not isinstance(value, dict):
            continue  # not a task record: no state
        done, aborted = bool(value.get("_done")), bool(value.get("_aborted"))
        state = 1 if done else 2 if aborted else 0
        tries = value.get("_tries", 0)
        if type(tries) is not int or not 0 <= tries < 2**62:
            tries = -1
        counted[(state, aborted, tries)] += 1
    return counted


def tallies(pg_server: Server, name: str, database: str = "postgres") -> Counter[tuple[Any, ...]]:
    out = pg_server.psql(
        "SELECT t.state, t.aborted, t.tries, t.n FROM tastypy.tallies t "
        f"JOIN tastypy.stores s ON s.id = t.store WHERE s.name = '{name}' AND t.n <> 0",
        database,
    )
    found: Counter[tuple[Any, ...]] = Counter()
    for line in out.splitlines():
        if line.strip():
            state, aborted, tries, n = line.split("|")
            found[(int(state), aborted == "t", int(tries))] = int(n)
    return found


def assert_tallied(pg_server: Server, name: str, database: str = "postgres") -> None:
    assert tallies(pg_server, name, database) == recount(pg_server, name, database)


TRUTHS = [1, 0, -0.0, 2.5, "x", "", [0], [], {"a": 1}, {}, None, True, False, "false"]


def test_every_kind_of_write_keeps_the_tallies_equal_to_a_recount(
    pg_server: Server, url: str, pg_name: str
) -> None:
    with tastypy.Tracker(url, name=pg_name, max_tries=3) as tracker:
        tracker.add_many(f"k{i}" for i in range(3_000))  # COPY straight into records
        tracker.sync()
        assert_tallied(pg_server, pg_name)
        for i, truth in enumerate(TRUTHS):  # done, then aborted by each kind of truth
            tracker[f"k{i}"] = {"_done": True, "_tries": 1, "_aborted": truth}
            tracker[f"k{100 + i}"] = {"_done": False, "_tries": 2, "_aborted": truth}
        tracker["k200"] = {"_done": 1, "_tries": 0, "note": '"_aborted": true'}  # a decoy
        tracker["k201"] = {"x": {"_aborted": True}}  # nested: not the record's
        for key in ("k300", "k301", "k302"):
            assert tracker.try_it(key)
        tracker.mark_done("k300")
        del tracker["k50"]
        tracker.sync()
        assert_tallied(pg_server, pg_name)
        tracker.update({f"k{i}": {"_done": True, "_tries": 1} for i in range(500, 3_000)})
        tracker.sync()  # an update of 2,500 rows: COPY into a batch, then one upsert
        assert_tallied(pg_server, pg_name)
        del tracker["k600"]
        tracker.sync()
        tracker.add("k600")  # added back after its deletion
        tracker.sync()
        tracker.compact()
        assert_tallied(pg_server, pg_name)
        tracker.clear()
        tracker.sync()
        assert tallies(pg_server, pg_name) == Counter()


def test_a_plain_pods_values_and_an_unusable_try_count_as_the_tracker_reads_them(
    pg_server: Server, url: str, pg_name: str
) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(["a", "b", "c"])
    with tastypy.POD(url, name=pg_name) as pod:  # as tastypy set writes a record
        pod["a"] = {"_done": False, "_tries": "3"}  # unusable: tallied as tries -1
        pod["b"] = [1, 2]  # not a record: not tallied
        pod["c"] = {"_tries": 2}
    assert tallies(pg_server, pg_name)[(0, False, -1)] == 1
    assert_tallied(pg_server, pg_name)
    with tastypy.POD(url, name=pg_name + "-plain") as pod:  # a plain POD's values: no state
        pod.update({"x": {"_done": True}, "y": 1})
    assert tallies(pg_server, pg_name + "-plain") == Counter()


def test_concurrent_writers_and_a_removed_store_keep_the_tallies_right(
    pg_server: Server, url: str, pg_name: str
) -> None:
    rng = random.Random(7)
    a = tastypy.Tracker(storage=PostgresStorage(url, pg_name))
    b = tastypy.Tracker(storage=PostgresStorage(url, pg_name))
    try:
        a.add_many(f"k{i}" for i in range(200))
        for step in range(300):
            writer = a if rng.random() < 0.5 else b
            key = f"k{rng.randrange(220)}"
            choice = rng.random()
            if choice < 0.4:
                writer[key] = {"_done": rng.random() < 0.5, "_tries": rng.randrange(4)}
            elif choice < 0.55:
                writer[key] = {"_done": True, "_aborted": rng.choice(TRUTHS)}
            elif choice < 0.7 and key in writer:
                del writer[key]
            elif choice < 0.85:
                writer.try_it(key)
            if step % 25 == 0:
                a.sync()
                b.sync()
                assert_tallied(pg_server, pg_name)
        a.sync()
        b.sync()
        assert_tallied(pg_server, pg_name)
    finally:
        a.close()
        b.close()
    with tastypy.Tracker(url, name=pg_name + "-gone") as tracker:
        tracker.add_many(["a", "b"])
    # Removed as docs/FORMAT.md says: its records, then its row.
    pg_server.psql(
        "BEGIN; SELECT pg_advisory_xact_lock(31319, id::integer) FROM tastypy.stores "
        f"WHERE name = '{pg_name}-gone'; DELETE FROM tastypy.records WHERE store = "
        f"(SELECT id FROM tastypy.stores WHERE name = '{pg_name}-gone'); "
        f"DELETE FROM tastypy.stores WHERE name = '{pg_name}-gone'; COMMIT"
    )
    out = pg_server.psql(
        "SELECT count(*) FROM tastypy.tallies t WHERE NOT EXISTS "
        "(SELECT 1 FROM tastypy.stores s WHERE s.id = t.store)"
    )
    assert out.strip() == "0"


def test_the_migration_to_layout_4_counts_the_records_there(
    pg_server: Server, pg_name: str
) -> None:
    database = pg_name.replace("-", "_")
    pg_server.psql(f"CREATE DATABASE {database}")
    url = pg_server.url(database)
    with tastypy.Tracker(url, name="crawl", max_tries=2) as tracker:
        tracker.add_many(f"k{i}" for i in range(50))
        for i in range(10):
            tracker[f"k{i}"] = {"_done": True, "_tries": 1, "_aborted": i % 2}
    from test_postgres_on_demand import UNDO_LAYOUT_4

    pg_server.psql(UNDO_LAYOUT_4 + "UPDATE tastypy.format SET version = 3", database)
    with tastypy.Tracker(url, name="crawl", readonly=True) as reader:  # reads layout 3
        assert reader.num_done() == 10
    assert pg_server.psql("SELECT version FROM tastypy.format", database).strip() == "3"
    with tastypy.Tracker(url, name="crawl") as tracker:  # a writer migrates: counted
        assert_tallied(pg_server, "crawl", database)
        tracker.mark_done("k20")
    assert pg_server.psql("SELECT version FROM tastypy.format", database).strip() == "4"
    assert_tallied(pg_server, "crawl", database)
    # A writer of layout 3 still running commits as its SQL did: tallied all the same.
    pg_server.psql(
        "INSERT INTO tastypy.records AS r (store, key, pos, version, value, state, tries) "
        'SELECT id, \'k21\', 0, version + 1, \'{"_done":true,"_aborted":[1],"_tries":1}\', 1, 1 '
        "FROM tastypy.stores ON CONFLICT (store, key) DO UPDATE SET value = EXCLUDED.value, "
        "state = EXCLUDED.state, tries = EXCLUDED.tries",
        database,
    )
    assert_tallied(pg_server, "crawl", database)
