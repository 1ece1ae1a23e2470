"""Delays between tries (``retry_delay``, ``backoff``, ``max_retry_delay``) and which
errors are worth another try (``retry_on``, ``giveup_on``).

The waits are drawn at random (full jitter), so tests either check the
invariant that holds for every draw (no try starts before the ``_retry_at``
its record held) or use delays so long that no draw falls within the test.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import _tasks
import tastypy
from tastypy import CorruptStoreError
from tastypy.tracker._retry import RetryPolicy

from _subproc import Child

HOUR = 3600.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def tracker(path: Path) -> Iterator[tastypy.Tracker]:
    with tastypy.Tracker(path, max_tries=3, retry_delay=0.2, backoff=1.5) as opened:
        yield opened


def test_the_retry_settings_are_stored_with_the_tracker(path: Path) -> None:
    with tastypy.Tracker(path, max_tries=3, retry_delay=0.5, backoff=3, max_retry_delay=10):
        pass
    with tastypy.Tracker(path) as again:
        assert again.retry_policy == RetryPolicy(0.5, 3.0, 10.0)
    with tastypy.Tracker(path, backoff=1.0) as changed:  # one setting replaced
        assert changed.retry_policy == RetryPolicy(0.5, 1.0, 10.0)
    with tastypy.Tracker(path, readonly=True) as reader:
        assert reader.retry_policy == RetryPolicy(0.5, 1.0, 10.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"retry_delay": -1}, "retry_delay must be a number >= 0"),
        ({"retry_delay": "1"}, "retry_delay must be"),
        ({"retry_delay": True}, "retry_delay must be"),
        ({"retry_delay": float("nan")}, "retry_delay must be"),
        ({"backoff": 0.5}, "backoff must be a number >= 1"),
        ({"max_retry_delay": 0}, "max_retry_delay must be a number > 0"),
    ],
)
def test_bad_retry_settings_are_refused_before_the_store_is_made(
    path: Path, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tastypy.Tracker(path, **settings)
    assert not path.exists()


def test_a_bad_stored_retry_setting_is_named(path: Path) -> None:
    with tastypy.Tracker(path, retry_delay=1) as tracker:
        storage = tracker.storage
        assert storage is not None
        storage.set_meta({**storage.meta, "backoff": "fast"})
    with pytest.raises(CorruptStoreError, match=r"meta\.backoff must be a number >= 1"):
        tastypy.Tracker(path)


def test_the_waits_grow_by_backoff_up_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(1.0, 2.0, 5.0)
    for tries, cap in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (60, 5.0), (10**6, 5.0)):
        waits = [policy.wait(tries) for _ in range(200)]
        assert all(w is not None and 0 <= w <= cap for w in waits), (tries, cap)
        assert max(w for w in waits if w is not None) > cap / 2  # spread over the range
    assert RetryPolicy().wait(3) is None
    assert RetryPolicy(1.0, 10.0).wait(10**6) == pytest.approx(
        RetryPolicy(1.0, 10.0).wait(10**6) or 0, abs=1e9
    )


def test_run_tries_failed_tasks_again_once_their_delay_is_over(tracker: tastypy.Tracker) -> None:
    started: dict[str, list[float]] = {}
    early: list[str] = []

    def flaky(key: str) -> str:
        at = tracker._data[key].get("_retry_at")
        if at is not None and time.time() < at:
            early.append(key)
        started.setdefault(key, []).append(time.time())
        if len(started[key]) < 3:
            raise ConnectionError("503 Service Unavailable")
        return key

    summary = tracker.run(flaky, ["a", "b", "c"], progress=False)
    assert (summary.done, summary.failed, summary.exhausted) == (3, 6, 0)
    assert early == []
    for key in "abc":
        assert tracker[key]["result"] == key and tracker.tries(key) == 3
        assert "_retry_at" not in tracker[key]  # done: nothing to wait for


@pytest.mark.parametrize("how", ["processes", "threads", "async"])
def test_every_executor_retries_within_the_run(path: Path, tmp_path: Path, how: str) -> None:
    settings: dict[str, Any] = {
        "processes": {"workers": 2},
        "threads": {"executor": "threads", "workers": 8},
        "async": {"workers": 8},
    }[how]
    task = _tasks.fail_twice_async if how == "async" else _tasks.fail_twice
    fn = functools.partial(task, str(tmp_path))
    keys = [f"k{i}" for i in range(6)]
    with tastypy.Tracker(path, max_tries=3, retry_delay=0.1, backoff=2) as tracker:
        summary = tracker.run(fn, keys, progress=False, **settings)
        assert (summary.done, summary.failed, summary.exhausted) == (6, 12, 0)
        assert all(tracker.tries(k) == 3 and tracker[k]["result"] == k for k in keys)
    assert all(_tasks.calls(tmp_path, k) == 3 for k in keys)


def test_without_waiting_a_failed_task_waits_for_its_time_across_runs(path: Path) -> None:
    calls: list[str] = []

    def fail(key: str) -> None:
        calls.append(key)
        raise TimeoutError("read timed out")

    with tastypy.Tracker(path, max_tries=5, retry_delay=HOUR, max_retry_delay=HOUR) as tracker:
        first = tracker.run(fail, ["x", "y"], progress=False, wait_for_retries=False)
        assert (first.failed, calls) == (2, ["x", "y"])
        due = tracker["x"]["_retry_at"]
        assert time.time() < due <= time.time() + HOUR
    with tastypy.Tracker(path) as tracker:
        second = tracker.run(fail, ["x", "y"], progress=False, wait_for_retries=False)
        assert second.failed == 0 and calls == ["x", "y"]  # not due: not tried
        assert second.waiting == 2
        assert not tracker.should_do("x") and not tracker.try_it("x")  # the seed loop too
        assert list(tracker.todo_keys()) == []
        assert set(tracker.waiting_keys()) == {"x", "y"}
        assert tracker.tries("x") == 1
        tracker["x"]["_retry_at"] = time.time() - 1  # its time has come
        third = tracker.run(fail, ["x", "y"], progress=False, wait_for_retries=False)
        assert third.failed == 1 and calls == ["x", "y", "x"]
        assert tracker.tries("x") == 2 and tracker.tries("y") == 1


@pytest.mark.parametrize("how", ["processes", "threads", "async"])
def test_every_executor_leaves_a_wait_for_the_next_run(path: Path, how: str) -> None:
    settings: dict[str, Any] = {
        "processes": {"workers": 2},
        "threads": {"executor": "threads", "workers": 4},
        "async": {"workers": 4},
    }[how]
    fn = _always_fails_async if how == "async" else _always_fails
    with tastypy.Tracker(path, max_tries=5, retry_delay=HOUR, max_retry_delay=HOUR) as tracker:
        first = tracker.run(fn, ["x", "y"], progress=False, wait_for_retries=False, **settings)
        second = tracker.run(fn, ["x", "y"], progress=False, wait_for_retries=False, **settings)
        assert (first.failed, first.waiting, second.failed, second.waiting) == (2, 2, 0, 2)
        assert tracker.tries("x") == tracker.tries("y") == 1


def test_with_no_max_tries_run_does_not_wait_for_retries(path: Path) -> None:
    # Retries without a limit would never end: run() makes one pass.
    with tastypy.Tracker(path, retry_delay=0.01) as tracker:
        summary = tracker.run(_always_fails, ["x"], progress=False)
        assert summary.failed == 1 and "_retry_at" in tracker["x"]


def _always_fails(key: str) -> None:
    raise ValueError(key)


async def _always_fails_async(key: str) -> None:
    raise ValueError(key)


class Refused(ConnectionError):
    pass


def by_key(key: str) -> str:
    """Raise what the key names (a module-level function: the pool pickles it)."""
    errors: dict[str, BaseException] = {
        "value": ValueError("bad input"),
        "keyerror": KeyError("missing"),
        "refused": Refused("connection refused"),
    }
    if key in errors:
        raise errors[key]
    return key


async def by_key_async(key: str) -> str:
    await asyncio.sleep(0)
    return by_key(key)


KINDS = ["value", "keyerror", "refused", "fine"]


@pytest.mark.parametrize("how", ["here", "processes", "threads", "async"])
def test_retry_on_gives_up_at_once_on_other_errors(path: Path, how: str) -> None:
    settings: dict[str, Any] = {
        "here": {},
        "processes": {"workers": 2},
        "threads": {"executor": "threads", "workers": 4},
        "async": {"workers": 4},
    }[how]
    fn = by_key_async if how == "async" else by_key
    with tastypy.Tracker(path, max_tries=3) as tracker:
        summary = tracker.run(fn, KINDS, retry_on=ConnectionError, progress=False, **settings)
        assert (summary.done, summary.failed, summary.gave_up) == (1, 3, 2)
        assert tracker.aborted("value") and tracker.aborted("keyerror")
        assert not tracker.aborted("refused") and tracker.should_do("refused")
        assert tracker.errors("value")[-1]["type"] == "ValueError"  # recorded all the same


def test_giveup_on_aborts_only_those(path: Path) -> None:
    with tastypy.Tracker(path, max_tries=3) as tracker:
        summary = tracker.run(by_key, KINDS, giveup_on=(KeyError, Refused), progress=False)
        assert summary.gave_up == 2
        assert [k for k in KINDS if tracker.aborted(k)] == ["keyerror", "refused"]
        assert tracker.should_do("value")


def test_a_timeout_is_a_timeout_error_to_retry_on(path: Path, tmp_path: Path) -> None:
    fn = functools.partial(_tasks.stuck_or_quick, str(tmp_path))
    with tastypy.Tracker(path, max_tries=3) as tracker:
        kept = tracker.run(fn, ["stuck"], timeout=0.5, retry_on=TimeoutError, progress=False)
        assert (kept.timed_out, kept.gave_up) == (1, 0) and tracker.should_do("stuck")
        given_up = tracker.run(fn, ["stuck"], timeout=0.5, giveup_on=TimeoutError, progress=False)
        assert given_up.gave_up == 1 and tracker.aborted("stuck")


@pytest.mark.parametrize(
    "settings",
    [{"retry_on": "ValueError"}, {"giveup_on": (ValueError, 3)}, {"retry_on": ValueError()}],
)
def test_retry_on_and_giveup_on_must_be_exception_types(
    path: Path, settings: dict[str, Any]
) -> None:
    with tastypy.Tracker(path) as tracker:
        with pytest.raises(TypeError, match="must be an exception type or a tuple of them"):
            tracker.run(by_key, ["fine"], progress=False, **settings)
        assert "fine" not in tracker


# -- another writer's view of a task that waits -------------------------------------

TRY_WHEN_TOLD = """
import sys, tastypy
where, name = sys.argv[1], sys.argv[2] or None
t = tastypy.Tracker(where, name=name, shared=name is None, max_tries=5)
assert "x" in t
print("open", flush=True)
sys.stdin.readline()
print(t.try_it("x"), t.tries("x"), flush=True)
t.close()
"""


@pytest.mark.parametrize("engine", ["files", "postgres"])
def test_a_writer_that_has_not_seen_the_failure_does_not_retry_early(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> None:
    if engine == "postgres":
        where, name = (
            request.getfixturevalue("pg_server").url(),
            request.getfixturevalue("pg_name"),
        )
        settings: dict[str, Any] = {"name": name}
    else:
        where, name, settings = str(tmp_path / "shared"), "", {"shared": True}
    with tastypy.Tracker(
        where, max_tries=5, retry_delay=HOUR, max_retry_delay=HOUR, **settings
    ) as mine:
        mine.add("x")
        mine.sync()
        with Child(TRY_WHEN_TOLD, where, name) as child:
            child.expect("open")  # its view: x never tried
            summary = mine.run(_always_fails, ["x"], progress=False, wait_for_retries=False)
            assert summary.failed == 1
            mine.sync()
            child.send()
            assert child.readline() == "False 1"  # the store says: not before its time
            assert child.finish() == 0


def test_a_reset_drops_the_wait_and_a_result_json_cannot_hold_obeys_giveup_on(
    path: Path,
) -> None:
    with tastypy.Tracker(path, max_tries=5, retry_delay=HOUR, max_retry_delay=HOUR) as tracker:
        tracker.run(_always_fails, ["x", "y"], progress=False, wait_for_retries=False)
        assert tracker.waiting_keys().keys() == {"x", "y"}
        tracker.reset_tries("x")
        tracker.mark_not_done("y")
        assert tracker.waiting_keys() == {} and tracker.should_do("x") and tracker.should_do("y")

        def returns_set(key: str) -> object:
            return {1}

        summary = tracker.run(returns_set, ["z"], giveup_on=TypeError, progress=False)
        assert summary.gave_up == 1 and tracker.aborted("z")


def test_the_summary_counts_tasks_left_waiting(path: Path) -> None:
    with tastypy.Tracker(path, max_tries=3, retry_delay=HOUR, max_retry_delay=HOUR) as tracker:
        summary = tracker.run(_always_fails, ["x", "y"], progress=False, wait_for_retries=False)
        assert summary.waiting == 2


def test_a_run_also_waits_for_retries_left_waiting_by_an_earlier_run(path: Path) -> None:
    calls: list[str] = []

    def fails_once(key: str) -> str:
        calls.append(key)
        if calls.count(key) == 1:
            raise ConnectionError("503")
        return key

    with tastypy.Tracker(path, max_tries=3, retry_delay=0.3, max_retry_delay=0.3) as tracker:
        first = tracker.run(fails_once, ["a", "b"], progress=False, wait_for_retries=False)
        assert first.failed == 2 and first.waiting == 2
        second = tracker.run(fails_once, ["a", "b"], progress=False)  # skips them, then waits
        assert (second.done, second.waiting) == (2, 0)
        assert calls[:2] == ["a", "b"] and sorted(calls[2:]) == ["a", "b"]  # by when due


def test_verify_names_a_bad_retry_setting_and_repair_drops_it(path: Path) -> None:
    with tastypy.Tracker(path, max_tries=3, retry_delay=1) as tracker:
        tracker.add("a")
        storage = tracker.storage
        assert storage is not None
        storage.set_meta({**storage.meta, "max_retry_delay": -5})
    report = tastypy.verify(path)
    assert not report.ok
    assert any("meta.max_retry_delay must be a number > 0" in p for p in report.problems)
    repaired = tastypy.repair(path)
    assert any("max_retry_delay" in str(d) for d in repaired.lost)
    with tastypy.Tracker(path.with_name("store.repaired")) as fixed:
        assert fixed.retry_policy == RetryPolicy(1.0, 2.0, None) and "a" in fixed


HOLD_X = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True, max_tries=5)
print(t.try_it("X"), flush=True)
sys.stdin.readline()
"""


def test_a_due_retry_held_by_another_writer_does_not_end_the_waiting(tmp_path: Path) -> None:
    where = tmp_path / "shared"
    with tastypy.Tracker(where, shared=True, max_tries=5, retry_delay=0.3) as tracker:
        tracker.run(_always_fails, ["X"], progress=False, wait_for_retries=False)
        tracker.sync()
        time.sleep(0.4)  # X is due now
        with Child(HOLD_X, str(where)) as child:
            assert child.readline() == "True"  # another process holds X
            calls: list[str] = []

            def y_fails_once(key: str) -> str:
                calls.append(key)
                if calls.count(key) == 1:
                    raise ConnectionError("503")
                return key

            summary = tracker.run(y_fails_once, ["X", "Y"], progress=False)
            child.send()
        assert calls == ["Y", "Y"] and tracker.check("Y")  # Y's retry waited for, and done
        assert summary.done == 1 and not tracker.check("X")
