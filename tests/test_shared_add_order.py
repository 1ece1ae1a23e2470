"""Adding tasks to a shared tracker that has tasks, and the order that results, on each engine.

A shared tracker commits some changes at once: ``add_many`` and ``add``
(under the store's lock), and on PostgreSQL a task's pending change before
its claim. Such a commit puts first the keys added before it and not
synced yet (as ``sync_key`` does), so that the order stays the order the
keys were added in: in memory, in the store, and on reopen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import tastypy
from tastypy.tracker._tracker import ProgressTracker

from _postgres import Server
from _subproc import run

Opener = Callable[[], ProgressTracker]
NEW = {"_done": False, "_tries": 0}


@pytest.fixture(params=["files", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    if request.param == "files":
        return lambda: tastypy.Tracker(tmp_path / "t", shared=True)
    server: Server = request.getfixturevalue("pg_server")
    name = request.getfixturevalue("pg_name")
    return lambda: tastypy.Tracker(server.url(), name=name)


def test_add_many_on_a_tracker_that_has_tasks(opener: Opener) -> None:
    with opener() as tracker:
        tracker.add_many(["a"])
        tracker.add_many(["b", "c"])
        with pytest.raises(tastypy.DuplicateKeyError, match="'b'"):
            tracker.add_many(["d", "b"])
        assert list(tracker) == ["a", "b", "c"]
    with opener() as tracker:
        tracker.add_many(["d"])
        assert list(tracker) == ["a", "b", "c", "d"]


def test_tasks_added_at_once_go_after_keys_set_before_and_not_synced(opener: Opener) -> None:
    # Adding commits at once (README: shared trackers), and commits first the
    # keys added before and not synced yet, as sync_key does: the order stays
    # the order they were added in, in memory, in the store and on reopen.
    with opener() as tracker:
        tracker.add_many(["k0", "k1"])
    with opener() as tracker:
        tracker["a"] = dict(NEW)  # pending
        tracker.add_many(["b"])  # committed at once
        tracker.add("c")
        tracker["d"] = dict(NEW)
        tracker.add_many_if_absent(["e", "a"])
        order = ["k0", "k1", "a", "b", "c", "d", "e"]
        assert list(tracker) == order
        tracker.sync()
        assert list(tracker) == order
    with opener() as tracker:
        assert list(tracker) == order


def test_a_claim_that_commits_its_task_first_keeps_the_order(opener: Opener) -> None:
    with opener() as tracker:
        tracker.add_many([f"k{i}" for i in range(5)])
    with opener() as tracker:
        tracker["new1"] = dict(NEW)
        tracker["new2"] = dict(NEW)
        del tracker["k2"]
        tracker["k2"] = dict(NEW)  # added again: at the end
        assert tracker.try_it("k2")  # on PostgreSQL, k2's change is committed first
        tracker.mark_done("k2")
        order = ["k0", "k1", "k3", "k4", "new1", "new2", "k2"]
        assert list(tracker) == order
    with opener() as tracker:
        assert list(tracker) == order
        assert tracker.num_done() == 1


def test_a_value_that_cannot_be_written_fails_no_other_tasks_claim_or_release(
    opener: Opener,
) -> None:
    # The commit before a claim (PostgreSQL) and at a release takes the keys
    # added before the task's: one of them that cannot be written stays
    # pending, and is named by the next sync, not by try_it or release.
    with opener() as tracker:
        tracker.add("k0")
    with opener() as tracker:
        tracker["bad"] = {"_done": True, "_tries": 0, "meta": {}}
        tracker["bad"]["meta"]["x"] = float("nan")  # nested: found at the sync
        tracker["k0"]["note"] = "changed"
        assert tracker.try_it("k0")
        assert tracker.try_it("new")
        tracker.release("new")
        assert "new" not in tracker.holders()
        with pytest.raises(TypeError, match="'bad'"):
            tracker.sync()
        tracker["bad"]["meta"]["x"] = 0.0
        tracker.mark_dirty("bad")
    with opener() as tracker:
        assert tracker["bad"]["meta"] == {"x": 0.0}
        assert tracker.tries("k0") == 1


SYNC_KEY_THEN_DIE = """
import os, sys, tastypy
t = tastypy.Tracker(sys.argv[1])
t.add("a")
t.sync()
assert t.try_it("a")  # its try is in the tries log
del t["a"]  # pending: goes with the next commit of a key added after it
t.add("b")
t.sync_key("b")  # commits the deletion of "a" too
os._exit(0)  # before any other sync
"""


def test_sync_key_commits_a_deletion_before_it_and_the_tries_log_agrees(tmp_path: Path) -> None:
    done = run(SYNC_KEY_THEN_DIE, str(tmp_path / "t"))
    assert done.returncode == 0, done.stderr
    with tastypy.Tracker(tmp_path / "t") as tracker:
        assert dict(tracker.items()) == {"b": {"_done": False, "_tries": 0}}
