"""The states of a task (done, aborted, exhausted, to do) and the 0.0.3 names that ask them."""

from __future__ import annotations

import pytest

import tastypy
from tastypy import ProgressTracker

from _trackers import OpenTracker, assert_counts, reopen

# -- the names of tastypy 0.0.3 -------------------------------------------------------


def test_done_is_check(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    assert tracker.done("missing") is False
    tracker.add("a")
    assert tracker.done("a") is False
    tracker.mark_done("a")
    assert tracker.done("a") is True
    assert ProgressTracker.done is ProgressTracker.check


def test_should_do_and_should_try(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=2)
    tracker.add_many(["fresh", "tried", "done", "aborted", "exhausted", "done_exhausted"])
    tracker.increment_tries("tried")
    tracker.mark_done("done")
    tracker.abort("aborted")
    tracker["exhausted"]["_tries"] = 2
    tracker["done_exhausted"]["_tries"] = 2
    tracker.mark_done("done_exhausted")

    should_do = {k: tracker.should_do(k) for k in [*tracker, "missing"]}
    assert should_do == {
        "fresh": True,
        "tried": True,
        "done": False,
        "aborted": False,
        "exhausted": False,
        "done_exhausted": False,
        "missing": True,
    }
    should_try = {k: tracker.should_try(k) for k in [*tracker, "missing"]}
    assert should_try == {
        "fresh": True,
        "tried": True,
        "done": True,
        "aborted": False,
        "exhausted": False,
        "done_exhausted": True,
        "missing": True,
    }
    assert "missing" not in tracker
    # should_do agrees with try_it.
    for key, expected in should_do.items():
        assert tracker.try_it(key) is expected


def test_todo_keys_and_items(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=2)
    tracker.add_many(["a", "done", "b", "aborted", "exhausted", "c", "tried"])
    tracker.mark_done("done")
    tracker.abort("aborted")
    tracker["exhausted"]["_tries"] = 2
    tracker["tried"]["_tries"] = 1
    assert list(tracker.todo_keys()) == ["a", "b", "c", "tried"]
    items = list(tracker.todo_items())
    assert items == [
        ("a", {"_done": False, "_tries": 0}),
        ("b", {"_done": False, "_tries": 0}),
        ("c", {"_done": False, "_tries": 0}),
        ("tried", {"_done": False, "_tries": 1}),
    ]
    # The records are the tracker's: a change through them is counted.
    items[0][1]["_done"] = True
    assert tracker.check("a") is True
    assert list(tracker.todo_keys()) == ["b", "c", "tried"]
    tracker.unabort("aborted")
    tracker.reset_tries("exhausted")
    assert list(tracker.todo_keys()) == ["b", "aborted", "exhausted", "c", "tried"]
    assert_counts(tracker)


def test_abort_unabort_aborted(open_tracker: OpenTracker, open_pods: list[tastypy.POD]) -> None:
    tracker = open_tracker()
    tracker.add_many(["a", "b", "c", "d"])
    assert tracker.aborted("a") is False
    tracker.abort("a")
    assert tracker.aborted("a") is True
    assert tracker.try_it("a") is False
    assert tracker.tries("a") == 0
    assert tracker.num_aborted() == 1
    assert tracker.fraction_aborted() == 0.25
    assert tracker.percent_aborted() == "25.00 %"
    assert tracker.percent_aborted(1) == "25.0 %"
    assert list(tracker.todo_keys()) == ["b", "c", "d"]
    assert_counts(tracker)

    tracker = reopen(tracker, open_pods)
    assert tracker.aborted("a") is True
    assert tracker.num_aborted() == 1

    tracker.unabort("a")
    assert tracker.aborted("a") is False
    assert tracker.num_aborted() == 0
    assert tracker.percent_aborted() == "0.00 %"
    tracker.unabort("a")  # unaborting a task that is not aborted is harmless
    assert tracker.try_it("a") is True
    assert list(tracker.todo_keys()) == ["a", "b", "c", "d"]
    with pytest.raises(KeyError):
        tracker.abort("missing")
    assert_counts(tracker)


def test_num_exhausted(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=2)
    for _ in range(3):
        tracker.try_it("a")
    tracker.try_it("b")
    tracker.try_it("c")
    tracker.try_it("c")
    tracker.mark_done("c")  # done tasks are not exhausted
    assert tracker.num_exhausted() == 1
    tracker.increment_tries("b")
    assert tracker.num_exhausted() == 2
    tracker.decrement_tries("a")
    assert tracker.num_exhausted() == 1
    assert_counts(tracker)


def test_errors_of_a_fresh_task_is_empty(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    tracker.add("a")
    assert tracker.errors("a") == []
    tracker.try_it("b")
    assert tracker.errors("b") == []
    with pytest.raises(KeyError):
        tracker.errors("missing")


def test_errors_returns_a_copy(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    tracker["a"] = {"_errors": [{"error": "ValueError: x"}]}
    errors = tracker.errors("a")
    assert errors == [{"error": "ValueError: x"}]
    errors.append({"error": "mine"})
    assert tracker.errors("a") == [{"error": "ValueError: x"}]
