"""Tries counted by ``try_it`` survive a crash (tries.jsonl), once each."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import tastypy
from tastypy import ProgressTracker

from _trackers import assert_counts, store_files

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
