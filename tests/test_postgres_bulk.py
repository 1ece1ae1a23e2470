"""Large syncs on PostgreSQL: COPY instead of one statement, with the same outcome.

From a few thousand rows on, a sync writes new keys by ``COPY`` into the
records, and other rows by ``COPY`` into a temporary table then one upsert
(``storage/postgres/_writes.py``). These tests make batches large enough to
take those ways and check what a reader sees: order, values (escapes,
nested key order), deletions' rows in the way of a COPY, the tries that
claims counted, and a large sync that fails leaving the store as it was and
its changes pending.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest

import tastypy
from tastypy.storage.postgres._writes import BULK_ROWS

from _postgres import AWKWARD_KEYS, AWKWARD_VALUE, Server
from _subproc import Child

N = BULK_ROWS + 500  # enough rows for a batch to go by COPY


@pytest.fixture
def url(pg_server: Server) -> str:
    return pg_server.url()


def read_back(url: str, name: str) -> list[tuple[str, object]]:
    with tastypy.POD(url, name=name, readonly=True) as reader:
        return list(reader.items())


def test_a_large_batch_of_new_keys_keeps_order_values_and_escapes(url: str, pg_name: str) -> None:
    items = [(f"k{i}", {"n": i, "b": [i, "x"], "a": None}) for i in range(N)]
    items[10:10] = [(key, AWKWARD_VALUE) for key in AWKWARD_KEYS]
    with tastypy.POD(url, name=pg_name) as pod:
        pod.update(items)
    back = read_back(url, pg_name)
    assert back == items
    assert [list(value) for _key, value in back[10:16]] == [["z", "a"]] * 6  # key order kept


def test_large_batches_of_updates_deletions_and_new_keys_together(url: str, pg_name: str) -> None:
    with tastypy.POD(url, name=pg_name) as pod:
        pod.update((f"k{i}", i) for i in range(N))
        pod.sync()
        pod.hold()  # what follows is one batch
        expected = {f"k{i}": i for i in range(N)}
        for i in range(0, N, 3):  # updates keep their place
            pod[f"k{i}"] = expected[f"k{i}"] = {"v": -i, "a": 1}
        for i in range(1, N, 3):  # deletions
            del pod[f"k{i}"]
            del expected[f"k{i}"]
        for i in range(N, 2 * N):  # new keys at the end
            pod[f"k{i}"] = expected[f"k{i}"] = i
        pod[AWKWARD_KEYS[0]] = expected[AWKWARD_KEYS[0]] = AWKWARD_VALUE
    assert read_back(url, pg_name) == list(expected.items())


def test_a_large_batch_of_updates_alone(url: str, pg_name: str) -> None:
    with tastypy.POD(url, name=pg_name) as pod:
        pod.update((f"k{i}", i) for i in range(N))
        pod.sync()
        pod.hold()
        for i in range(N):
            pod[f"k{i}"] = [i, "updated"]
    assert read_back(url, pg_name) == [(f"k{i}", [i, "updated"]) for i in range(N)]


def test_keys_added_again_over_their_deletions_rows_go_to_the_end(url: str, pg_name: str) -> None:
    # The deletions leave rows (so other writers learn of them); a COPY of the
    # same keys as new would collide with those rows and takes the other way.
    with tastypy.POD(url, name=pg_name) as pod:
        pod["first"] = 0
        pod.update((f"k{i}", i) for i in range(N))
        pod.sync()
        pod.hold()
        for i in range(N):
            del pod[f"k{i}"]
        pod.sync()
        pod.update((f"k{i}", -i) for i in range(N - 1, -1, -1))  # back, in reverse
        pod["last"] = 1
    expected = [("first", 0), *((f"k{i}", -i) for i in range(N - 1, -1, -1)), ("last", 1)]
    assert read_back(url, pg_name) == expected


def test_another_writer_sees_a_large_batch_as_one_commit(url: str, pg_name: str) -> None:
    with tastypy.POD(url, name=pg_name) as other, tastypy.POD(url, name=pg_name) as pod:
        other["theirs"] = 1
        other.sync()
        pod.update((f"k{i}", i) for i in range(N))
        pod.sync()
        other.refresh()
        assert list(other) == ["theirs", *(f"k{i}" for i in range(N))]


@pytest.fixture
def refuse_poison(url: str) -> Iterator[None]:
    """A trigger that makes the server refuse any record of the key ``poison``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NEW.key = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; "
            "RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON tastypy.records "
            "FOR EACH ROW EXECUTE FUNCTION public.refuse_poison()"
        )
    try:
        yield
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER IF EXISTS refuse_poison ON tastypy.records")
            conn.execute("DROP FUNCTION IF EXISTS public.refuse_poison()")


@pytest.fixture
def made(url: str, pg_name: str) -> str:
    """The store made (and so the engine's tables) before a test adds its trigger."""
    with tastypy.POD(url, name=pg_name) as pod:
        pod["before"] = 0
    return pg_name


@pytest.mark.parametrize("updates", [False, True], ids=["new keys", "updates"])
@pytest.mark.usefixtures("refuse_poison")
def test_a_large_sync_that_fails_changes_nothing_and_keeps_its_changes_pending(
    url: str, made: str, updates: bool
) -> None:
    pod = tastypy.POD(url, name=made)
    if updates:
        pod.update((f"k{i}", i) for i in range(N))
        pod.sync()
    stored = read_back(url, made)
    with pytest.raises(OSError, match=r"server refused \(poison refused"):
        pod.update([*((f"k{i}", [i]) for i in range(N)), ("poison", 1)])  # one batch
    assert read_back(url, made) == stored  # nothing of the batch
    assert len(pod) == N + 2 and pod["k7"] == [7]
    del pod["poison"]
    pod.sync()  # the same changes, minus the refused key, go now
    pod.close()
    assert read_back(url, made) == [("before", 0), *((f"k{i}", [i]) for i in range(N))]


CLAIM_NEW_AND_DIE = """
import os, sys, tastypy
t = tastypy.Tracker(sys.argv[1], name=sys.argv[2], max_tries=3, lease=60)
assert t.try_it("claimed-elsewhere")  # a new task, claimed: the try is counted at once
print("claimed", flush=True)
os._exit(0)  # before any sync: its record never reaches the store
"""


def test_a_large_add_many_keeps_the_tries_that_claims_counted(url: str, pg_name: str) -> None:
    with tastypy.Tracker(url, name=pg_name, max_tries=3) as tracker:
        tracker.add("first")
    with Child(CLAIM_NEW_AND_DIE, url, pg_name) as child:
        child.expect("claimed")
        assert child.finish() == 0
    keys = [f"t{i}" for i in range(N)]
    keys.insert(N // 2, "claimed-elsewhere")
    with tastypy.Tracker(url, name=pg_name, max_tries=3) as tracker:
        tracker.add_many(keys)
        assert tracker["claimed-elsewhere"]["_tries"] == 1
        assert tracker["t0"] == {"_done": False, "_tries": 0}
        assert len(list(tracker.todo_keys())) == N + 2
    with tastypy.Tracker(url, name=pg_name, max_tries=3) as again:
        assert list(again) == ["first", *keys]
        assert again["claimed-elsewhere"]["_tries"] == 1
        assert again.try_it("t1") and again.tries("t1") == 1


def test_a_large_batch_of_task_states_reaches_the_claims(url: str, pg_name: str) -> None:
    # Each claim row keeps its record's state (the claims read it): a large
    # batch of mark_done must give it to every claim of the batch.
    keys = [f"t{i}" for i in range(N)]
    with tastypy.Tracker(url, name=pg_name, max_tries=3) as tracker:
        tracker.add_many(keys)
        for key in keys:
            assert tracker.try_it(key)
            tracker.mark_done(key)
    with psycopg.connect(url) as conn:  # docs/FORMAT.md: claims.state, records.state
        states = conn.execute(
            "SELECT c.state, r.state, count(*) FROM tastypy.claims c "
            "JOIN tastypy.stores s ON s.id = c.store AND s.name = %s "
            "JOIN tastypy.records r ON r.store = c.store AND r.key = c.key "
            "GROUP BY c.state, r.state",
            (pg_name,),
        ).fetchall()
    assert states == [(1, 1, N)]  # done, in each claim row as in its record
    with tastypy.Tracker(url, name=pg_name, max_tries=3) as other:
        assert other.num_done() == N
        assert not any(other.try_it(key) for key in keys[:50])
        assert list(other.todo_keys()) == []


def test_a_role_that_may_not_make_temporary_tables_still_syncs_large_batches(
    pg_server: Server, made: str
) -> None:
    # REVOKE TEMPORARY ... FROM PUBLIC is a common hardening: the large
    # batch's temporary table is refused, and the rows go the other way.
    database = f"notemp_{made.replace('-', '_')}"
    pg_server.psql(f"CREATE DATABASE {database}")
    pg_server.psql(
        f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC; "
        "DO $$ BEGIN CREATE ROLE weak LOGIN PASSWORD 'weak'; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$; "
        f"GRANT CREATE ON DATABASE {database} TO weak",
    )
    url = f"postgresql://weak:weak@127.0.0.1:{pg_server.port}/{database}"
    with tastypy.POD(url, name="s") as pod:
        pod.update((f"k{i}", i) for i in range(N))
        pod.update((f"k{i}", -i) for i in range(N))  # updates: the temporary-table way
    assert read_back(url, "s") == [(f"k{i}", -i) for i in range(N)]


def test_a_database_that_is_not_utf8_is_refused(pg_server: Server, pg_name: str) -> None:
    database = f"latin_{pg_name.replace('-', '_')}"
    pg_server.psql(
        f"CREATE DATABASE {database} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
        "TEMPLATE template0"
    )
    with pytest.raises(tastypy.SettingsError, match="encoding is LATIN1, and a store needs UTF8"):
        tastypy.POD(pg_server.url(database), name="s")


def test_a_store_that_grew_by_a_large_part_at_once_is_known_to_the_planner(
    pg_server: Server, url: str, pg_name: str
) -> None:
    # Without fresh statistics the planner took a new store of 12,000 rows
    # for one of a row or so, and read each key by scanning them all.
    with tastypy.POD(url, name=pg_name) as pod:
        pod.update((f"k{i}", i) for i in range(12_000))
    store = pg_server.psql(f"SELECT id FROM tastypy.stores WHERE name = '{pg_name}'").strip()
    plan = pg_server.psql(
        f"EXPLAIN (FORMAT JSON) SELECT * FROM tastypy.records WHERE store = {store}"
    )
    estimated = json.loads(plan)[0]["Plan"]["Plan Rows"]
    assert estimated > 1_000, plan
