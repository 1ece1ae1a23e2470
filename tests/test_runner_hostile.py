"""``ProgressTracker.run()`` survives what tasks do.

A task may raise an exception pickle cannot carry back, exit, interrupt
itself, kill its worker process, or return a value that cannot cross back or
be stored. Each of these fails that task alone, recorded in its ``_errors``;
the other tasks and the run go on. Every scenario runs with real worker
processes (``workers=2``) and, where it can happen there too, in-process
(``workers=1``). The task functions live in ``_tasks`` so the pool can
pickle them; every call is logged to a file, so calls made in worker
processes can be counted.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

import _tasks
import tastypy
from _tasks import calls, result_of
from tastypy.tracker._run import RunSummary

from _subproc import Child, read_store

TESTS_DIR = str(Path(__file__).resolve().parent)
WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["workers=1", "workers=2"])


@pytest.fixture
def open_tracker(tmp_path: Path) -> Iterator[Callable[..., tastypy.Tracker]]:
    """``open_tracker(**settings)`` opens (or reopens) the tracker at tmp_path/"store"."""
    opened: list[tastypy.Tracker] = []

    def open_(**settings: Any) -> tastypy.Tracker:
        tracker = tastypy.Tracker(tmp_path / "store", **settings)
        opened.append(tracker)
        return tracker

    yield open_
    for tracker in opened:
        if not tracker.closed:
            tracker.close()


def task_fn(directory: Path) -> Callable[[str], Any]:
    """The picklable task function: behaviour by key prefix, calls logged in *directory*."""
    return functools.partial(_tasks.by_prefix, str(directory))


def check_done(tracker: tastypy.Tracker, keys: list[str], tries: int = 1) -> None:
    """Each of *keys* succeeded normally: done, its result, *tries* tries, no error."""
    for key in keys:
        record = tracker[key]
        assert record["_done"] is True, (key, record)
        assert record["_tries"] == tries, (key, record)
        assert record["result"] == result_of(key), (key, record)
        assert type(record["_seconds"]) is float
        assert tracker.errors(key) == [], key


def only_error(tracker: tastypy.Tracker, key: str) -> dict[str, Any]:
    """The one recorded error of a task that failed once and is not done."""
    assert not tracker.check(key)
    assert "result" not in tracker[key]
    [error] = tracker.errors(key)
    assert set(error) == {"type", "message", "traceback", "at"}
    return error


# -- exceptions pickle cannot carry -------------------------------------------------------


@WORKERS
def test_an_exception_that_cannot_be_unpickled_fails_only_its_task(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker], workers: int
) -> None:
    keys = ["ok-0", "http-1", *(f"ok-{i}" for i in range(2, 8)), "badstr-8", "ok-9"]
    tracker = open_tracker()
    summary = tracker.run(task_fn(tmp_path), keys, workers=workers, progress=False)
    assert summary == RunSummary(done=8, failed=2, skipped=0, exhausted=0, interrupted=False)
    others = [k for k in keys if k.startswith("ok-")]
    check_done(tracker, others)
    assert all(calls(tmp_path, k) == 1 for k in keys)

    error = only_error(tracker, "http-1")
    assert tracker.tries("http-1") == 1
    assert error["type"] == "HTTPError"
    assert error["message"] == "HTTP 503 from https://example.invalid/http-1"
    # The traceback is the one the task raised (formatted in the worker).
    assert "in raise_http_error" in error["traceback"], error["traceback"]
    assert "_tasks.py" in error["traceback"]
    assert (
        error["traceback"]
        .rstrip()
        .endswith("HTTPError: HTTP 503 from https://example.invalid/http-1")
    ), error["traceback"]

    # An exception whose str() raises still leaves a record.
    bad = only_error(tracker, "badstr-8")
    assert (bad["type"], bad["message"]) == ("BadStrError", "<BadStrError whose str() failed>")
    assert "in raise_bad_str" in bad["traceback"], bad["traceback"]

    # And it is all on disk.
    tracker.close()
    tracker = open_tracker()
    assert tracker.errors("http-1") == [error]
    check_done(tracker, others)


# -- functions pickle cannot carry --------------------------------------------------------


def unpicklable_functions(directory: Path) -> list[Callable[[str], Any]]:
    def nested(key: str) -> dict[str, Any]:
        return result_of(key)

    return [lambda key: {**result_of(key)}, nested, functools.partial(nested)]


def test_a_function_that_cannot_be_pickled_is_refused_before_any_try(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker]
) -> None:
    tracker = open_tracker(max_tries=2)
    tracker.add_many(["ok-1", "ok-2"])
    for fn in unpicklable_functions(tmp_path):
        with pytest.raises(TypeError, match=r"workers=2.*pickle.*module-level") as caught:
            tracker.run(fn, ["ok-1", "ok-2", "ok-3"], workers=2, progress=False)
        assert "workers=1" in str(caught.value)
        # Nothing changed: no try counted, no key added.
        assert list(tracker) == ["ok-1", "ok-2"]
        assert [tracker.tries(k) for k in tracker] == [0, 0]

    # In-process, the same functions are fine.
    for fn in unpicklable_functions(tmp_path):
        tracker.reset_tries("ok-1")
        tracker.mark_not_done("ok-1")
        summary = tracker.run(fn, ["ok-1"], workers=1, progress=False)
        assert summary == RunSummary(done=1, failed=0, skipped=0, exhausted=0, interrupted=False)


def test_a_function_that_workers_cannot_unpickle_is_refused_before_any_try(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker]
) -> None:
    tracker = open_tracker(max_tries=2)
    keys = ["ok-1", "ok-2", "ok-3"]
    with pytest.raises(TypeError, match=r"worker process cannot load.*RuntimeError.*unpickled"):
        tracker.run(_tasks.UnloadableTask(), keys, workers=2, progress=False)
    assert [tracker.tries(k) for k in keys] == [0, 0, 0]
    assert not any(tracker.check(k) for k in keys)


# -- exits and interrupts inside a task -----------------------------------------------------


@WORKERS
def test_exits_and_interrupts_inside_a_task_are_its_failed_attempts(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker], workers: int
) -> None:
    keys = ["ok-0", "exit-1", "ok-2", "bareexit-3", "interrupt-4", "ok-5", "ok-6"]
    tracker = open_tracker(max_tries=2)
    summary = tracker.run(task_fn(tmp_path), keys, workers=workers, progress=False)
    # The run went on past each of them, and returned.
    assert summary == RunSummary(done=4, failed=3, skipped=0, exhausted=0, interrupted=False)
    check_done(tracker, ["ok-0", "ok-2", "ok-5", "ok-6"])
    expected = {
        "exit-1": ("SystemExit", "3", "in exit_with_status"),
        "bareexit-3": ("SystemExit", "", "in exit_plain"),
        "interrupt-4": (
            "KeyboardInterrupt",
            "interrupt-4 interrupts itself",
            "in raise_interrupt",
        ),
    }
    for key, (kind, message, frame) in expected.items():
        error = only_error(tracker, key)
        assert (error["type"], error["message"]) == (kind, message), error
        assert frame in error["traceback"], error["traceback"]
        assert tracker.tries(key) == 1

    # Tried again next run, and given up on at max_tries, like any failure.
    again = tracker.run(task_fn(tmp_path), keys, workers=workers, progress=False)
    assert again == RunSummary(done=0, failed=3, skipped=4, exhausted=3, interrupted=False)
    assert all(calls(tmp_path, k) == 2 for k in expected)


# argv: store, log file, workers, tests directory, gate file. The child leads
# its own process group, so a test can Ctrl-C it with its workers; tastypy's
# log goes to stdout as "log ..." lines.
INTERRUPTED_CHILD = """
import functools, logging, os, sys
path, log, workers, tests, gate = sys.argv[1:6]
os.setpgrp()
logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="log %(message)s")
sys.path.insert(0, tests)
import tastypy, _tasks

tracker = tastypy.Tracker(path)
fn = functools.partial(_tasks.interrupt_or_gated, log, gate, 10)
try:
    tracker.run(fn, [f"task-{i:03d}" for i in range(30)], workers=int(workers), progress=False)
except KeyboardInterrupt:
    print("interrupted", flush=True)
else:
    print("returned", flush=True)
tracker.close()
"""


@WORKERS
def test_a_tasks_own_interrupt_goes_on_and_a_real_ctrl_c_still_stops(
    tmp_path: Path, workers: int
) -> None:
    store, log, gate = tmp_path / "store", tmp_path / "ran.log", tmp_path / "gate"
    args = (str(store), str(log), str(workers), TESTS_DIR, str(gate))
    printed: list[str] = []
    with Child(INTERRUPTED_CHILD, *args) as child:
        try:
            while not printed or printed[-1] != "start task-010":
                printed.append(child.readline())
            os.killpg(child.pid, signal.SIGINT)  # Ctrl-C: the whole process group
            while not printed[-1].startswith("log stopping"):
                printed.append(child.readline())
            gate.touch()
            assert child.finish() == 0, child.stderr
        finally:
            with suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
    lines = printed + child.stdout.splitlines()
    # The task's own KeyboardInterrupt was its failure; the run went on to
    # task-010, and the real Ctrl-C then stopped it and came out of run().
    assert lines[-1] == "interrupted", lines
    failed = "log task 'task-005' failed (try 1 of no limit): KeyboardInterrupt: task-005"
    assert [line for line in lines if line.startswith("log task")] == [
        f"{failed} interrupts itself"
    ], lines
    records = dict(read_store(store))
    assert records["task-005"]["_done"] is False
    assert records["task-005"]["_tries"] == 1
    [error] = records["task-005"]["_errors"]
    assert (error["type"], error["message"]) == ("KeyboardInterrupt", "task-005 interrupts itself")
    for i in (*range(5), *range(6, 11)):
        key = f"task-{i:03d}"
        assert records[key]["_done"] is True, (key, records[key])
        assert records[key]["result"] == {"key": key}
    assert records["task-029"] == {"_done": False, "_tries": 0}


# -- workers that die -----------------------------------------------------------------------


def test_a_dead_worker_fails_only_the_task_that_killed_it(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker]
) -> None:
    fn = task_fn(tmp_path)
    keys = ["ok-0", "crash-1", *(f"ok-{i}" for i in range(2, 10)), "segv-10", "ok-11"]
    tracker = open_tracker(max_tries=2)
    first = tracker.run(fn, keys, workers=2, progress=False)
    assert first == RunSummary(done=10, failed=2, skipped=0, exhausted=0, interrupted=False)
    innocent = [k for k in keys if k.startswith("ok-")]
    # The tasks in flight with a crash ran again alone; their one try counts.
    check_done(tracker, innocent)
    assert all(1 <= calls(tmp_path, k) <= 2 for k in innocent)

    crashed = only_error(tracker, "crash-1")
    assert crashed["type"] == "BrokenProcessPool"
    assert "the worker process died (exit code 3)" in crashed["message"], crashed
    segv = only_error(tracker, "segv-10")
    assert segv["type"] == "BrokenProcessPool"
    assert f"died (signal {int(signal.SIGSEGV)}, SIGSEGV)" in segv["message"], segv
    # Each killer ran alone after a death, on one try; before that it ran in the
    # pool too, unless the pool broke while it was waiting there to start (a
    # matter of timing on a loaded machine).
    for key in ("crash-1", "segv-10"):
        assert tracker.tries(key) == 1
        assert calls(tmp_path, key) in (1, 2)
    assert calls(tmp_path, "crash-1") + calls(tmp_path, "segv-10") >= 3, "one ran in the pool"

    # A task that kills its worker every time is given up on at max_tries.
    second = tracker.run(fn, keys, workers=2, progress=False)
    assert second == RunSummary(done=0, failed=2, skipped=10, exhausted=2, interrupted=False)
    third = tracker.run(fn, keys, workers=2, progress=False)
    assert third == RunSummary(done=0, failed=0, skipped=10, exhausted=2, interrupted=False)
    for key in ("crash-1", "segv-10"):
        assert tracker.tries(key) == 2
        # Alone again, and in the pool again unless the other broke it first.
        assert 3 <= calls(tmp_path, key) <= 4
        assert len(tracker.errors(key)) == 2
    check_done(tracker, innocent)


def test_every_task_killing_its_worker_still_ends(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker]
) -> None:
    keys = [f"crash-{i}" for i in range(6)]
    tracker = open_tracker()  # no limit on tries: each run must still end
    summary = tracker.run(task_fn(tmp_path), keys, workers=2, progress=False)
    assert summary == RunSummary(done=0, failed=6, skipped=0, exhausted=0, interrupted=False)
    for key in keys:
        assert "exit code 3" in only_error(tracker, key)["message"]
        assert tracker.tries(key) == 1
        # Alone, after its pool broke (running it, or with it still waiting).
        assert 1 <= calls(tmp_path, key) <= 2
    assert calls(tmp_path) >= 6 + 1  # at least one of them broke a pool first


# -- results that cannot cross back or be stored -------------------------------------------


@WORKERS
def test_results_that_cannot_be_stored_fail_only_their_task(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker], workers: int
) -> None:
    keys = ["ok-0", "lambda-1", "ok-2", "set-3", "unloadable-4", "ok-5"]
    tracker = open_tracker()
    summary = tracker.run(task_fn(tmp_path), keys, workers=workers, progress=False)
    assert summary == RunSummary(done=4, failed=2, skipped=0, exhausted=0, interrupted=False)
    check_done(tracker, ["ok-0", "ok-2", "ok-5"])
    for key in ("lambda-1", "set-3"):
        error = only_error(tracker, key)
        assert error["type"] == "TypeError"
        assert error["message"].startswith("fn returned a value JSON cannot hold"), error
        assert calls(tmp_path, key) == 1
    # A str subclass pickle cannot read back is stored as the text it is.
    assert tracker.check("unloadable-4")
    assert tracker["unloadable-4"]["result"] == "text of unloadable-4"
    tracker.close()
    assert open_tracker()["unloadable-4"]["result"] == "text of unloadable-4"


# -- repeated keys, pool size ---------------------------------------------------------------


@WORKERS
def test_a_key_given_twice_runs_once(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker], workers: int
) -> None:
    tracker = open_tracker()
    keys: list[Any] = ["ok-1", "fail-2", "ok-1", "fail-2", "ok-3", "ok-1"]
    summary = tracker.run(task_fn(tmp_path), keys, workers=workers, progress=False)
    assert summary == RunSummary(done=2, failed=1, skipped=0, exhausted=0, interrupted=False)
    assert list(tracker) == ["ok-1", "fail-2", "ok-3"]
    assert [calls(tmp_path, k) for k in tracker] == [1, 1, 1]
    assert [tracker.tries(k) for k in tracker] == [1, 1, 1]
    check_done(tracker, ["ok-1", "ok-3"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts processes in /proc")
def test_the_pool_is_no_bigger_than_the_tasks_left(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker]
) -> None:
    tracker = open_tracker()
    tracker.add_many([f"ok-{i}" for i in range(5)])
    for key in list(tracker):
        tracker.mark_done(key)
    keys = [*tracker, "poolsize-1", "poolsize-2"]
    summary = tracker.run(task_fn(tmp_path), keys, workers=8, progress=False)
    assert summary == RunSummary(done=2, failed=0, skipped=5, exhausted=0, interrupted=False)
    assert tracker["poolsize-1"]["result"] == tracker["poolsize-2"]["result"] == 2


def test_a_worker_sent_sigterm_dies_and_fails_only_its_task(
    open_tracker: Callable[..., tastypy.Tracker], tmp_path: Path
) -> None:
    tracker = open_tracker(max_tries=3)
    keys = ["ok-0", "term-1", "ok-2", "ok-3"]
    summary = tracker.run(task_fn(tmp_path), keys, workers=2, progress=False)
    assert summary.done == 3 and not summary.interrupted
    check_done(tracker, ["ok-0", "ok-2", "ok-3"])
    error = only_error(tracker, "term-1")
    assert f"died (signal {int(signal.SIGTERM)}, SIGTERM)" in error["message"], error


@pytest.mark.parametrize("workers", [1, 2])
def test_an_exception_whose_str_raises_systemexit_is_recorded(
    open_tracker: Callable[..., tastypy.Tracker], tmp_path: Path, workers: int
) -> None:
    tracker = open_tracker()
    summary = tracker.run(
        task_fn(tmp_path), ["worsestr-0", "ok-1"], workers=workers, progress=False
    )
    assert summary.done == 1 and summary.failed == 1
    assert only_error(tracker, "worsestr-0")["type"] == "WorseStrError"
