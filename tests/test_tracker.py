"""ProgressTracker (alias Tracker): the seed API, the 0.0.3 names, counts, tries, repair.

``run()`` is tested in test_runner.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections import Counter, namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy import ProgressTracker

OpenTracker = Callable[..., ProgressTracker]

Task = namedtuple("Task", ["name", "payload"])
Result = namedtuple("Result", ["success", "value"])


@pytest.fixture
def open_tracker(tmp_path: Path, open_pods: list[tastypy.POD]) -> OpenTracker:
    """``open_tracker(name="tracker", **settings)`` opens a tracker under tmp_path.

    Every tracker opened this way is closed at teardown.
    """

    def open_(name: str | Path = "tracker", **settings: Any) -> ProgressTracker:
        tracker = ProgressTracker(tmp_path / name, **settings)
        open_pods.append(tracker)
        return tracker

    return open_


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "tracker"


def reopen(
    tracker: ProgressTracker, open_pods: list[tastypy.POD], **settings: Any
) -> ProgressTracker:
    """Close *tracker* (syncing it) and open its store again."""
    tracker.close()
    again = ProgressTracker(tracker.path, **settings)
    open_pods.append(again)
    return again


def brute_counts(tracker: ProgressTracker) -> dict[str, int]:
    """Recount done/tried/aborted/exhausted from scratch over ``tracker.items()``."""
    limit = tracker.max_tries or 0
    counts = dict.fromkeys(("done", "tried", "aborted", "exhausted"), 0)
    for _key, record in tracker.items():
        tries = record.get("_tries")
        tries = tries if type(tries) is int else 0
        done = bool(record.get("_done"))
        counts["done"] += done
        counts["tried"] += tries > 0
        counts["aborted"] += bool(record.get("_aborted"))
        counts["exhausted"] += (not done) and bool(limit) and tries >= limit
    return counts


def assert_counts(tracker: ProgressTracker) -> dict[str, int]:
    """The tracker's incremental counts equal a brute-force recount.

    The tracker is asked first: reading ``items()`` touches every record, which
    would hide counts that had gone stale.
    """
    counted = {
        "done": tracker.num_done(),
        "tried": tracker.num_tried(),
        "aborted": tracker.num_aborted(),
        "exhausted": tracker.num_exhausted(),
    }
    fractions = (tracker.fraction_done(), tracker.fraction_tried(), tracker.fraction_aborted())
    expected = brute_counts(tracker)
    assert counted == expected
    n = len(tracker)
    assert fractions == tuple(
        (expected[name] / n if n else 0.0) for name in ("done", "tried", "aborted")
    )
    return counted


def store_files(path: Path) -> dict[str, bytes]:
    """Every file of a store, by relative name, with its bytes."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


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


# -- the loops of the original tastypy docs -------------------------------------------


def test_seed_do_work_loop_with_check_add_and_tries(
    store: Path, open_pods: list[tastypy.POD]
) -> None:
    """The first ``do_work`` of the seed docs, verbatim in style.

    That loop never counts a try itself (the docs leave it out), so every task
    that fails is attempted again on every run and ``tries`` stays 0.
    """
    MAX_TRIES = 2  # the docs' name
    attempts: Counter[str] = Counter()
    flaky_failures = {"flaky": 2}  # fails its first two attempts

    def work(task: Task) -> Result:
        attempts[task.name] += 1
        if task.name.startswith("bad"):
            return Result(False, None)
        if attempts[task.name] <= flaky_failures.get(task.name, 0):
            return Result(False, None)
        return Result(True, task.payload * 10)

    def do_work(work_queue: list[Task]) -> None:
        tracker = tastypy.Tracker(store)
        try:
            for task in work_queue:
                # If the task has been done, skip it
                if tracker.check(task.name):
                    continue

                # Add the task if it is not already in the tracker
                if task.name not in tracker:
                    tracker.add(task.name)

                # Skip this task if we've tried it too many times
                if tracker.tries(task.name) > MAX_TRIES:
                    continue

                # Now attempt the task
                result = work(task)

                # If it succeeded, mark the task done, and record results
                if result.success:
                    tracker.mark_done(task.name)
                    tracker[task.name]["result"] = result.value
        finally:
            tracker.close()

    tasks = [Task("t0", 0), Task("bad1", 1), Task("t2", 2), Task("flaky", 3), Task("t4", 4)]

    do_work(tasks)
    assert attempts == Counter(t0=1, bad1=1, t2=1, flaky=1, t4=1)
    do_work(tasks)
    do_work(tasks)
    do_work(tasks)
    # Done tasks are never attempted again; the failing ones are, every run.
    assert attempts == Counter(t0=1, bad1=4, t2=1, flaky=3, t4=1)

    tracker = ProgressTracker(store, readonly=True)
    open_pods.append(tracker)
    assert list(tracker) == ["t0", "bad1", "t2", "flaky", "t4"]
    assert {k for k in tracker if tracker.check(k)} == {"t0", "t2", "flaky", "t4"}
    assert tracker["t0"] == {"_done": True, "_tries": 0, "result": 0}
    assert tracker["t2"]["result"] == 20
    assert tracker["flaky"]["result"] == 30
    assert tracker["t4"]["result"] == 40
    assert tracker["bad1"] == {"_done": False, "_tries": 0}
    assert all(tracker.tries(k) == 0 for k in tracker)
    assert tracker.num_done() == 4
    assert tracker.percent_done() == "80.00 %"
    assert_counts(tracker)


def test_seed_do_work_loop_counting_tries_gives_up(
    store: Path, open_pods: list[tastypy.POD]
) -> None:
    """The first seed loop with the try counted (``increment_tries``): ``> MAX_TRIES`` skips."""
    MAX_TRIES = 1  # the docs' name
    attempts: Counter[str] = Counter()

    def work(task: Task) -> Result:
        attempts[task.name] += 1
        if task.name == "bad" or (task.name == "flaky" and attempts["flaky"] == 1):
            return Result(False, None)
        return Result(True, task.payload)

    def do_work(work_queue: list[Task]) -> None:
        tracker = tastypy.Tracker(store)
        try:
            for task in work_queue:
                if tracker.check(task.name):
                    continue
                if task.name not in tracker:
                    tracker.add(task.name)
                if tracker.tries(task.name) > MAX_TRIES:
                    continue
                tracker.increment_tries(task.name)
                result = work(task)
                if result.success:
                    tracker.mark_done(task.name)
                    tracker[task.name]["result"] = result.value
        finally:
            tracker.close()

    tasks = [Task("ok", "o"), Task("bad", "b"), Task("flaky", "f")]
    for _ in range(4):
        do_work(tasks)
    # "bad" was attempted while tries <= MAX_TRIES: MAX_TRIES + 1 times.
    assert attempts == Counter(ok=1, bad=2, flaky=2)

    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker["ok"] == {"_done": True, "_tries": 1, "result": "o"}
    assert tracker["flaky"] == {"_done": True, "_tries": 2, "result": "f"}
    assert tracker["bad"] == {"_done": False, "_tries": 2}
    assert tracker.num_done() == 2
    assert tracker.num_tried() == 3
    assert_counts(tracker)


def test_seed_do_work_loop_with_try_it(store: Path, open_pods: list[tastypy.POD]) -> None:
    """The second ``do_work`` of the seed docs (``max_tries=3`` and ``try_it``).

    The "crash" task raises, ending the run each time (like a crashing
    program); after three tries it is skipped and the tasks after it get done.
    """
    attempts: Counter[str] = Counter()

    def work(task: Task) -> str:
        attempts[task.name] += 1
        if task.name == "crash":
            raise RuntimeError("this task always fails")
        return f"result of {task.name}"

    def do_work(work_queue: list[Task]) -> None:
        tracker = tastypy.Tracker(store, max_tries=3)
        try:
            for task in work_queue:
                # Skip tasks that are done or tried too many times
                if not tracker.try_it(task.name):
                    continue

                # Do the work
                result = work(task)

                # Mark the task done and record results
                tracker.mark_done(task.name)
                tracker[task.name]["result"] = result
        finally:
            tracker.close()

    tasks = [Task("a", 1), Task("crash", 2), Task("b", 3), Task("c", 4)]
    for run in range(3):
        with pytest.raises(RuntimeError, match="always fails"):
            do_work(tasks)
        tracker = ProgressTracker(store, readonly=True)
        assert tracker.tries("crash") == run + 1
        assert tracker.check("a") is True
        assert "b" not in tracker
        tracker.close()
    do_work(tasks)  # "crash" is given up on: the rest get done
    do_work(tasks)  # nothing left to do
    assert attempts == Counter(a=1, crash=3, b=1, c=1)

    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.max_tries == 3
    assert list(tracker) == ["a", "crash", "b", "c"]
    assert tracker["a"] == {"_done": True, "_tries": 1, "result": "result of a"}
    assert tracker["b"] == {"_done": True, "_tries": 1, "result": "result of b"}
    assert tracker["c"] == {"_done": True, "_tries": 1, "result": "result of c"}
    assert tracker["crash"] == {"_done": False, "_tries": 3}
    assert tracker.num_done() == 3
    assert tracker.num_tried() == 4
    assert tracker.num_exhausted() == 1
    assert tracker.percent_done() == "75.00 %"
    assert list(tracker.todo_keys()) == []
    assert_counts(tracker)


def test_todo_loop_over_many_tasks_with_auto_syncs(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    """A loop over todo_keys() that tries and finishes tasks, past several auto-syncs."""
    tracker = open_tracker(max_tries=2)
    keys = [f"k{i}" for i in range(2500)]
    tracker.add_many(keys)
    for key in tracker.todo_keys():
        assert tracker.try_it(key) is True
        if not key.endswith("7"):
            tracker.mark_done(key)
            tracker[key]["result"] = key.upper()
    assert tracker.num_done() == 2250
    assert tracker.num_tried() == 2500
    assert list(tracker.todo_keys()) == [k for k in keys if k.endswith("7")]
    assert_counts(tracker)
    tracker = reopen(tracker, open_pods)
    assert tracker["k1234"] == {"_done": True, "_tries": 1, "result": "K1234"}
    assert tracker["k7"] == {"_done": False, "_tries": 1}
    assert assert_counts(tracker) == {"done": 2250, "tried": 2500, "aborted": 0, "exhausted": 0}


def test_non_str_keys_in_every_method(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=1)
    assert tracker.try_it(5) is True
    assert "5" in tracker
    assert tracker.tries(5) == 1
    assert tracker.try_it(5) is False
    assert tracker.should_try(5) is False
    tracker.reset_tries(5)
    tracker.increment_tries(5)
    tracker.decrement_tries(5)
    tracker.abort(5)
    assert tracker.aborted(5) is True
    tracker.unabort(5)
    tracker.mark_done(5)
    assert tracker.check(5) is True
    assert tracker.done(5.5) is False
    assert tracker.check_or_add(None) is False
    assert list(tracker) == ["5", "null"]
    assert tracker.errors(5) == []
    assert assert_counts(tracker) == {"done": 1, "tried": 0, "aborted": 0, "exhausted": 0}


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


# -- counts stay right ----------------------------------------------------------------


def test_counts_right_after_direct_record_changes(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    tracker = open_tracker(max_tries=3)
    tracker.add_many([f"k{i}" for i in range(10)])
    assert assert_counts(tracker) == {"done": 0, "tried": 0, "aborted": 0, "exhausted": 0}

    tracker["k0"]["_done"] = True
    assert assert_counts(tracker)["done"] == 1
    tracker["k1"]["_tries"] = 5
    assert assert_counts(tracker) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 1}
    tracker["k2"]["_tries"] = 1
    tracker["k3"]["_aborted"] = True
    tracker["k4"] = {"_done": True, "_tries": 2}
    tracker["k5"]["_done"] = True
    tracker["k5"]["_tries"] = 3  # done: not exhausted
    assert assert_counts(tracker) == {"done": 3, "tried": 4, "aborted": 1, "exhausted": 1}

    del tracker["k0"]
    del tracker["k1"]
    assert assert_counts(tracker) == {"done": 2, "tried": 3, "aborted": 1, "exhausted": 0}
    assert tracker.pop("k4") == {"_done": True, "_tries": 2}
    assert assert_counts(tracker) == {"done": 1, "tried": 2, "aborted": 1, "exhausted": 0}

    # Re-adding a deleted key starts it fresh.
    tracker.add("k0")
    tracker.add_many(["k1"])
    assert assert_counts(tracker) == {"done": 1, "tried": 2, "aborted": 1, "exhausted": 0}

    # A reference held across a count: mark_dirty makes the change count.
    record = tracker["k6"]
    tracker.num_done()
    record["_done"] = True
    tracker.mark_dirty("k6")
    assert assert_counts(tracker)["done"] == 2

    tracker.update({"k7": {"_done": True}, "k8": {"_tries": 9}})
    assert assert_counts(tracker) == {"done": 3, "tried": 3, "aborted": 1, "exhausted": 1}
    tracker.setdefault("new", {"_tries": 1})
    assert assert_counts(tracker)["tried"] == 4

    before_reopen = assert_counts(tracker)
    tracker = reopen(tracker, open_pods)
    assert assert_counts(tracker) == before_reopen

    tracker.clear()
    assert assert_counts(tracker) == {"done": 0, "tried": 0, "aborted": 0, "exhausted": 0}


def test_counts_right_after_revert(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=2)
    tracker.add_many(["a", "b", "c", "d"])
    tracker.mark_done("a")
    tracker.try_it("b")
    tracker.sync()
    synced = assert_counts(tracker)
    assert synced == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 0}

    tracker["c"]["_done"] = True
    tracker["d"]["_tries"] = 7
    del tracker["a"]
    tracker.abort("b")
    tracker.add("e")
    tracker.mark_done("e")
    assert assert_counts(tracker) == {"done": 2, "tried": 2, "aborted": 1, "exhausted": 1}
    tracker.revert()
    assert list(tracker) == ["a", "b", "c", "d"]
    assert assert_counts(tracker) == synced

    # Tries counted by try_it since the sync are kept by revert (they are logged).
    tracker.try_it("c")
    tracker.try_it("c")
    tracker.revert()
    assert tracker.tries("c") == 2
    assert assert_counts(tracker) == {"done": 1, "tried": 2, "aborted": 0, "exhausted": 1}


def test_counts_right_after_reopen_with_other_max_tries(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    tracker = open_tracker(max_tries=3)
    tracker.add_many(["t0", "t1", "t2", "t3", "t4", "done"])
    for key, tries in [("t1", 1), ("t2", 2), ("t3", 3), ("t4", 5), ("done", 4)]:
        tracker[key]["_tries"] = tries
    tracker.mark_done("done")
    assert assert_counts(tracker)["exhausted"] == 2  # t3, t4

    tracker = reopen(tracker, open_pods)
    assert tracker.max_tries == 3
    assert assert_counts(tracker)["exhausted"] == 2

    tracker = reopen(tracker, open_pods, max_tries=2)
    assert tracker.max_tries == 2
    assert assert_counts(tracker)["exhausted"] == 3  # t2, t3, t4
    assert list(tracker.todo_keys()) == ["t0", "t1"]

    tracker = reopen(tracker, open_pods, max_tries=5)
    assert assert_counts(tracker)["exhausted"] == 1  # t4
    assert tracker.try_it("t3") is True

    tracker = reopen(tracker, open_pods)  # None keeps the stored value
    assert tracker.max_tries == 5
    assert assert_counts(tracker)["exhausted"] == 1  # t4; t3 has 4 tries now
    tracker = reopen(tracker, open_pods, max_tries=0)  # 0: no limit
    assert tracker.max_tries is None
    assert assert_counts(tracker)["exhausted"] == 0
    assert list(tracker.todo_keys()) == ["t0", "t1", "t2", "t3", "t4"]
    tracker = reopen(tracker, open_pods)
    assert tracker.max_tries is None
    assert assert_counts(tracker)["exhausted"] == 0

    # Opening the open path again with a new max_tries changes it in place.
    assert ProgressTracker(tracker.path, max_tries=1) is tracker
    assert tracker.max_tries == 1
    assert assert_counts(tracker)["exhausted"] == 4  # t1, t2, t3, t4
    assert tracker.try_it("t1") is False
    assert tracker.try_it("t0") is True


# -- records are task records ---------------------------------------------------------


@pytest.mark.parametrize("value", [1, "x", None, [1, 2], ("_done", True), True])
def test_assigning_a_non_dict_raises_and_changes_nothing(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD], value: object
) -> None:
    tracker = open_tracker()
    tracker.add("a")
    tracker.mark_done("a")
    tracker.sync()
    before = assert_counts(tracker)
    with pytest.raises(TypeError):
        tracker["a"] = value
    with pytest.raises(TypeError):
        tracker["new"] = value
    assert list(tracker) == ["a"]
    assert tracker["a"] == {"_done": True, "_tries": 0}
    assert assert_counts(tracker) == before
    tracker = reopen(tracker, open_pods)
    assert list(tracker.items()) == [("a", {"_done": True, "_tries": 0})]


def test_assigning_an_unencodable_record_raises_and_changes_nothing(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    tracker = open_tracker()
    tracker.add("a")
    tracker.mark_done("a")
    before = assert_counts(tracker)
    with pytest.raises(TypeError):
        tracker["a"] = {"_done": False, "_tries": 3, "x": float("nan")}
    with pytest.raises(TypeError):
        tracker["new"] = {"_tries": 3, "x": object()}
    assert list(tracker) == ["a"]
    assert tracker["a"] == {"_done": True, "_tries": 0}
    assert assert_counts(tracker) == before
    tracker = reopen(tracker, open_pods)
    assert list(tracker.items()) == [("a", {"_done": True, "_tries": 0})]


def test_assigning_a_dict_missing_fields_gets_defaults(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    tracker = open_tracker()
    tracker["a"] = {}
    tracker["b"] = {"_done": True}
    tracker["c"] = {"_tries": 2, "note": "x"}
    tracker["d"] = {"payload": [1, 2]}
    assert tracker["a"] == {"_done": False, "_tries": 0}
    assert tracker["b"] == {"_done": True, "_tries": 0}
    assert tracker["c"] == {"_done": False, "_tries": 2, "note": "x"}
    assert tracker["d"] == {"payload": [1, 2], "_done": False, "_tries": 0}
    assert tracker.tries("b") == 0
    assert assert_counts(tracker) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 0}
    tracker = reopen(tracker, open_pods)
    assert tracker["b"] == {"_done": True, "_tries": 0}
    assert tracker["d"] == {"payload": [1, 2], "_done": False, "_tries": 0}


def test_records_missing_fields_are_repaired_on_open(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD], store: Path
) -> None:
    tracker = open_tracker(max_tries=2)
    tracker.add_many(["no_tries", "no_done", "neither", "fine"])
    tracker.mark_done("no_tries")
    tracker.increment_tries("no_done")
    tracker.increment_tries("no_done")
    # Records lose their fields through the program's own changes.
    del tracker["no_tries"]["_tries"]
    del tracker["no_done"]["_done"]
    tracker["neither"].clear()
    tracker["neither"]["x"] = 1
    # Nothing breaks before the repair either.
    assert tracker.tries("no_tries") == 0
    assert tracker.check("no_done") is False
    assert assert_counts(tracker) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 1}
    tracker.close()
    assert '"no_tries",{"_done":true}' in "".join(
        p.read_text() for p in store.rglob("*.jsonl") if p.name != "tries.jsonl"
    )

    tracker = reopen(tracker, open_pods)
    assert tracker["no_tries"] == {"_done": True, "_tries": 0}
    assert tracker["no_done"] == {"_tries": 2, "_done": False}
    assert tracker["neither"] == {"x": 1, "_done": False, "_tries": 0}
    assert tracker["fine"] == {"_done": False, "_tries": 0}
    assert assert_counts(tracker) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 1}
    # And it keeps working.
    assert tracker.try_it("neither") is True
    assert tracker.try_it("no_done") is False
    tracker.mark_done("neither")
    assert list(tracker.todo_keys()) == ["fine"]
    tracker = reopen(tracker, open_pods)
    assert tracker["neither"] == {"x": 1, "_done": True, "_tries": 1}


def test_records_written_by_a_plain_pod_are_repaired(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD], store: Path
) -> None:
    """A POD opened on a tracker's store can write anything; the tracker repairs it."""
    open_tracker().close()  # a tracker store, empty
    pod = tastypy.POD(store)
    pod["dict_no_fields"] = {"payload": 1}
    pod["only_done"] = {"_done": True}
    pod["only_tries"] = {"_tries": 3}
    pod["number"] = 5
    pod["text"] = "hello"
    pod.close()

    tracker = open_tracker(max_tries=3)
    assert dict(tracker.items()) == {
        "dict_no_fields": {"payload": 1, "_done": False, "_tries": 0},
        "only_done": {"_done": True, "_tries": 0},
        "only_tries": {"_tries": 3, "_done": False},
        "number": {"value": 5, "_done": False, "_tries": 0},
        "text": {"value": "hello", "_done": False, "_tries": 0},
    }
    assert assert_counts(tracker) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 1}
    assert tracker.try_it("number") is True
    assert list(tracker.todo_keys()) == ["dict_no_fields", "number", "text"]
    tracker = reopen(tracker, open_pods)
    assert tracker["number"] == {"value": 5, "_done": False, "_tries": 1}
    assert tracker["text"] == {"value": "hello", "_done": False, "_tries": 0}
    assert_counts(tracker)


def test_unusable_tries_are_refused_at_assignment(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=1)
    for bad in ("many", True, -1, 2.5):
        with pytest.raises(TypeError, match="_tries"):
            tracker["a"] = {"_tries": bad}
    assert "a" not in tracker
    tracker["a"] = {"_done": 1}  # flags count by their truth
    assert assert_counts(tracker) == {"done": 1, "tried": 0, "aborted": 0, "exhausted": 0}


def test_unusable_tries_set_through_a_held_record_are_not_synced(
    open_tracker: OpenTracker,
) -> None:
    """Like a value that cannot be encoded: the sync names it and keeps the last good one."""
    tracker = open_tracker(max_tries=3)
    tracker.add("a")
    tracker.add("b")
    tracker.sync()
    record = tracker["a"]
    record["_tries"] = "many"  # behind the tracker's back
    tracker["b"]["_done"] = True
    with pytest.raises(TypeError, match=r"'a'.*_tries"):
        tracker.sync()
    path = tracker.path
    seen = ProgressTracker(path, readonly=True)
    assert seen["a"]["_tries"] == 0 and seen["b"]["_done"] is True  # b was saved
    seen.close()
    record["_tries"] = 2
    tracker.close()
    again = ProgressTracker(path, readonly=True)
    assert again["a"]["_tries"] == 2
    again.close()


# -- stores of the other kind ---------------------------------------------------------


def test_opening_a_plain_pod_store_as_tracker_raises_settings_error(store: Path) -> None:
    pod = tastypy.POD(store)
    pod["a"] = {"_done": False, "_tries": 0}
    pod.close()
    with pytest.raises(tastypy.SettingsError):
        ProgressTracker(store)
    # The failed open left the store as it was, and unlocked.
    with tastypy.POD(store) as pod:
        assert list(pod.items()) == [("a", {"_done": False, "_tries": 0})]


def test_opening_a_plain_pod_store_read_only_as_tracker_raises_settings_error(
    store: Path,
) -> None:
    with tastypy.POD(store) as pod:
        pod["a"] = 1
    with pytest.raises(tastypy.SettingsError):
        ProgressTracker(store, readonly=True)


def test_an_empty_plain_pod_store_becomes_a_tracker(
    store: Path, open_pods: list[tastypy.POD]
) -> None:
    tastypy.POD(store).close()
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    tracker.add("a")
    tracker = reopen(tracker, open_pods)
    assert list(tracker) == ["a"]


# -- tries survive a crash ------------------------------------------------------------

CRASH_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import tastypy
    tracker = tastypy.Tracker(sys.argv[1], max_tries=2)
    print(tracker.try_it("boom"), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def run_crash_child(store: Path) -> str:
    """Run the child that tries "boom" and is SIGKILLed before any sync; its output."""
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_CHILD, str(store)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc.stdout.strip()


def test_tries_survive_sigkill(store: Path, open_pods: list[tastypy.POD]) -> None:
    assert run_crash_child(store) == "True"
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.tries("boom") == 1
    assert tracker.max_tries == 2
    assert assert_counts(tracker) == {"done": 0, "tried": 1, "aborted": 0, "exhausted": 0}
    tracker.close()

    assert run_crash_child(store) == "True"
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.tries("boom") == 2
    assert assert_counts(tracker) == {"done": 0, "tried": 1, "aborted": 0, "exhausted": 1}
    tracker.close()

    # The task that kills its program is not tried forever.
    assert run_crash_child(store) == "False"
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.tries("boom") == 2
    assert tracker.try_it("boom") is False
    assert tracker.should_do("boom") is False
    assert list(tracker.todo_keys()) == []


def test_tries_survive_sigkill_of_a_task_already_synced(
    store: Path, open_pods: list[tastypy.POD]
) -> None:
    tracker = ProgressTracker(store, max_tries=2)
    tracker.add_many(["before", "boom", "after"])
    tracker.try_it("before")
    tracker.mark_done("before")
    tracker.close()

    assert run_crash_child(store) == "True"
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert list(tracker) == ["before", "boom", "after"]
    assert tracker.tries("boom") == 1
    assert tracker["before"] == {"_done": True, "_tries": 1}
    assert assert_counts(tracker) == {"done": 1, "tried": 2, "aborted": 0, "exhausted": 0}


def test_read_only_tracker_sees_crashed_tries_and_writes_nothing(
    store: Path, open_pods: list[tastypy.POD]
) -> None:
    assert run_crash_child(store) == "True"
    before = store_files(store)
    assert before["tries.jsonl"]  # the try is logged, not yet in the store
    reader = ProgressTracker(store, readonly=True)
    assert reader.tries("boom") == 1
    assert reader.num_tried() == 1
    assert reader.should_do("boom") is True
    assert list(reader.todo_keys()) == ["boom"]
    assert reader.percent_tried() == "100.00 %"
    reader.close()
    assert store_files(store) == before
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.tries("boom") == 1


def test_tries_log_line_applied_twice_does_not_double_count(
    store: Path, open_pods: list[tastypy.POD]
) -> None:
    tracker = ProgressTracker(store, max_tries=5)
    open_pods.append(tracker)
    tracker.add("a")
    assert tracker.try_it("a") is True
    assert tracker.try_it("b") is True
    log = store / "tries.jsonl"
    logged = log.read_bytes()
    assert logged  # written before try_it returned
    tracker.close()  # the sync puts the tries in the store and empties the log
    assert log.read_bytes() == b""

    log.write_bytes(logged)  # as if the emptying had been cut off
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.tries("a") == 1
    assert tracker.tries("b") == 1
    assert assert_counts(tracker)["tried"] == 2
    assert tracker.try_it("a") is True
    assert tracker.tries("a") == 2
    tracker.close()

    log.write_bytes(logged)  # an older count never lowers a newer one
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.tries("a") == 2
    assert tracker.tries("b") == 1
    tracker.close()

    log.write_bytes(logged * 2)  # the same lines twice in the log
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.tries("a") == 2
    assert tracker.tries("b") == 1
    assert_counts(tracker)


def test_tries_log_torn_last_line_is_ignored(store: Path, open_pods: list[tastypy.POD]) -> None:
    tracker = ProgressTracker(store)
    tracker.add_many(["a", "b"])
    tracker.close()
    (store / "tries.jsonl").write_bytes(b'["a",3]\n["b",')
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.tries("a") == 3
    assert tracker.tries("b") == 0
    assert assert_counts(tracker)["tried"] == 1


# -- read-only trackers ---------------------------------------------------------------


def test_read_only_tracker_counts_and_never_writes(
    store: Path, open_pods: list[tastypy.POD]
) -> None:
    tracker = ProgressTracker(store, max_tries=3)
    tracker.add_many([f"k{i}" for i in range(10)])
    tracker.mark_done("k0")
    tracker.mark_done("k1")
    tracker["k2"]["_tries"] = 3
    tracker["k3"]["_tries"] = 1
    tracker.abort("k4")
    tracker.try_it("k5")
    tracker.close()
    before = store_files(store)

    reader = ProgressTracker(store, readonly=True)
    assert reader.readonly
    assert reader.max_tries == 3
    expected = {"done": 2, "tried": 3, "aborted": 1, "exhausted": 1}
    assert assert_counts(reader) == expected
    assert reader.percent_done() == "20.00 %"
    assert reader.percent_not_done() == "80.00 %"
    assert reader.percent_tried() == "30.00 %"
    assert reader.percent_aborted() == "10.00 %"
    assert list(reader.todo_keys()) == ["k3", "k5", "k6", "k7", "k8", "k9"]
    assert reader.tries("k5") == 1
    assert reader.should_do("k2") is False
    with pytest.raises(tastypy.ReadOnlyError):
        reader.add("new")
    with pytest.raises(tastypy.ReadOnlyError):
        reader.add_many(["new"])
    with pytest.raises(tastypy.ReadOnlyError):
        reader["new"] = {}
    with pytest.raises(tastypy.ReadOnlyError):
        del reader["k0"]
    assert "new" not in reader
    reader.close()
    assert store_files(store) == before

    # A different max_tries on a read-only open counts with it but is not stored.
    reader = ProgressTracker(store, readonly=True, max_tries=1)
    assert reader.max_tries == 1
    assert assert_counts(reader) == {**expected, "exhausted": 3}  # k2, k3, k5
    reader.close()
    assert store_files(store) == before
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.max_tries == 3


def test_read_only_tracker_follows_a_writer(store: Path, open_pods: list[tastypy.POD]) -> None:
    writer = ProgressTracker(store, max_tries=2)
    open_pods.append(writer)
    writer.add_many(["a", "b", "c"])
    writer.sync()
    reader = ProgressTracker(store, readonly=True)
    open_pods.append(reader)
    assert reader is not writer
    assert assert_counts(reader) == {"done": 0, "tried": 0, "aborted": 0, "exhausted": 0}

    writer.mark_done("a")
    writer.try_it("b")
    writer.try_it("b")
    writer.sync()
    before = store_files(store)
    reader.revert()
    assert assert_counts(reader) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 1}
    assert assert_counts(reader) == assert_counts(writer)
    assert list(reader.todo_keys()) == ["c"]
    assert store_files(store) == before


def test_read_only_tracker_refuses_to_count_tries_or_mark(tmp_path: Path) -> None:
    with tastypy.Tracker(tmp_path / "t") as tracker:
        tracker.add("a")
    with tastypy.Tracker(tmp_path / "t", readonly=True) as reader:
        for change in (reader.try_it, reader.mark_done, reader.increment_tries, reader.abort):
            with pytest.raises(tastypy.ReadOnlyError):
                change("a")
        assert reader.tries("a") == 0
