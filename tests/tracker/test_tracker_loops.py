"""The ``do_work`` loops of the original tastypy docs, run again and again, and other loops."""

from __future__ import annotations

from collections import Counter, namedtuple
from pathlib import Path

import pytest

import tastypy
from tastypy import ProgressTracker

from _trackers import OpenTracker, assert_counts, reopen

Task = namedtuple("Task", ["name", "payload"])
Result = namedtuple("Result", ["success", "value"])


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
