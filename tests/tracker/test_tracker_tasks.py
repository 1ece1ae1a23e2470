"""ProgressTracker (alias Tracker): the class, the seed API, and ``add_many`` of 0.0.3.

``run()`` is tested in test_runner.py.
"""

from __future__ import annotations

from typing import Any

import pytest

import tastypy
from tastypy import ProgressTracker

from _trackers import OpenTracker, assert_counts, reopen

# -- the class ------------------------------------------------------------------------


def test_tracker_is_progress_tracker_and_a_pod(open_tracker: OpenTracker) -> None:
    assert tastypy.Tracker is tastypy.ProgressTracker
    assert issubclass(tastypy.Tracker, tastypy.PersistentOrderedDict)
    tracker = open_tracker()
    assert isinstance(tracker, tastypy.POD)
    assert isinstance(tracker, tastypy.Tracker)


def test_opening_an_open_path_again_returns_the_same_object(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    assert open_tracker() is tracker


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_max_tries_must_be_a_whole_number(open_tracker: OpenTracker, bad: object) -> None:
    with pytest.raises(ValueError, match="max_tries"):
        open_tracker(max_tries=bad)


def test_max_tries_property(open_tracker: OpenTracker) -> None:
    assert open_tracker("a").max_tries is None
    assert open_tracker("b", max_tries=0).max_tries is None
    assert open_tracker("c", max_tries=4).max_tries == 4


# -- the seed API ---------------------------------------------------------------------


def test_add_creates_an_untried_task(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    tracker.add("a")
    assert "a" in tracker
    assert tracker["a"] == {"_done": False, "_tries": 0}
    assert tracker.check("a") is False
    assert tracker.tries("a") == 0


def test_add_existing_key_raises_duplicate_key_error(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    tracker.add("a")
    tracker.mark_done("a")
    with pytest.raises(tastypy.DuplicateKeyError) as excinfo:
        tracker.add("a")
    assert isinstance(excinfo.value, tastypy.TastypyError)
    assert isinstance(excinfo.value, KeyError)
    # Nothing changed.
    assert tracker["a"] == {"_done": True, "_tries": 0}
    assert len(tracker) == 1


def test_add_normalizes_keys_like_the_pod(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    tracker.add(1)
    assert "1" in tracker
    assert 1 in tracker
    with pytest.raises(tastypy.DuplicateKeyError):
        tracker.add("1")
    tracker.mark_done(1)
    assert tracker.check("1") is True
    assert tracker.check(1) is True


def test_add_if_absent(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    tracker.add_if_absent("a")
    assert tracker["a"] == {"_done": False, "_tries": 0}
    tracker.mark_done("a")
    tracker.increment_tries("a")
    tracker.add_if_absent("a")  # no error, and the record is untouched
    assert tracker["a"] == {"_done": True, "_tries": 1}
    assert list(tracker) == ["a"]


def test_check(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    assert tracker.check("missing") is False
    assert "missing" not in tracker  # check does not add
    tracker.add("a")
    assert tracker.check("a") is False
    tracker.mark_done("a")
    assert tracker.check("a") is True
    tracker.mark_not_done("a")
    assert tracker.check("a") is False


def test_check_or_add(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    assert tracker.check_or_add("a") is False
    assert tracker["a"] == {"_done": False, "_tries": 0}
    tracker.mark_done("a")
    assert tracker.check_or_add("a") is True
    assert len(tracker) == 1


def test_tries_increment_decrement_reset(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    tracker.add("a")
    assert tracker.tries("a") == 0
    tracker.increment_tries("a")
    tracker.increment_tries("a")
    tracker.increment_tries("a")
    assert tracker.tries("a") == 3
    tracker.decrement_tries("a")
    assert tracker.tries("a") == 2
    tracker.reset_tries("a")
    assert tracker.tries("a") == 0
    tracker.decrement_tries("a")  # never below zero
    tracker.decrement_tries("a")
    assert tracker.tries("a") == 0
    assert tracker["a"]["_tries"] == 0
    with pytest.raises(KeyError):
        tracker.tries("missing")


def test_tries_and_done_persist(open_tracker: OpenTracker, open_pods: list[tastypy.POD]) -> None:
    tracker = open_tracker()
    tracker.add("a")
    tracker.add("b")
    tracker.increment_tries("a")
    tracker.increment_tries("a")
    tracker.mark_done("b")
    tracker = reopen(tracker, open_pods)
    assert tracker.tries("a") == 2
    assert tracker.check("a") is False
    assert tracker.check("b") is True
    assert tracker.tries("b") == 0


def test_mark_done_and_not_done(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    tracker.add("a")
    tracker.mark_done("a")
    assert tracker["a"]["_done"] is True
    assert tracker.num_done() == 1
    tracker.mark_not_done("a")
    assert tracker["a"]["_done"] is False
    assert tracker.num_done() == 0
    with pytest.raises(KeyError):
        tracker.mark_done("missing")


def test_counts_fractions_and_percents(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    for key in "abcdefgh":
        tracker.add(key)
    tracker.mark_done("a")
    tracker.mark_done("b")
    tracker.increment_tries("a")
    tracker.increment_tries("c")
    tracker.increment_tries("d")
    tracker.increment_tries("e")
    tracker.increment_tries("e")
    assert tracker.num_done() == 2
    assert tracker.num_tried() == 4
    assert tracker.fraction_done() == 2 / 8
    assert tracker.fraction_tried() == 4 / 8
    assert tracker.percent_done() == "25.00 %"
    assert tracker.percent_not_done() == "75.00 %"
    assert tracker.percent_tried() == "50.00 %"
    assert tracker.percent_not_tried() == "50.00 %"
    assert tracker.percent_done(0) == "25 %"
    assert tracker.percent_not_done(1) == "75.0 %"
    assert tracker.percent_tried(3) == "50.000 %"
    assert tracker.percent_not_tried(decimals=0) == "50 %"
    assert_counts(tracker)


@pytest.mark.parametrize(
    ("fraction", "decimals", "expected"),
    [
        (0.347, 2, "34.70 %"),
        (0.347, 0, "35 %"),
        (0.347, 1, "34.7 %"),
        (0.347, 3, "34.700 %"),
        (0.0, 2, "0.00 %"),
        (1.0, 2, "100.00 %"),
        (1 / 3, 2, "33.33 %"),
    ],
)
def test_percent(fraction: float, decimals: int, expected: str) -> None:
    assert ProgressTracker.percent(fraction, decimals) == expected


def test_percent_default_decimals_and_on_an_instance(open_tracker: OpenTracker) -> None:
    assert ProgressTracker.percent(0.347) == "34.70 %"
    assert open_tracker().percent(0.347) == "34.70 %"


def test_try_it_adds_missing_tasks_and_counts_tries(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=3)
    assert tracker.try_it("a") is True
    assert "a" in tracker
    assert tracker.tries("a") == 1
    assert tracker.try_it("a") is True
    assert tracker.try_it("a") is True
    assert tracker.tries("a") == 3
    # Tried max_tries times: False, and nothing more is counted.
    assert tracker.try_it("a") is False
    assert tracker.try_it("a") is False
    assert tracker.tries("a") == 3
    assert tracker.num_exhausted() == 1
    assert_counts(tracker)


def test_try_it_is_false_for_a_done_task(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=3)
    tracker.add("a")
    tracker.mark_done("a")
    assert tracker.try_it("a") is False
    assert tracker.tries("a") == 0
    assert tracker.try_it("b") is True
    tracker.mark_done("b")
    assert tracker.try_it("b") is False
    assert tracker.tries("b") == 1


def test_try_it_after_reset_tries_tries_again(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=1)
    assert tracker.try_it("a") is True
    assert tracker.try_it("a") is False
    tracker.reset_tries("a")
    assert tracker.try_it("a") is True
    assert tracker.try_it("a") is False
    tracker.decrement_tries("a")
    assert tracker.try_it("a") is True


@pytest.mark.parametrize("max_tries", [None, 0])
def test_try_it_has_no_limit_without_max_tries(
    open_tracker: OpenTracker, max_tries: int | None
) -> None:
    tracker = open_tracker(max_tries=max_tries)
    for _ in range(50):
        assert tracker.try_it("a") is True
    assert tracker.tries("a") == 50
    assert tracker.num_exhausted() == 0
    assert tracker.should_do("a") is True
    assert list(tracker.todo_keys()) == ["a"]


def test_empty_tracker_counts_without_zero_division(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=2)
    assert len(tracker) == 0
    assert tracker.num_done() == 0
    assert tracker.num_tried() == 0
    assert tracker.num_aborted() == 0
    assert tracker.num_exhausted() == 0
    assert tracker.fraction_done() == 0.0
    assert tracker.fraction_tried() == 0.0
    assert tracker.fraction_aborted() == 0.0
    assert tracker.percent_done() == "0.00 %"
    assert tracker.percent_not_done() == "0.00 %"
    assert tracker.percent_tried() == "0.00 %"
    assert tracker.percent_not_tried() == "0.00 %"
    assert tracker.percent_aborted() == "0.00 %"
    assert list(tracker.todo_keys()) == []
    assert list(tracker.todo_items()) == []
    assert_counts(tracker)


def test_emptied_tracker_counts_without_zero_division(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    tracker.add("a")
    tracker.mark_done("a")
    tracker.increment_tries("a")
    del tracker["a"]
    assert tracker.num_done() == 0
    assert tracker.num_tried() == 0
    assert tracker.fraction_done() == 0.0
    assert tracker.percent_not_done() == "0.00 %"
    assert tracker.percent_not_tried() == "0.00 %"


# -- the names of tastypy 0.0.3 -------------------------------------------------------


def test_add_many_in_order_and_persisted(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    tracker = open_tracker()
    tracker.add("first")
    tracker.add_many(["c", "a", 7, "b"])
    assert list(tracker) == ["first", "c", "a", "7", "b"]
    assert all(tracker[k] == {"_done": False, "_tries": 0} for k in tracker)
    tracker.add_many([])
    tracker.add_many(iter(["gen1", "gen2"]))
    tracker = reopen(tracker, open_pods)
    assert list(tracker) == ["first", "c", "a", "7", "b", "gen1", "gen2"]
    assert all(tracker[k] == {"_done": False, "_tries": 0} for k in tracker)
    assert_counts(tracker)


@pytest.mark.parametrize(
    "keys",
    [
        ["x", "y", "existing"],  # already in the tracker
        ["x", "y", "x"],  # listed twice
        ["x", 1, "1"],  # listed twice once normalized
    ],
)
def test_add_many_duplicate_adds_nothing(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD], keys: list[Any]
) -> None:
    tracker = open_tracker()
    tracker.add("existing")
    tracker.mark_done("existing")
    with pytest.raises(tastypy.DuplicateKeyError) as excinfo:
        tracker.add_many(keys)
    assert isinstance(excinfo.value, tastypy.TastypyError)
    assert isinstance(excinfo.value, KeyError)
    assert list(tracker) == ["existing"]
    assert tracker["existing"] == {"_done": True, "_tries": 0}
    tracker = reopen(tracker, open_pods)
    assert list(tracker) == ["existing"]


def test_add_many_with_an_invalid_key_adds_nothing(open_tracker: OpenTracker) -> None:
    """All or nothing holds for a key that cannot be stored (a lone surrogate) too."""
    tracker = open_tracker()
    tracker.add("existing")
    with pytest.raises(TypeError):
        tracker.add_many(["ok1", "ok2", "bad\ud800"])
    assert list(tracker) == ["existing"]


def test_add_many_if_absent_with_an_invalid_key_adds_nothing(open_tracker: OpenTracker) -> None:
    tracker = open_tracker()
    tracker.add("existing")
    with pytest.raises(TypeError, match="lone surrogate"):
        tracker.add_many_if_absent(["existing", "ok1", "bad\ud800"])
    assert list(tracker) == ["existing"]
    tracker.sync()  # nothing pending that cannot be written


def test_add_many_200_000_keys_survives_reopen(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    n = 200_000
    keys = [f"task-{i:06d}" for i in range(n)]
    tracker = open_tracker()
    tracker.add_many(keys)
    assert len(tracker) == n
    assert tracker.num_done() == 0
    tracker.mark_done(keys[123])
    tracker = reopen(tracker, open_pods)
    assert len(tracker) == n
    assert list(tracker) == keys
    assert tracker[keys[0]] == {"_done": False, "_tries": 0}
    assert tracker[keys[-1]] == {"_done": False, "_tries": 0}
    assert tracker.num_done() == 1
    assert tracker.check(keys[123]) is True
    assert tracker.num_tried() == 0
    assert sum(1 for _ in tracker.todo_keys()) == n - 1


def test_add_many_if_absent_keeps_order_and_skips_existing(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    tracker = open_tracker()
    tracker.add_many(["a", "b"])
    tracker.mark_done("b")
    tracker.increment_tries("b")
    tracker.add_many_if_absent(["z", "b", "y", "a", "z", 3])
    assert list(tracker) == ["a", "b", "z", "y", "3"]
    assert tracker["b"] == {"_done": True, "_tries": 1}
    assert tracker["z"] == {"_done": False, "_tries": 0}
    tracker.add_many_if_absent([])
    tracker.add_many_if_absent(["a", "b"])
    assert list(tracker) == ["a", "b", "z", "y", "3"]
    assert_counts(tracker)
    tracker = reopen(tracker, open_pods)
    assert list(tracker) == ["a", "b", "z", "y", "3"]
    assert tracker["b"] == {"_done": True, "_tries": 1}
