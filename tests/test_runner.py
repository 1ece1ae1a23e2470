"""``ProgressTracker.run()`` and the seed loop: retries, results, errors, progress, stops.

In-process tests run each scenario with ``workers=1`` and ``workers=2`` (the
task functions live in ``_tasks`` so the pool can pickle them; every call is
logged to a file so calls made in worker processes can be counted). Stops by
signal and by SIGKILL run in child processes, synchronized through lines the
child prints and a gate file the test creates; a per-task log file written by
the task itself tells which tasks ran in which run.
"""

from __future__ import annotations

import functools
import os
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

import _tasks
import tastypy
from _tasks import calls, read_lines, result_of
from tastypy.tracker._run import RunSummary

from _subproc import Child, read_store

TESTS_DIR = str(Path(__file__).resolve().parent)
WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["workers=1", "workers=2"])
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def trackers() -> Iterator[list[tastypy.Tracker]]:
    """Trackers a test opened; closed at teardown so no lock outlives the test."""
    opened: list[tastypy.Tracker] = []
    yield opened
    for tracker in opened:
        if not tracker.closed:
            tracker.close()


@pytest.fixture
def open_tracker(
    tmp_path: Path, trackers: list[tastypy.Tracker]
) -> Callable[..., tastypy.Tracker]:
    """``open_tracker(**settings)`` opens (or reopens) the tracker at tmp_path/"store"."""

    def open_(**settings: Any) -> tastypy.Tracker:
        tracker = tastypy.Tracker(tmp_path / "store", **settings)
        trackers.append(tracker)
        return tracker

    return open_


def task_fn(directory: Path) -> Callable[[str], Any]:
    """The picklable task function: behaviour by key prefix, calls logged in *directory*."""
    return functools.partial(_tasks.by_prefix, str(directory))


def fields(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its run-dependent fields (``_seconds``, ``_errors``)."""
    return {k: v for k, v in record.items() if k not in ("_seconds", "_errors")}


def read_tracker(path: Path) -> tuple[list[str], dict[str, int], set[str]]:
    """Keys, tries and done tasks as a tracker opened read-only sees them.

    Unlike :func:`read_store`, this counts the tries in ``tries.jsonl`` (those
    logged since the last sync).
    """
    reader = tastypy.Tracker(path, readonly=True)
    try:
        keys = list(reader)
        return keys, {k: reader.tries(k) for k in keys}, {k for k in keys if reader.check(k)}
    finally:
        reader.close()


# -- retries, results, summaries ----------------------------------------------------


@WORKERS
def test_run_retries_gives_up_and_keeps_results(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker], workers: int
) -> None:
    fn = task_fn(tmp_path)
    tracker = open_tracker(max_tries=3)
    tracker.add("ok-b")
    keys = ["ok-c", "fail-x", "ok-b", "flaky-y", "ok-a"]

    first = tracker.run(fn, keys, workers=workers, progress=False)
    # New keys are added in the order given, after the ones already there.
    assert list(tracker) == ["ok-b", "ok-c", "fail-x", "flaky-y", "ok-a"]
    assert first == RunSummary(done=3, failed=2, skipped=0, exhausted=0, interrupted=False)
    assert {k: tracker.check(k) for k in tracker} == {
        "ok-b": True,
        "ok-c": True,
        "fail-x": False,
        "flaky-y": False,
        "ok-a": True,
    }

    second = tracker.run(fn, keys, workers=workers, progress=False)
    assert second == RunSummary(done=1, failed=1, skipped=3, exhausted=0, interrupted=False)
    assert tracker.check("flaky-y")
    assert tracker.tries("flaky-y") == 2
    assert [e["type"] for e in tracker.errors("flaky-y")] == ["RuntimeError"]

    third = tracker.run(fn, keys, workers=workers, progress=False)
    assert third == RunSummary(done=0, failed=1, skipped=4, exhausted=1, interrupted=False)

    # Given up: later runs (with or without keys) skip it and count it exhausted.
    for again in (keys, None):
        later = tracker.run(fn, again, workers=workers, progress=False)
        assert later == RunSummary(done=0, failed=0, skipped=4, exhausted=1, interrupted=False)
    assert calls(tmp_path, "fail-x") == 3
    assert calls(tmp_path, "flaky-y") == 2
    assert all(calls(tmp_path, k) == 1 for k in ("ok-a", "ok-b", "ok-c"))
    assert tracker.tries("fail-x") == 3
    assert not tracker.check("fail-x")
    assert tracker.num_exhausted() == 1
    assert [e["message"] for e in tracker.errors("fail-x")] == [
        f"fail-x failed on call {n}" for n in (1, 2, 3)
    ]

    # Everything persists.
    tracker.close()
    tracker = open_tracker()
    assert tracker.max_tries == 3
    assert list(tracker) == ["ok-b", "ok-c", "fail-x", "flaky-y", "ok-a"]
    for key in ("ok-b", "ok-c", "flaky-y", "ok-a"):
        record = tracker[key]
        tries = 2 if key == "flaky-y" else 1
        assert fields(record) == {"_done": True, "_tries": tries, "result": result_of(key)}
        assert type(record["_seconds"]) is float and 0 <= record["_seconds"] < 10
    assert fields(tracker["fail-x"]) == {"_done": False, "_tries": 3}
    assert "_seconds" not in tracker["fail-x"]
    assert len(tracker.errors("fail-x")) == 3
    assert len(tracker.errors("flaky-y")) == 1
    assert tracker.errors("ok-a") == []
    assert list(tracker.todo_keys()) == []


@WORKERS
def test_second_run_with_everything_done_does_nothing(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker], workers: int
) -> None:
    fn = task_fn(tmp_path)
    keys = [f"ok-{i}" for i in range(6)]
    tracker = open_tracker()
    first = tracker.run(fn, keys, workers=workers, progress=False)
    assert first == RunSummary(done=6, failed=0, skipped=0, exhausted=0, interrupted=False)
    before = {k: dict(tracker[k]) for k in keys}

    for again in (keys, None):
        summary = tracker.run(fn, again, workers=workers, progress=False)
        assert summary == RunSummary(done=0, failed=0, skipped=6, exhausted=0, interrupted=False)
    assert calls(tmp_path) == 6
    assert {k: dict(tracker[k]) for k in keys} == before


@WORKERS
def test_result_json_cannot_hold_is_a_failure_and_the_run_syncs(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker], workers: int
) -> None:
    fn = task_fn(tmp_path)
    tracker = open_tracker()
    summary = tracker.run(fn, ["set-1", "ok-2"], workers=workers, progress=False)
    assert summary == RunSummary(done=1, failed=1, skipped=0, exhausted=0, interrupted=False)
    assert not tracker.check("set-1")
    assert "result" not in tracker["set-1"]
    [error] = tracker.errors("set-1")
    assert error["type"] == "TypeError"
    assert "JSON" in error["message"]

    # run() synced on its way out: the store on disk has it all, tracker still open.
    on_disk = dict(read_store(tmp_path / "store"))
    assert list(on_disk) == ["set-1", "ok-2"]
    assert fields(on_disk["set-1"]) == {"_done": False, "_tries": 1}
    assert [e["type"] for e in on_disk["set-1"]["_errors"]] == ["TypeError"]
    assert fields(on_disk["ok-2"]) == {"_done": True, "_tries": 1, "result": result_of("ok-2")}


@WORKERS
def test_errors_keep_the_last_five_with_worker_tracebacks(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker], workers: int
) -> None:
    fn = task_fn(tmp_path)
    tracker = open_tracker()  # no limit on tries
    for n in range(1, 8):
        summary = tracker.run(fn, ["fail-z"], workers=workers, progress=False)
        assert summary == RunSummary(done=0, failed=1, skipped=0, exhausted=0, interrupted=False)
        assert len(tracker.errors("fail-z")) == min(n, 5)
    assert tracker.tries("fail-z") == 7
    errors = tracker.errors("fail-z")
    assert [e["message"] for e in errors] == [f"fail-z failed on call {n}" for n in range(3, 8)]
    for error in errors:
        assert set(error) == {"type", "message", "traceback", "at"}
        assert error["type"] == "ValueError"
        assert ISO_UTC.fullmatch(error["at"]), error["at"]
        # The frame where it was raised, in the worker process with workers=2.
        assert "in always_fail" in error["traceback"], error["traceback"]
        assert "_tasks.py" in error["traceback"]
        assert "ValueError: fail-z failed on call" in error["traceback"]
    tracker.close()
    assert [e["message"] for e in open_tracker().errors("fail-z")] == [
        e["message"] for e in errors
    ]


def test_bad_workers_is_refused_before_anything_changes(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker]
) -> None:
    tracker = open_tracker()
    fn = task_fn(tmp_path)
    for workers in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers"):
            tracker.run(fn, ["ok-1"], workers=workers, progress=False)  # type: ignore[arg-type]
    assert len(tracker) == 0
    assert calls(tmp_path) == 0


# -- the progress bar -------------------------------------------------------------------


def shown(count: int, total: int, text: str) -> bool:
    """Whether the bar text shows ``count/total`` (not as the end of a longer number)."""
    return re.search(rf"(?<!\d){count}/{total}(?!\d)", text) is not None


def test_progress_bar_counts_the_whole_tracker(
    tmp_path: Path,
    open_tracker: Callable[..., tastypy.Tracker],
    capsys: pytest.CaptureFixture[str],
) -> None:
    fn = task_fn(tmp_path)
    tracker = open_tracker()
    keys = [f"ok-{i}" for i in range(10)]
    tracker.add_many(keys)

    # Only 3 tasks run, but the bar's total is the whole tracker.
    tracker.run(fn, keys[:3], progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert shown(0, 10, err) and shown(3, 10, err), err
    assert not shown(10, 10, err), err

    # The next run's bar starts at the 3 done earlier.
    tracker.run(fn, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert shown(3, 10, err) and shown(10, 10, err), err
    assert not shown(0, 10, err) and not shown(2, 10, err), err
    assert "task" in err


def test_no_progress_writes_nothing(
    tmp_path: Path, open_tracker: Callable[..., tastypy.Tracker], capfd: pytest.CaptureFixture[str]
) -> None:
    fn = task_fn(tmp_path)
    tracker = open_tracker(max_tries=1)
    summary = tracker.run(fn, ["ok-1", "fail-2", "flaky-3", "set-4"], progress=False)
    assert summary == RunSummary(done=1, failed=3, skipped=0, exhausted=3, interrupted=False)
    assert capfd.readouterr() == ("", "")


# -- the seed loop, killed with SIGKILL ------------------------------------------------------

SEED_TASKS = [f"task-{i:03d}" for i in range(200)]

# argv: store, log file, the task whose work stalls (or "none"). The work
# logs the task durably, prints "start NAME", and for the stalled task blocks
# on stdin, so the test can SIGKILL the child while that task is in flight;
# the loop itself is the documented seed loop.
SEED_CHILD = """
import os, sys, time
import tastypy

path, log, stall = sys.argv[1:4]
tasks = [f"task-{i:03d}" for i in range(200)]

def work(name):
    with open(log, "a") as f:
        f.write(name + "\\n")
        f.flush()
        os.fsync(f.fileno())
    print("start " + name, flush=True)
    if name == stall:
        sys.stdin.readline()  # a slow step: never returns before the kill
    time.sleep(0.005)

tracker = tastypy.Tracker(path, sync_at=10)
for name in tasks:
    if not tracker.try_it(name):
        continue
    work(name)
    print("end " + name, flush=True)
    tracker.mark_done(name)
    tracker[name]["result"] = name.upper()
tracker.close()
print("finished", flush=True)
"""


def test_seed_loop_resumes_after_sigkill(tmp_path: Path) -> None:
    store, log1, log2 = tmp_path / "store", tmp_path / "ran-1.log", tmp_path / "ran-2.log"
    stalled = 123
    stall = SEED_TASKS[stalled]

    with Child(SEED_CHILD, str(store), str(log1), stall) as child:
        printed: list[str] = []
        while not printed or printed[-1] != f"start {stall}":
            printed.append(child.readline())
        child.signal(signal.SIGKILL)
        assert child.finish() == -signal.SIGKILL
    before = SEED_TASKS[:stalled]
    assert printed == [line for t in before for line in (f"start {t}", f"end {t}")] + [
        f"start {stall}"
    ]
    assert read_lines(log1) == [*before, stall]

    # Right after the kill: what was synced, and the tries counted since.
    synced = dict(read_store(store))
    synced_done = [k for k, r in synced.items() if r["_done"]]
    assert synced_done, "no auto-sync before the kill: the test proves nothing"
    assert synced_done == SEED_TASKS[: len(synced_done)]
    assert stall not in synced_done
    for key in synced_done:
        assert synced[key] == {"_done": True, "_tries": 1, "result": key.upper()}
    keys, tries, done = read_tracker(store)
    assert keys == [*before, stall]
    assert done == set(synced_done)
    # Every try of the first run is counted, the one in flight included,
    # though it was never synced: it was logged before the work started.
    assert tries == dict.fromkeys(keys, 1)

    with Child(SEED_CHILD, str(store), str(log2), "none") as child:
        assert child.finish() == 0, child.stderr
    assert child.stdout.splitlines()[-1] == "finished"
    assert child.stderr == ""

    # No task done and synced before the kill ran again; every other task
    # ran exactly once, in order.
    assert read_lines(log2) == [t for t in SEED_TASKS if t not in set(synced_done)]
    final = dict(read_store(store))
    assert list(final) == SEED_TASKS
    ran_twice = {t for t in [*before, stall] if t not in set(synced_done)}
    assert stall in ran_twice
    for key, record in final.items():
        assert record == {"_done": True, "_tries": 1 + (key in ran_twice), "result": key.upper()}
    assert read_tracker(store)[1] == {t: 1 + (t in ran_twice) for t in SEED_TASKS}


# -- run() stopped by SIGTERM or Ctrl-C -----------------------------------------------------

RUN_TASKS = [f"task-{i:03d}" for i in range(60)]
GATED = 20  # tasks from task-020 on wait for the gate file

# argv: store, log file, workers, tests directory, gate file, first gated task
# (-1: none), and optionally "slow-log".
# The child leads its own process group so a test can Ctrl-C it with its workers.
# tastypy's log goes to stdout ("log ..." lines): "log stopping ..." tells the
# test that run() has taken in a signal. With "slow-log", writing the first
# log record takes until the test sends a line to the child's stdin (a log
# going to a slow or blocked terminal, file or socket).
RUN_CHILD = """
import functools, logging, os, sys
path, log, workers, tests, gate, first_gated = sys.argv[1:7]
os.setpgrp()

class SlowFirstRecord(logging.Handler):
    slowed = False

    def emit(self, record):
        os.write(1, ("log " + record.getMessage() + "\\n").encode())
        if not SlowFirstRecord.slowed:
            SlowFirstRecord.slowed = True
            sys.stdin.readline()

if sys.argv[7:] == ["slow-log"]:
    logging.getLogger().addHandler(SlowFirstRecord(logging.WARNING))
else:
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="log %(message)s")
sys.path.insert(0, tests)
import tastypy, _tasks

keys = [f"task-{i:03d}" for i in range(60)]
tracker = tastypy.Tracker(path)
fn = functools.partial(_tasks.gated, log, gate, int(first_gated))
try:
    s = tracker.run(fn, keys, workers=int(workers), progress=False)
except KeyboardInterrupt:
    with tastypy.POD(path, readonly=True) as pod:
        synced = sum(1 for record in pod.values() if record["_done"])
    print("interrupted", tracker.num_done(), synced, flush=True)
else:
    print("summary", s.done, s.failed, s.skipped, s.exhausted, s.interrupted, flush=True)
tracker.close()
"""


@contextmanager
def run_child(
    store: Path, log: Path, workers: int, first_gated: int, *extra: str
) -> Iterator[Child]:
    """The RUN_CHILD; its whole process group (pool workers too) is killed on the way out."""
    gate = store.parent / "gate"
    args = (str(store), str(log), str(workers), TESTS_DIR, str(gate), str(first_gated), *extra)
    with Child(RUN_CHILD, *args) as child:
        try:
            yield child
        finally:
            with suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)


def read_until(child: Child, printed: list[str], wanted: Callable[[str], bool]) -> None:
    """Read the child's lines into *printed* up to the first one that is *wanted*."""
    while not printed or not wanted(printed[-1]):
        printed.append(child.readline())


def is_stopping(line: str) -> bool:
    """Whether *line* is tastypy's log of run() taking in a signal."""
    return line.startswith("log stopping")


def send(child: Child, signum: int, *, group: bool) -> None:
    if group:  # Ctrl-C in a terminal: the whole foreground process group
        os.killpg(child.pid, signum)
    else:
        child.signal(signum)


def stop_in_flight(
    store: Path, log: Path, workers: int, signum: int, *, group: bool
) -> tuple[Child, list[str]]:
    """Run RUN_CHILD, send *signum* while the first gated task runs, open the gate.

    Returns the ended child (its status and stderr) and the lines it printed
    that are not tastypy's log.
    """
    printed: list[str] = []
    with run_child(store, log, workers, GATED) as child:
        read_until(child, printed, lambda line: line == f"start {RUN_TASKS[GATED]}")
        send(child, signum, group=group)
        read_until(child, printed, is_stopping)
        # Only now can the tasks in flight finish: the stop request is in first.
        (store.parent / "gate").touch()
        child.finish()
    lines = printed + child.stdout.splitlines()
    assert [line for line in lines if line.startswith("log ")] == [printed[-1]], lines
    return child, [line for line in lines if not line.startswith("log ")]


def check_stopped_store(store: Path, started: list[str], workers: int) -> int:
    """The store after a stopped run: exactly the started tasks are done, in order.

    Returns how many tasks are done.
    """
    n = len(started)
    assert Counter(started) == Counter(RUN_TASKS[:n]), started  # a prefix, each once
    if workers == 1:
        assert n == GATED + 1  # no task starts after the signal
    else:
        # The pool holds up to 2 * workers tasks submitted before the signal.
        assert GATED + 1 <= n <= GATED + 2 * workers
    records = read_store(store)
    assert [k for k, _ in records] == RUN_TASKS  # run() added every key first
    for key, record in records:
        if key in started:
            assert fields(record) == {"_done": True, "_tries": 1, "result": {"key": key}}
            assert type(record["_seconds"]) is float
        else:
            assert record == {"_done": False, "_tries": 0}
    _, tries, done = read_tracker(store)
    assert done == set(started)
    assert tries == {k: int(k in started) for k in RUN_TASKS}
    return n


def rerun_to_the_end(
    store: Path, log: Path, workers: int, done_before: int, retried: frozenset[str] = frozenset()
) -> None:
    """Run RUN_CHILD without gate: it finishes what is left, each task once.

    *retried*: the tasks tried (and not done) before, now on their second try.
    """
    with run_child(store, log, workers, -1) as child:
        assert child.finish() == 0, child.stderr
    lines = child.stdout.splitlines()
    assert lines[-1] == f"summary {len(RUN_TASKS) - done_before} 0 {done_before} 0 False", lines
    assert not [line for line in lines if line.startswith("log ")], lines
    ran = read_lines(log)
    assert Counter(ran) == Counter(RUN_TASKS[done_before:])
    if workers == 1:
        assert ran == RUN_TASKS[done_before:]
    records = read_store(store)
    assert [k for k, _ in records] == RUN_TASKS
    for key, record in records:
        tries = 2 if key in retried else 1
        assert fields(record) == {"_done": True, "_tries": tries, "result": {"key": key}}


@WORKERS
def test_run_stopped_by_sigterm_syncs_dies_by_sigterm_and_resumes(
    tmp_path: Path, workers: int
) -> None:
    store, log1, log2 = tmp_path / "store", tmp_path / "ran-1.log", tmp_path / "ran-2.log"
    child, printed = stop_in_flight(store, log1, workers, signal.SIGTERM, group=False)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    started = read_lines(log1)
    # Every task started finished (the ones in flight too); no summary came.
    assert sorted(printed) == sorted(
        [f"{what} {k}" for k in started for what in ("start", "done")]
    )
    done_before = check_stopped_store(store, started, workers)
    rerun_to_the_end(store, log2, workers, done_before)


@WORKERS
def test_run_stopped_by_ctrl_c_raises_after_syncing_and_resumes(
    tmp_path: Path, workers: int
) -> None:
    store, log1, log2 = tmp_path / "store", tmp_path / "ran-1.log", tmp_path / "ran-2.log"
    child, printed = stop_in_flight(store, log1, workers, signal.SIGINT, group=True)
    assert child.proc.returncode == 0, child.stderr
    started = read_lines(log1)
    done_before = check_stopped_store(store, started, workers)
    # KeyboardInterrupt came out of run() with everything already on disk.
    assert printed[-1] == f"interrupted {done_before} {done_before}"
    assert sorted(printed[:-1]) == sorted([f"{w} {k}" for k in started for w in ("start", "done")])
    rerun_to_the_end(store, log2, workers, done_before)


def test_second_ctrl_c_stops_the_running_task_too(tmp_path: Path) -> None:
    """workers=1: a second Ctrl-C interrupts the task in flight; the tracker still syncs."""
    store, log1, log2 = tmp_path / "store", tmp_path / "ran-1.log", tmp_path / "ran-2.log"
    in_flight = RUN_TASKS[GATED]
    printed: list[str] = []
    with run_child(store, log1, 1, GATED) as child:
        read_until(child, printed, lambda line: line == f"start {in_flight}")
        send(child, signal.SIGINT, group=True)
        read_until(child, printed, is_stopping)
        # The task answers a ping: the first Ctrl-C's handler has returned.
        (tmp_path / "gate.ping").touch()
        read_until(child, printed, lambda line: line == f"pong {in_flight}")
        send(child, signal.SIGINT, group=True)  # the gate never opens
        assert child.finish() == 0, child.stderr
    assert child.stdout.splitlines()[-1] == f"interrupted {GATED} {GATED}", child.stdout
    assert f"done {in_flight}" not in child.stdout
    assert read_lines(log1) == RUN_TASKS[: GATED + 1]

    records = dict(read_store(store))
    assert list(records) == RUN_TASKS
    for key in RUN_TASKS[:GATED]:
        assert fields(records[key]) == {"_done": True, "_tries": 1, "result": {"key": key}}
    assert fields(records[in_flight]) == {"_done": False, "_tries": 1}  # its try counted
    for key in RUN_TASKS[GATED + 1 :]:
        assert records[key] == {"_done": False, "_tries": 0}

    rerun_to_the_end(store, log2, 1, GATED, retried=frozenset({in_flight}))


def test_second_ctrl_c_while_the_first_is_being_logged_stops_the_task(tmp_path: Path) -> None:
    """The second Ctrl-C comes after run() announced the stop, while that log is written."""
    store, log1 = tmp_path / "store", tmp_path / "ran-1.log"
    in_flight = RUN_TASKS[GATED]
    printed: list[str] = []
    with run_child(store, log1, 1, GATED, "slow-log") as child:
        read_until(child, printed, lambda line: line == f"start {in_flight}")
        send(child, signal.SIGINT, group=True)
        read_until(child, printed, is_stopping)  # announced, still being written
        send(child, signal.SIGINT, group=True)
        child.send("go")  # the first record is written
        (tmp_path / "gate.ping").touch()  # answered only if the task still runs
        following = child.readline()
        assert following == f"interrupted {GATED} {GATED}", (
            f"the second Ctrl-C did not stop the task in flight; the child printed "
            f"{following!r} after it"
        )
        assert child.finish() == 0, child.stderr
    records = dict(read_store(store))
    assert fields(records[in_flight]) == {"_done": False, "_tries": 1}


# A worker that dies, and the other things tasks do to a run: test_runner_hostile.py.
