"""A served tracker's ``add_many`` of new tasks: one COPY, with a sync's outcome.

On PostgreSQL, ``add_many`` of tasks this process does not hold goes
straight to the store in one transaction (``storage/postgres/_append.py``),
without a sync's bookkeeping per key; whenever it cannot (a key is there,
a deletion's row is in the way, a key has a change here) the sync's way
does it. These tests check, through the public API and a reader, that both
ways give the same store: order, records, counts, tries claims counted,
refusals that add nothing.
"""

from __future__ import annotations

import pytest

import tastypy

from _postgres import AWKWARD_KEYS, Server

N = 3_000


@pytest.fixture
def url(pg_server: Server) -> str:
    return pg_server.url()


def version(pg_server: Server, name: str) -> int:
    return int(pg_server.psql(f"SELECT version FROM tastypy.stores WHERE name = '{name}'"))


def keys_of(url: str, name: str) -> list[str]:
    with tastypy.Tracker(url, name=name, readonly=True) as reader:
        return list(reader)


def test_many_new_tasks_go_at_the_end_in_one_commit(
    pg_server: Server, url: str, pg_name: str
) -> None:
    new = [f"n{i}" for i in range(N)]
    new[5:5] = AWKWARD_KEYS  # escaped in COPY's text, or stored marked
    with tastypy.Tracker(url, name=pg_name, max_tries=3) as tracker:
        tracker.add_many(["a", "b", "c"])
        tracker.mark_done("b")
        assert tracker["c"]["_tries"] == 0  # held in memory here
        tracker.sync()
        before = version(pg_server, pg_name)
        tracker.add_many(new)
        assert version(pg_server, pg_name) == before + 1  # one commit, seen whole
        assert len(tracker) == N + 9
        assert tracker.num_done() == 1
        todo = list(tracker.todo_keys())
        assert todo == ["a", "c", *new]
        assert tracker[new[-1]] == {"_done": False, "_tries": 0}
        assert tracker["nul\x00key"] == {"_done": False, "_tries": 0}
        assert tracker.try_it(new[0]) and tracker.tries(new[0]) == 1
        tracker.mark_done(new[0])
    with tastypy.Tracker(url, name=pg_name, max_tries=3) as again:
        assert list(again) == ["a", "b", "c", *new]
        assert again.num_done() == 2
        assert again[new[0]]["_done"] is True
        assert again["tab\there"] == {"_done": False, "_tries": 0}


def test_a_clash_at_the_end_adds_nothing_and_names_the_task(url: str, pg_name: str) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(["t0", "t1"])
    new = [f"n{i}" for i in range(N)]
    with tastypy.Tracker(url, name=pg_name) as tracker:
        with pytest.raises(tastypy.DuplicateKeyError, match="'t1'"):
            tracker.add_many([*new, "t1"])  # the COPY fails on its last row
        assert len(tracker) == 2
        assert "n0" not in tracker
        tracker.add_many(new)  # without the clash: all of them
        assert len(tracker) == N + 2
    assert keys_of(url, pg_name) == ["t0", "t1", *new]


def test_a_task_deleted_and_synced_is_added_again_at_its_new_place(url: str, pg_name: str) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(["first", "gone", "kept"])
        tracker.mark_done("gone")
        del tracker["gone"]
        tracker.sync()  # its row stays, valueless, in the way of a COPY
    new = [f"n{i}" for i in range(N)]
    new.insert(N // 2, "gone")
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(new)
        assert tracker["gone"] == {"_done": False, "_tries": 0}  # a new task
        assert tracker.num_done() == 0
    assert keys_of(url, pg_name) == ["first", "kept", *new]


def test_a_task_deleted_here_and_not_synced_is_added_as_new(url: str, pg_name: str) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(["first", "x", "last"])
        tracker.mark_done("x")
        tracker.sync()
        del tracker["x"]  # pending here
        new = [f"n{i}" for i in range(N)]
        tracker.add_many(["x", *new])
        assert tracker["x"] == {"_done": False, "_tries": 0}
        assert list(tracker) == ["first", "last", "x", *new]
    assert keys_of(url, pg_name) == ["first", "last", "x", *new]
    with tastypy.Tracker(url, name=pg_name, readonly=True) as reader:
        assert reader.num_done() == 0


def test_tasks_another_writer_added_meanwhile_come_first(url: str, pg_name: str) -> None:
    with tastypy.Tracker(url, name=pg_name) as mine, tastypy.Tracker(url, name=pg_name) as theirs:
        mine.add("mine0")
        theirs.add_many([f"t{i}" for i in range(10)])  # committed at once
        new = [f"n{i}" for i in range(N)]
        mine.add_many(new)
        assert list(mine) == ["mine0", *(f"t{i}" for i in range(10)), *new]
        with pytest.raises(tastypy.DuplicateKeyError, match="'n7'"):
            theirs.add_many(["other", "n7"])
        assert len(theirs) == N + 11
    assert keys_of(url, pg_name)[-1] == new[-1]


def test_add_many_if_absent_skips_the_tasks_there_in_a_large_batch(url: str, pg_name: str) -> None:
    old = [f"k{i}" for i in range(0, N, 2)]
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(old)
        tracker.mark_done("k0")
    every = [f"k{i}" for i in range(N)]
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many_if_absent(every)
        assert len(tracker) == N
        assert tracker.num_done() == 1
    odd = [f"k{i}" for i in range(1, N, 2)]
    assert keys_of(url, pg_name) == [*old, *odd]


def test_a_large_add_many_keeps_nothing_in_memory(url: str, pg_name: str) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(f"n{i}" for i in range(N))
        window = tracker._window
        assert window is not None
        assert len(window.resident()) == 0  # a worker's memory does not grow with the batch
        assert len(tracker) == N


@pytest.mark.parametrize("method", ["add_many", "add_many_if_absent"])
def test_a_key_that_cannot_be_stored_adds_nothing(url: str, pg_name: str, method: str) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add("existing")
        with pytest.raises(TypeError, match="lone surrogate"):
            getattr(tracker, method)([*(f"n{i}" for i in range(N)), "bad\ud800"])
        assert len(tracker) == 1
        tracker.add_many(["n0"])
    assert keys_of(url, pg_name) == ["existing", "n0"]
