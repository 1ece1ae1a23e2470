"""``run()`` with many tasks in flight: threads, a caller's executor, asyncio; time limits.

Concurrency is measured, not assumed: each task counts how many are in
flight as it starts, and the test asserts the most seen. Time limits are
checked with tasks that would hang for a minute: the run must fail them
within seconds and finish the others. Stops by SIGTERM and Ctrl-C run the
run in a real child process and read the store afterwards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import _tasks
import tastypy

from _subproc import Child, read_store


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[tastypy.Tracker]:
    with tastypy.Tracker(tmp_path / "store", max_tries=3) as opened:
        yield opened


class InFlight:
    """Counts tasks in flight, and the most seen at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


KEYS = [f"t{i:03d}" for i in range(60)]


def test_threads_reach_the_number_of_workers_and_record_every_task(
    tracker: tastypy.Tracker,
) -> None:
    flight = InFlight()
    callers: set[int] = set()

    def fetch(key: str) -> str:  # a closure: threads need no pickling
        flight.enter()
        callers.add(threading.get_ident())
        time.sleep(0.1)
        flight.leave()
        return key.upper()

    summary = tracker.run(fetch, KEYS, executor="threads", workers=20, progress=False)
    assert summary.done == len(KEYS) and summary.failed == 0
    assert flight.most == 20
    assert threading.get_ident() not in callers and len(callers) >= 20
    assert [tracker[k]["result"] for k in KEYS] == [k.upper() for k in KEYS]
    assert all(tracker.tries(k) == 1 for k in KEYS)


def test_a_process_pool_runs_workers_tasks_at_once(
    tracker: tastypy.Tracker, tmp_path: Path
) -> None:
    fn = functools.partial(_tasks.sleep_logged, str(tmp_path))
    keys = KEYS[:12]
    summary = tracker.run(fn, keys, workers=3, progress=False)
    assert summary.done == 12
    spans = [
        tuple(map(float, line.split()[1:])) for line in _tasks.read_lines(tmp_path / "calls.log")
    ]
    edges = sorted([(began, 1) for began, _ in spans] + [(ended, -1) for _, ended in spans])
    most = now = 0
    for _at, step in edges:
        now += step
        most = max(most, now)
    assert most == 3


def test_a_callers_executor_gets_at_most_workers_tasks_at_once(tracker: tastypy.Tracker) -> None:
    flight = InFlight()

    def fetch(key: str) -> str:
        flight.enter()
        time.sleep(0.05)
        flight.leave()
        if key.endswith("7"):
            raise ConnectionError(f"{key}: refused")
        return key

    with cf.ThreadPoolExecutor(max_workers=50) as pool:
        summary = tracker.run(fetch, KEYS, executor=pool, workers=8, progress=False)
    assert flight.most == 8
    failing = [k for k in KEYS if k.endswith("7")]
    assert summary.done == len(KEYS) - len(failing) and summary.failed == len(failing)
    assert summary.timed_out == 0
    assert tracker.errors(failing[0])[-1]["type"] == "ConnectionError"


def test_a_coroutine_function_runs_on_an_event_loop_workers_at_a_time(
    tracker: tastypy.Tracker,
) -> None:
    flight = InFlight()
    loops: set[int] = set()

    async def fetch(key: str) -> dict[str, Any]:
        flight.enter()
        loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0.1)
        flight.leave()
        if key == "t005":
            raise OSError("connection reset")
        return {"key": key}

    started = threading.active_count()
    summary = tracker.run(fetch, KEYS, workers=50, progress=False)
    assert threading.active_count() == started  # no thread per task
    assert flight.most == 50 and len(loops) == 1
    assert summary.done == len(KEYS) - 1 and summary.failed == 1
    assert tracker["t001"]["result"] == {"key": "t001"}
    assert tracker.errors("t005")[-1]["type"] == "OSError"


def test_a_coroutines_result_that_json_cannot_hold_fails_its_attempt(
    tracker: tastypy.Tracker,
) -> None:
    async def bad(key: str) -> object:
        return {1, 2}

    summary = tracker.run(bad, ["a"], progress=False)
    assert summary.failed == 1
    assert "JSON cannot hold" in tracker.errors("a")[-1]["message"]


# -- time limits ---------------------------------------------------------------------


def sleeper(key: str) -> str:
    time.sleep(60 if key.startswith("stuck") else 0.3)
    return key


async def async_sleeper(key: str) -> str:
    await asyncio.sleep(60 if key.startswith("stuck") else 0.3)
    return key


TIMED_KEYS = ["a", "stuck1", "b", "c", "stuck2", "d", "e", "f"]


@pytest.mark.parametrize(
    "how",
    ["threads", "executor", "async", "processes-1", "processes-3"],
)
def test_a_task_over_its_time_limit_fails_and_the_others_finish(
    tracker: tastypy.Tracker, tmp_path: Path, how: str
) -> None:
    fn: Callable[[str], Any] = sleeper
    settings: dict[str, Any] = {"workers": 3}
    pool = None
    if how == "threads":
        settings["executor"] = "threads"
    elif how == "executor":
        pool = cf.ThreadPoolExecutor(max_workers=3)
        settings["executor"] = pool
    elif how == "async":
        fn = async_sleeper
    else:
        fn = functools.partial(_tasks.stuck_or_quick, str(tmp_path))
        settings["workers"] = int(how[-1])
    began = time.monotonic()
    summary = tracker.run(fn, TIMED_KEYS, timeout=1.5, progress=False, **settings)
    took = time.monotonic() - began
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    assert took < 30, took  # not the minute the stuck tasks would take
    assert (summary.done, summary.failed, summary.timed_out) == (6, 2, 2)
    for key in ("stuck1", "stuck2"):
        (error,) = tracker.errors(key)
        assert error["type"] == "TimeoutError" and "1.5 s" in error["message"], error
        assert not tracker.check(key) and tracker.tries(key) == 1
    assert all(tracker[k]["result"] == k and tracker.tries(k) == 1 for k in "abcdef")
    if how.startswith("processes"):
        # Killing the pool cut short the tasks running beside a stuck one: each
        # was started again, and finished, within its one try.
        assert all(_tasks.calls(tmp_path, k) >= 1 for k in "abcdef")


def test_a_timed_out_task_is_tried_again_in_the_next_run(tracker: tastypy.Tracker) -> None:
    calls: list[str] = []

    def once_stuck(key: str) -> str:
        calls.append(key)
        time.sleep(60 if calls.count(key) == 1 else 0)
        return key

    first = tracker.run(once_stuck, ["x"], executor="threads", timeout=0.5, progress=False)
    second = tracker.run(once_stuck, ["x"], executor="threads", timeout=0.5, progress=False)
    assert (first.failed, second.done) == (1, 1)
    assert tracker.tries("x") == 2 and tracker["x"]["result"] == "x"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"timeout": 0}, "timeout must be a number of seconds > 0"),
        ({"timeout": -1.0}, "timeout must be"),
        ({"timeout": True}, "timeout must be"),
        ({"timeout": "5"}, "timeout must be"),
        ({"timeout": float("inf")}, "timeout must be"),
        ({"timeout": float("nan")}, "timeout must be"),
        ({"executor": "greenlets"}, 'executor must be "processes", "threads"'),
        ({"executor": 4}, "executor must be"),
    ],
)
def test_bad_settings_are_refused_before_anything_changes(
    tracker: tastypy.Tracker, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tracker.run(sleeper, ["a"], progress=False, **settings)
    assert "a" not in tracker


def test_a_coroutine_function_takes_no_executor(tracker: tastypy.Tracker) -> None:
    with pytest.raises(ValueError, match="coroutine function: it runs on an asyncio"):
        tracker.run(async_sleeper, ["a"], executor="threads", progress=False)
    assert "a" not in tracker


# -- stopped by a signal, in a real child process -----------------------------------

STOPPED = """
import asyncio, os, sys, time, tastypy
how, store = sys.argv[1], sys.argv[2]
count = 0
def fetch(key):
    global count
    count += 1
    if count == 12:
        print("in flight", flush=True)
    time.sleep(0.4)
    return key
async def afetch(key):
    global count
    count += 1
    if count == 12:
        print("in flight", flush=True)
    await asyncio.sleep(0.4)
    return key
with tastypy.Tracker(store) as t:
    keys = [f"k{i:03d}" for i in range(200)]
    if how == "async":
        t.run(afetch, keys, workers=10, progress=False)
    elif how == "executor":
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as pool:
            t.run(fetch, keys, executor=pool, workers=10, progress=False)
    else:
        t.run(fetch, keys, executor="threads", workers=10, progress=False)
print("not reached", flush=True)
"""


@pytest.mark.parametrize("how", ["threads", "executor", "async"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_cleanly_and_nothing_is_lost(
    tmp_path: Path, how: str, signum: int
) -> None:
    store = tmp_path / "store"
    with Child(STOPPED, how, str(store)) as child:
        child.expect("in flight")
        child.signal(signum)
        status = child.finish()
    assert "not reached" not in child.stdout
    assert status == -signum, child.stderr  # KeyboardInterrupt, uncaught, dies by SIGINT
    records = dict(read_store(store))
    assert len(records) == 200
    done = [k for k, r in records.items() if r.get("_done")]
    assert 2 <= len(done) < 200
    for key, record in records.items():
        if record.get("_done"):
            assert record["result"] == key and record["_tries"] == 1
        else:  # never started, or (asyncio) cancelled with its try given back
            assert record["_tries"] == 0, (key, record)
            assert "_errors" not in record


# -- on PostgreSQL: claims in batches, many in flight --------------------------------


@pytest.mark.parametrize("how", ["threads", "async"])
def test_many_in_flight_on_a_tracker_on_postgresql(pg_server: Any, pg_name: str, how: str) -> None:
    flight = InFlight()

    def fetch(key: str) -> str:
        flight.enter()
        time.sleep(0.05)
        flight.leave()
        return key

    async def afetch(key: str) -> str:
        flight.enter()
        await asyncio.sleep(0.05)
        flight.leave()
        return key

    keys = [f"t{i:03d}" for i in range(300)]
    with tastypy.Tracker(pg_server.url(), name=pg_name, max_tries=2) as tracker:
        if how == "async":
            summary = tracker.run(afetch, keys, workers=40, progress=False)
        else:
            summary = tracker.run(fetch, keys, executor="threads", workers=40, progress=False)
    assert summary.done == 300 and summary.failed == 0
    assert flight.most == 40
    with tastypy.Tracker(pg_server.url(), name=pg_name, readonly=True) as again:
        assert all(again[k]["result"] == k and again.tries(k) == 1 for k in keys)


# -- what a hostile task or executor does -------------------------------------------


def test_an_async_tasks_own_timeout_and_cancellation_are_its_failures(
    tracker: tastypy.Tracker,
) -> None:
    async def own_timeout(key: str) -> None:
        await asyncio.wait_for(asyncio.sleep(1), 0.01)  # a client's time limit, not the run's

    async def own_cancel(key: str) -> None:
        inner = asyncio.ensure_future(asyncio.sleep(5))
        inner.cancel()
        await inner

    first = tracker.run(own_timeout, ["a"], progress=False)
    second = tracker.run(own_cancel, ["b"], progress=False, timeout=30)
    assert (first.failed, first.timed_out, second.failed, second.timed_out) == (1, 0, 1, 0)
    assert tracker.errors("a")[-1]["type"] == "TimeoutError"
    assert tracker.errors("b")[-1]["type"] == "CancelledError"
    assert tracker.tries("a") == tracker.tries("b") == 1


def test_a_time_limit_counts_from_when_the_callers_executor_starts_the_task(
    tracker: tastypy.Tracker,
) -> None:
    def slow(key: str) -> str:
        time.sleep(0.6)
        return key

    keys = [f"q{i}" for i in range(6)]
    with cf.ThreadPoolExecutor(max_workers=2) as pool:  # the rest queue in it
        summary = tracker.run(slow, keys, executor=pool, workers=6, timeout=1, progress=False)
    assert (summary.done, summary.timed_out) == (6, 0)


def test_an_executor_that_refuses_tasks_raises_and_counts_no_try(
    tracker: tastypy.Tracker,
) -> None:
    pool = cf.ThreadPoolExecutor(max_workers=2)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        tracker.run(sleeper, ["a", "b"], executor=pool, progress=False)
    assert tracker.tries("a") == 0 and not tracker.errors("a")


def test_a_callers_process_pool_gets_fn_checked_for_pickling_at_once(
    tracker: tastypy.Tracker,
) -> None:
    with cf.ProcessPoolExecutor(max_workers=1) as pool, pytest.raises(TypeError, match="pickle"):
        tracker.run(lambda key: key, ["a"], executor=pool, progress=False)
    assert "a" not in tracker


def test_threads_left_past_their_time_limit_are_at_most_workers(
    tracker: tastypy.Tracker,
) -> None:
    flight = InFlight()

    def stuck(key: str) -> None:
        flight.enter()
        time.sleep(0.6)
        flight.leave()

    keys = [f"s{i}" for i in range(9)]
    summary = tracker.run(stuck, keys, executor="threads", workers=3, timeout=0.1, progress=False)
    assert summary.timed_out == 9
    assert flight.most <= 6  # 2 * workers threads at most, those left to finish included


def test_a_plain_function_that_returns_a_coroutine_fails_clearly(
    tracker: tastypy.Tracker,
) -> None:
    def returns_coroutine(key: str) -> Any:
        return async_sleeper(key)

    summary = tracker.run(returns_coroutine, ["b"], progress=False)
    assert summary.failed == 1
    assert (
        "fn returned an awaitable, which run() does not await"
        in tracker.errors("b")[-1]["message"]
    )


def test_an_object_with_an_async_call_runs_on_the_event_loop(tracker: tastypy.Tracker) -> None:
    class Fetcher:
        async def __call__(self, key: str) -> str:
            await asyncio.sleep(0)
            return key.upper()

    summary = tracker.run(Fetcher(), ["a"], progress=False)
    assert summary.done == 1 and tracker["a"]["result"] == "A"


def test_a_coroutine_function_inside_a_running_event_loop_is_refused(
    tracker: tastypy.Tracker,
) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="runs one already"):
            tracker.run(async_sleeper, ["a"], progress=False)

    asyncio.run(main())
    assert "a" not in tracker


# -- found by the second review -------------------------------------------------------


def test_an_async_tasks_own_exit_and_interrupt_are_its_failures(
    tracker: tastypy.Tracker,
) -> None:
    async def leaves(key: str) -> str:
        await asyncio.sleep(0)
        if key == "exit":
            sys.exit(3)
        if key == "interrupt":
            raise KeyboardInterrupt
        return key

    summary = tracker.run(leaves, ["a", "exit", "interrupt", "b"], progress=False)
    assert (summary.done, summary.failed) == (2, 2)
    assert tracker.errors("exit")[-1]["type"] == "SystemExit"
    assert tracker.errors("interrupt")[-1]["type"] == "KeyboardInterrupt"
    assert all(tracker.tries(k) == 1 for k in ("a", "exit", "interrupt", "b"))


def test_ctrl_c_gives_back_the_tasks_waiting_in_a_callers_executor(
    tracker: tastypy.Tracker,
) -> None:
    started: list[str] = []

    def fetch(key: str) -> str:
        started.append(key)
        time.sleep(0.5)
        return key

    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    with cf.ThreadPoolExecutor(max_workers=1) as pool, pytest.raises(KeyboardInterrupt):
        tracker.run(fetch, list("abcde"), executor=pool, workers=5, progress=False)
    assert started == ["a"] and tracker["a"]["result"] == "a"  # it finished, and is recorded
    assert [tracker.tries(k) for k in "bcde"] == [0, 0, 0, 0]  # handed over, never started


def test_tasks_an_executor_cancels_itself_are_given_back(tracker: tastypy.Tracker) -> None:
    pool = cf.ThreadPoolExecutor(max_workers=1)

    def fetch(key: str) -> str:
        if key == "a":
            # Once the others wait in the pool (else the run's next submit is
            # refused, and raises as documented), the program shuts it down.
            deadline = time.monotonic() + 10
            while pool._work_queue.qsize() < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            pool.shutdown(wait=False, cancel_futures=True)
        time.sleep(0.2)
        return key

    summary = tracker.run(fetch, list("abcd"), executor=pool, workers=4, progress=False)
    assert summary.done == 1 and [tracker.tries(k) for k in "bcd"] == [0, 0, 0]


def test_a_callers_process_pool_that_breaks_gives_back_what_it_never_started(
    tracker: tastypy.Tracker, tmp_path: Path
) -> None:
    fn = functools.partial(_tasks.die_or_quick, str(tmp_path))
    keys = ["die", "b", "c", "d", "e", "f"]
    with cf.ProcessPoolExecutor(max_workers=1) as pool, pytest.raises(cf.BrokenExecutor):
        tracker.run(fn, keys, executor=pool, workers=4, progress=False)
    assert tracker.errors("die")[-1]["type"] == "BrokenProcessPool"
    # Handed over and never started, or never handed over: no try counted.
    never = [k for k in keys[1:] if not tracker.errors(k)]
    assert never and all(tracker.tries(k) == 0 for k in never)


def test_threads_return_when_the_last_tasks_are_stuck(tracker: tastypy.Tracker) -> None:
    release = threading.Event()

    def stuck(key: str) -> None:
        release.wait(30)

    began = time.monotonic()
    try:
        summary = tracker.run(
            stuck, ["a", "b"], executor="threads", workers=1, timeout=0.3, progress=False
        )
    finally:
        release.set()
    assert summary.timed_out == 2 and time.monotonic() - began < 10


def test_a_partial_of_an_object_with_an_async_call_runs_on_the_event_loop(
    tracker: tastypy.Tracker,
) -> None:
    class Fetch:
        async def __call__(self, key: str, scale: int = 1) -> str:
            await asyncio.sleep(0)
            return key * scale

    summary = tracker.run(functools.partial(Fetch(), scale=2), ["b"], progress=False)
    assert summary.done == 1 and tracker["b"]["result"] == "bb"
