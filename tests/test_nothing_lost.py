"""Ordinary idioms that must never lose data.

Each test is one way a user's plain code changed values that tastypy then
failed to write: values collected and changed later, a graceful-stop
SIGTERM handler, a bad value smuggled in by nested mutation, nested opens
of one path, forked children, and threads.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy import POD

from _helpers import on_disk
from _subproc import Child, run

MakePod = Callable[..., POD]

N = 50  # keys per store: many times sync_at, so auto-syncs happen in between


def _filled(make_pod: MakePod) -> POD:
    pod = make_pod(sync_at=5)
    for i in range(N):
        pod[f"k{i}"] = {"i": i}
    pod.sync()
    return pod


def _files(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in path.rglob("*") if p.is_file() and p.name != "lock"}


COLLECTORS: dict[str, Callable[[POD], list[Any]]] = {
    "list(values())": lambda pod: list(pod.values()),
    "sorted(items())": lambda pod: [v for _k, v in sorted(pod.items())],
    "dict(pod)": lambda pod: list(dict(pod).values()),
    "pod[k]": lambda pod: [pod[k] for k in list(pod)],
    "get": lambda pod: [pod.get(k) for k in list(pod)],
    "setdefault": lambda pod: [pod.setdefault(k, {}) for k in list(pod)],
}


@pytest.mark.parametrize("collect", list(COLLECTORS))
def test_values_collected_then_changed_are_all_written_at_close(
    make_pod: MakePod, collect: str
) -> None:
    pod = _filled(make_pod)
    values = COLLECTORS[collect](pod)
    pod["another"] = {"i": -1}  # more auto-syncs after the collection
    pod.sync()
    for v in values:
        v["n"] = 1
    pod.close()
    stored = dict(on_disk(pod.path))
    missing = [k for k in stored if k != "another" and stored[k].get("n") != 1]
    assert not missing, f"{len(missing)} of {N} changed values were not written: {missing[:5]}"


def test_values_changed_after_close_of_a_nested_open_are_written(make_pod: MakePod) -> None:
    pod = _filled(make_pod)
    rec = pod["k0"]
    pod.sync()
    rec["late"] = True
    with POD(pod.path) as again:  # the same object; its close syncs but keeps it open
        assert again is pod
    assert dict(on_disk(pod.path))["k0"] == {"i": 0, "late": True}
    assert not pod.closed


def test_value_assigned_then_changed_through_its_reference_is_written_at_close(
    make_pod: MakePod,
) -> None:
    pod = make_pod(sync_at=2)
    rec = {"status": "new"}
    pod["a"] = rec
    pod["b"] = 1  # auto-sync writes a as assigned
    rec["status"] = "fetched"
    pod.close()
    assert on_disk(pod.path) == [("a", {"status": "fetched"}), ("b", 1)]


def test_a_read_only_pass_then_close_writes_nothing(make_pod: MakePod) -> None:
    pod = _filled(make_pod)
    pod.close()
    pod = POD(pod.path, sync_at=5)
    before = _files(pod.path)
    values = list(pod.values())
    assert len(values) == N
    pod.sync()
    pod.close()
    assert _files(pod.path) == before


def test_auto_syncs_look_only_at_keys_touched_since_the_last_sync(make_pod: MakePod) -> None:
    pod = _filled(make_pod)
    values = list(pod.values())  # every key is now in the session
    pod.sync()
    storage = pod._storage
    assert storage is not None
    seen: list[int] = []
    real = storage.commit

    def counting(changes: Any) -> None:
        changes = list(changes)
        seen.append(len(changes))
        real(changes)

    storage.commit = counting  # type: ignore[method-assign]
    for i in range(20):
        pod[f"new{i}"] = i  # 4 auto-syncs of 5 keys
    # each change of a new key is a (key, None) delete of its old place and a set
    assert seen == [10, 10, 10, 10], seen
    values[0]["n"] = 1
    pod.close()
    assert seen[-1] == N  # the close checks the values the program still holds, once
    assert dict(on_disk(pod.path))["k0"] == {"i": 0, "n": 1}


# -- a graceful-stop SIGTERM handler ----------------------------------------------


def test_keys_read_before_a_handled_sigterm_stay_tracked(tmp_path: Path) -> None:
    code = """
        import os, signal, sys
        import tastypy
        stop = []
        # A graceful stop: the handler returns. Installed before the POD opens,
        # so tastypy's handler syncs first, then calls it.
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        pod = tastypy.POD(sys.argv[1], sync_at=1000)
        for i in range(10):
            pod[f"k{i}"] = {"i": i}
        rec = pod["k0"]
        held = [pod[f"k{i}"] for i in range(1, 10)]
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop, "the program's own handler ran"
        with tastypy.POD(sys.argv[1], readonly=True) as reader:
            assert len(reader) == 10, "the signal synced everything"
        rec["x"] = 1
        for r in held:
            r["x"] = 2
        pod.sync()
    """
    done = run(code, str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr
    stored = dict(on_disk(tmp_path / "s"))
    assert stored["k0"] == {"i": 0, "x": 1}
    assert all(stored[f"k{i}"] == {"i": i, "x": 2} for i in range(1, 10)), stored


# -- a bad value smuggled in by nested mutation ------------------------------------


def test_bad_nested_value_costs_no_good_key_and_reads_never_raise(make_pod: MakePod) -> None:
    pod = make_pod(sync_at=3)
    for i in range(6):
        pod[f"k{i}"] = {"i": i}
    pod.sync()
    pod["k2"]["x"] = float("nan")
    for i in range(6):  # reads of every key, with auto-syncs in between: none raises
        assert pod[f"k{i}"]["i"] == i
    pod["k5"] = {"i": 50}
    pod["new"] = {"i": 6}
    with pytest.raises(TypeError, match=r"'k2'.*NaN"):
        pod.sync()
    stored = dict(on_disk(pod.path))
    assert stored["k2"] == {"i": 2}  # its last good value
    assert stored["k5"] == {"i": 50} and stored["new"] == {"i": 6}
    with pytest.raises(TypeError, match="'k2'"):
        pod.close()
    assert not pod.closed  # the program can still fix it
    pod["k2"]["x"] = 0
    pod.close()
    assert dict(on_disk(pod.path))["k2"] == {"i": 2, "x": 0}


def test_bad_new_key_is_written_once_fixed(make_pod: MakePod) -> None:
    pod = make_pod()
    pod["a"] = 1
    pod["b"] = {"x": 1}
    pod["b"]["x"] = float("inf")
    pod["c"] = 3
    with pytest.raises(TypeError, match="'b'"):
        pod.sync()
    assert on_disk(pod.path) == [("a", 1), ("c", 3)]
    pod["b"]["x"] = 2
    pod.sync()
    # A new key left out takes its place at the end as of the sync that writes it.
    assert on_disk(pod.path) == [("a", 1), ("c", 3), ("b", {"x": 2})]


def test_sync_key_of_a_bad_value_raises_and_writes_nothing_of_it(make_pod: MakePod) -> None:
    pod = make_pod()
    pod["a"] = {"v": 1}
    pod.sync()
    pod["a"]["v"] = float("nan")
    with pytest.raises(TypeError, match="'a'"):
        pod.sync_key("a")
    assert on_disk(pod.path) == [("a", {"v": 1})]
    pod["a"]["v"] = 2
    pod.update("a")
    assert on_disk(pod.path) == [("a", {"v": 2})]


BAD_VALUE_ENDINGS = {
    "normal exit": "",
    "exception": "raise RuntimeError('boom')",
    "sigterm": "os.kill(os.getpid(), signal.SIGTERM)",
    "garbage collection": "del pod; gc.collect(); print('collected', flush=True)",
    "logging configured": "logging.basicConfig(level=logging.DEBUG)",
}


@pytest.mark.parametrize("ending", list(BAD_VALUE_ENDINGS))
def test_bad_value_at_exit_writes_good_keys_and_says_so_in_one_line(
    tmp_path: Path, ending: str
) -> None:
    code = f"""
        import gc, logging, os, signal, sys
        import tastypy
        pod = tastypy.POD(sys.argv[1], sync_at=1000)
        pod["good1"] = 1
        pod["bad"] = {{"x": 1}}
        pod.sync()
        pod["bad"]["x"] = float("nan")
        pod["good2"] = 2
        pod["good1"] = 10
        {BAD_VALUE_ENDINGS[ending]}
    """
    done = run(code, str(tmp_path / "s"))
    assert on_disk(tmp_path / "s") == [("good1", 10), ("bad", {"x": 1}), ("good2", 2)]
    lines = [line for line in done.stderr.splitlines() if "tastypy" in line]
    if ending == "exception":
        lines = [line for line in lines if "Traceback" not in line and "RuntimeError" not in line]
    assert len(lines) == 1, done.stderr
    assert str(tmp_path / "s") in lines[0] and "'bad'" in lines[0] and "NaN" in lines[0]


# -- nested opens, forks ----------------------------------------------------------


def test_helpers_with_block_does_not_close_the_callers_pod(make_pod: MakePod) -> None:
    pod = make_pod()
    pod["a"] = 1

    def helper(path: Path) -> None:
        with POD(path) as inner:
            inner["b"] = 2

    helper(pod.path)
    assert not pod.closed
    pod["c"] = 3  # still usable
    assert on_disk(pod.path) == [("a", 1), ("b", 2)]  # the helper's close synced
    pod.close()
    assert pod.closed
    assert on_disk(pod.path) == [("a", 1), ("b", 2), ("c", 3)]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_forked_child_opening_the_parents_path_gets_locked_error_until_parent_closes(
    tmp_path: Path,
) -> None:
    code = """
        import os, sys, time
        import tastypy
        path = sys.argv[1]
        pod = tastypy.POD(path)
        pod["parent"] = 1
        pod.sync()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            try:
                tastypy.POD(path)
            except tastypy.LockedError as exc:
                print("child:", exc, flush=True)
            os.read(r, 1)  # the parent closed
            with tastypy.POD(path, timeout=10) as mine:
                mine["child"] = 2
            os._exit(0)
        time.sleep(0.5)
        pod.close()
        os.write(w, b"x")
        _, status = os.waitpid(pid, 0)
        print("child status", status, flush=True)
    """
    done = run(code, str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("child:") and str(tmp_path / "s") in lines[0], lines
    assert "process" in lines[0]  # names the holder
    assert lines[1] == "child status 0", done.stdout + done.stderr
    assert on_disk(tmp_path / "s") == [("parent", 1), ("child", 2)]


# -- threads ----------------------------------------------------------------------


def run_in_threads(targets: list[Callable[[], None]]) -> None:
    """Run each target in its own thread, switching between them as often as possible."""
    threads = [threading.Thread(target=target) for target in targets]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)


def test_four_threads_writing_distinct_keys_lose_nothing(tmp_path: Path) -> None:
    pod = POD(tmp_path / "s", sync_at=50)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(2000):
                pod[f"t{t}-{i}"] = {"i": i}
                if i % 7 == 0:
                    pod[f"t{t}-{i}"]["seen"] = True
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_in_threads([functools.partial(work, t) for t in range(4)])
    assert not errors, errors
    pod.close()
    stored = dict(on_disk(tmp_path / "s"))
    assert len(stored) == 8000
    for t in range(4):
        for i in range(2000):
            expect = {"i": i, "seen": True} if i % 7 == 0 else {"i": i}
            assert stored[f"t{t}-{i}"] == expect
    assert tastypy.verify(tmp_path / "s").ok


def test_threads_sharing_a_tracker_claim_each_task_once(tmp_path: Path) -> None:
    tracker = tastypy.Tracker(tmp_path / "t", sync_at=20, max_tries=1)
    tracker.add_many(f"task{i}" for i in range(500))
    claimed: list[str] = []

    def work() -> None:
        for i in range(500):
            key = f"task{i}"
            if tracker.try_it(key):
                claimed.append(key)
                tracker.mark_done(key)
                tracker.percent_done()

    run_in_threads([work] * 4)
    assert sorted(claimed) == sorted(f"task{i}" for i in range(500))
    assert tracker.num_done() == 500 and tracker.num_tried() == 500
    tracker.close()
    with tastypy.Tracker(tmp_path / "t", readonly=True) as again:
        assert again.num_done() == 500
        assert all(rec["_tries"] == 1 for rec in again.values())


def test_a_signal_handler_syncing_mid_operation_loses_nothing(tmp_path: Path) -> None:
    # SIGALRM-driven syncs land between the bytecodes of every operation.
    code = """
        import signal, sys
        import tastypy
        pod = tastypy.POD(sys.argv[1], sync_at=10_000, durable=False)
        busy, syncs = [], []

        def on_alarm(*args):
            if not busy:  # a sync slower than the timer must not re-enter itself
                busy.append(1)
                pod._exit_sync("on SIGALRM")
                syncs.append(1)
                busy.clear()

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        for i in range(20_000):
            pod[f"k{i % 3000}"] = {"i": i}
            value = pod.get(f"k{(i * 7) % 3000}")
            if value is not None:
                value["j"] = i
            if i % 11 == 0:
                pod.pop(f"k{(i * 3) % 3000}", None)
        signal.setitimer(signal.ITIMER_REAL, 0)
        model = dict(pod)
        pod.close()
        with tastypy.POD(sys.argv[1], readonly=True) as again:
            assert dict(again) == model and list(again) == list(model)
        print("ok", len(syncs), flush=True)
    """
    done = run(code, str(tmp_path / "s"), timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr
    assert int(done.stdout.split()[1]) >= 20, "too few syncs landed mid-operation"


def test_counts_stay_right_while_records_from_items_are_changed(tmp_path: Path) -> None:
    tracker = tastypy.Tracker(tmp_path / "t", sync_at=7)
    tracker.add_many(f"k{i}" for i in range(30))
    for n, (_key, rec) in enumerate(tracker.items(), 1):
        tracker.percent_done()
        rec["_done"] = True
        assert tracker.num_done() == n
    held = list(tracker.values())
    for rec in held[:10]:
        rec["_done"] = False
        rec["_tries"] = 2
    assert tracker.num_done() == 20 and tracker.num_tried() == 10
    assert list(tracker.todo_keys()) == [f"k{i}" for i in range(10)]
    tracker.close()
    with tastypy.Tracker(tmp_path / "t", readonly=True) as again:
        assert again.num_done() == 20 and again.num_tried() == 10


def test_sync_key_after_reset_or_delete_does_not_bring_tries_back(tmp_path: Path) -> None:
    code = """
        import os, signal, sys
        import tastypy
        t = tastypy.Tracker(sys.argv[1])
        t.add_many(["a", "b", "c"])
        t.sync()
        for key in "abc":
            assert t.try_it(key)
        t.reset_tries("a")
        t.update("a")
        del t["b"]
        t.update("b")
        os.kill(os.getpid(), signal.SIGKILL)  # c's try is only in tries.jsonl
    """
    run(code, str(tmp_path / "t"))
    with tastypy.Tracker(tmp_path / "t", readonly=True) as ro:
        assert dict(ro) == {
            "a": {"_done": False, "_tries": 0},
            "c": {"_done": False, "_tries": 1},
        }
        assert ro.num_tried() == 1 and list(ro.todo_keys()) == ["a", "c"]
    with tastypy.Tracker(tmp_path / "t") as t:
        assert t.tries("a") == 0 and "b" not in t and t.tries("c") == 1


def test_read_only_tracker_counts_pending_tries(tmp_path: Path) -> None:
    code = """
        import os, signal, sys
        import tastypy
        t = tastypy.Tracker(sys.argv[1], max_tries=1)
        t.add_many(["a", "b", "c", "d"])
        t.sync()
        t.try_it("a"); t.try_it("b"); t.try_it("new")
        os.kill(os.getpid(), signal.SIGKILL)
    """
    run(code, str(tmp_path / "t"))
    with tastypy.Tracker(tmp_path / "t", readonly=True) as ro:
        counts = ro.num_tried(), ro.num_exhausted(), list(ro.todo_keys())  # before any read
        recount = sum(1 for rec in dict.values(ro._data) if rec["_tries"] > 0)
        assert counts == (recount, 3, ["c", "d"]) and recount == 3


def test_value_held_across_a_handled_sigterm_in_a_running_program(tmp_path: Path) -> None:
    # The handled-SIGTERM path again, in a long-lived child, as a graceful stop does it.
    code = """
        import signal, sys
        import tastypy
        # Installed before the POD opens: tastypy's handler syncs, then calls it.
        signal.signal(signal.SIGTERM, lambda *a: print("stopping", flush=True))
        pod = tastypy.POD(sys.argv[1], sync_at=1000)
        pod["a"] = {"n": 0}
        rec = pod["a"]
        print("ready", flush=True)
        sys.stdin.readline()
        rec["n"] = 1
        pod.close()
    """
    with Child(code, str(tmp_path / "s")) as child:
        child.expect("ready")
        child.signal(signal.SIGTERM)
        child.expect("stopping")
        assert on_disk(tmp_path / "s") == [("a", {"n": 0})]
        child.send()
        assert child.finish() == 0, child.stderr
    assert on_disk(tmp_path / "s") == [("a", {"n": 1})]


# -- found by review: assigned values, writes from a signal handler mid-sync -------


def test_assigned_value_changed_then_dropped_before_the_sync_is_written(
    make_pod: MakePod,
) -> None:
    pod = make_pod(sync_at=1000)
    for name in ("a", "b", "c"):
        rec = {"url": name}
        pod[name] = rec
        rec["_done"] = True  # then rec is rebound: nothing holds a at the sync
    items = [1]
    pod["list"] = items
    items.append(2)
    del items, rec
    pod.sync()
    assert dict(on_disk(pod.path)) == {
        "a": {"url": "a", "_done": True},
        "b": {"url": "b", "_done": True},
        "c": {"url": "c", "_done": True},
        "list": [1, 2],
    }


def test_tracker_records_assigned_then_marked_done_through_the_reference(
    tmp_path: Path,
) -> None:
    tracker = tastypy.Tracker(tmp_path / "t")
    for url in ("a", "b", "c"):
        rec = {"url": url}
        tracker[url] = rec
        rec["_done"] = True
    assert tracker.num_done() == 3
    tracker.close()
    with tastypy.Tracker(tmp_path / "t", readonly=True) as again:
        assert again.num_done() == 3


def test_keys_written_by_a_signal_handler_while_a_sync_runs_are_kept(tmp_path: Path) -> None:
    code = """
        import signal, sys
        import tastypy
        pod = tastypy.POD(sys.argv[1], sync_at=50)
        beats = []

        def heartbeat(*args):
            beats.append(1)
            pod[f"hb{len(beats)}"] = len(beats)  # lands inside whatever runs now

        signal.signal(signal.SIGALRM, heartbeat)
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        for i in range(20_000):
            pod[f"k{i % 500}"] = {"i": i}
        signal.setitimer(signal.ITIMER_REAL, 0)
        model = dict(pod)
        pod.close()
        with tastypy.POD(sys.argv[1], readonly=True) as again:
            missing = [k for k in model if again.get(k) != model[k]]
        print(len(beats), len(missing), missing[:5], flush=True)
    """
    done = run(code, str(tmp_path / "s"), timeout=120)
    assert done.returncode == 0, done.stderr
    beats, missing = done.stdout.split()[:2]
    assert int(beats) >= 10, "too few heartbeats landed"
    assert missing == "0", done.stdout


def test_sigterm_while_another_thread_holds_the_pod_never_hangs(tmp_path: Path) -> None:
    # As when a worker thread holding the POD waits for a lock the main thread
    # holds at the signal (logging's, say): the exit sync gives up, and says so.
    code = """
        import os, signal, sys, threading, time
        import tastypy
        import tastypy.pod
        tastypy.pod.EXIT_LOCK_SECONDS = 0.5
        pod = tastypy.POD(sys.argv[1])
        pod["a"] = 1
        held = threading.Event()

        def stuck():
            with pod._lock:
                held.set()
                time.sleep(60)

        threading.Thread(target=stuck, daemon=True).start()
        held.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    """
    done = run(code, str(tmp_path / "s"), timeout=30)
    assert done.returncode == -signal.SIGTERM
    assert "another thread held it" in done.stderr and str(tmp_path / "s") in done.stderr


def test_a_forked_child_cannot_count_tries_in_the_parents_tracker(tmp_path: Path) -> None:
    code = """
        import os, sys
        import tastypy
        t = tastypy.Tracker(sys.argv[1])
        t.add_many(["a", "b"])
        t.sync()
        pid = os.fork()
        if pid == 0:
            try:
                t.try_it("a")
            except tastypy.LockedError as exc:
                print("refused:", exc, flush=True)
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), flush=True)
    """
    done = run(code, str(tmp_path / "t"))
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "forked child" in done.stdout
    assert done.stdout.splitlines()[-1] == "child 0"
    tries_log = tmp_path / "t" / "tries.jsonl"
    assert not tries_log.exists() or tries_log.read_bytes() == b""


def test_the_lines_undoing_logged_tries_are_durable_before_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from tastypy.storage.files import _fs

    tracker = tastypy.Tracker(tmp_path / "t")
    tracker.add_many(["a", "b"])
    tracker.sync()
    assert tracker.try_it("a")
    del tracker["a"]  # the log says a was tried; the commit will say a is gone
    events: list[str] = []
    real_sync, real_pwrite = _fs.fdatasync, _fs.pwrite

    def fdatasync(fd: int) -> None:
        events.append("fdatasync " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_sync(fd)

    def pwrite(fd: int, data: Any, offset: int) -> int:
        events.append("pwrite " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(_fs, "fdatasync", fdatasync)
    monkeypatch.setattr(_fs, "pwrite", pwrite)
    tracker.sync()
    monkeypatch.undo()
    tracker.close()
    journal = next(i for i, e in enumerate(events) if e.startswith("pwrite journal"))
    assert "fdatasync tries.jsonl" in events[:journal], events


# -- found by the second review -----------------------------------------------------


def test_a_signal_handler_whose_writes_reach_sync_at_inside_a_sync_nests_no_commit(
    tmp_path: Path,
) -> None:
    code = """
        import random, signal, sys
        import tastypy
        pod = tastypy.POD(sys.argv[1], sync_at=6)
        ticks = [0]
        busy = [False]

        def tick(*args):
            # A tick that lands while one runs (its sync is slow on a busy
            # machine) is skipped, or the handlers would nest without end.
            if busy[0]:
                return
            busy[0] = True
            try:
                ticks[0] += 1
                pod["ticks"] = ticks[0]
                for _ in range(5):  # enough to reach sync_at inside a running sync
                    pod[f"h{random.randrange(1000)}"] = ticks[0]
            finally:
                busy[0] = False

        signal.signal(signal.SIGALRM, tick)
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        for r in range(300):
            for i in range(20):
                pod[f"k{i}"] = r
            pod.sync()
        signal.setitimer(signal.ITIMER_REAL, 0)
        model = dict(pod)
        pod.close()
        assert tastypy.verify(sys.argv[1]).ok
        with tastypy.POD(sys.argv[1], readonly=True) as again:
            wrong = [k for k in model if again.get(k) != model[k]]
        print(ticks[0], len(wrong), flush=True)
    """
    done = run(code, str(tmp_path / "s"), timeout=120)
    assert done.returncode == 0, done.stderr
    ticks, wrong = done.stdout.split()
    assert int(ticks) >= 10 and wrong == "0", done.stdout


def test_a_forked_child_may_read_the_parents_pod_past_sync_at(tmp_path: Path) -> None:
    code = """
        import os, sys
        import tastypy
        pod = tastypy.POD(sys.argv[1], sync_at=3)
        for i in range(10):
            pod[f"k{i}"] = {"i": i}
        pod.sync()
        pid = os.fork()
        if pid == 0:
            values = [pod[f"k{i}"]["i"] for i in range(10)]  # reads never sync here
            os._exit(0 if values == list(range(10)) else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
    """
    done = run(code, str(tmp_path / "s"))
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stdout + done.stderr


def test_a_sync_that_fails_before_its_commit_keeps_every_change(
    make_pod: MakePod, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tastypy import _pending

    pod = make_pod()
    pod["a"] = {"x": 1}
    pod["b"] = 2

    def broken(*args: Any) -> list[str]:
        raise MemoryError("injected")

    monkeypatch.setattr(_pending, "reachable_among", broken)
    with pytest.raises(MemoryError):
        pod.sync()
    monkeypatch.undo()
    assert pod.dirty() == {"a", "b"}
    pod.sync()
    assert on_disk(pod.path) == [("a", {"x": 1}), ("b", 2)]


def test_a_refused_tracker_record_leaves_the_callers_dict_alone(tmp_path: Path) -> None:
    tracker = tastypy.Tracker(tmp_path / "t")
    record = {"url": "u", "bad": float("nan")}
    with pytest.raises(TypeError):
        tracker["u"] = record
    assert record.keys() == {"url", "bad"}
    tracker.close()


# -- found by the third review ------------------------------------------------------


def test_a_signal_handler_that_raises_during_syncs_costs_nothing(tmp_path: Path) -> None:
    # A SIGALRM timeout, the usual idiom around a slow fetch, that goes off
    # while the POD is in the middle of a sync: held back until it ends.
    code = """
        import signal, sys
        import tastypy
        pod = tastypy.POD(sys.argv[1], sync_at=7)
        armed, timeouts = [False], 0

        def timeout(*args):
            if armed[0]:  # only around the POD's operations: the test's own code goes on
                raise TimeoutError("fetch took too long")

        signal.signal(signal.SIGALRM, timeout)
        signal.setitimer(signal.ITIMER_REAL, 0.0007, 0.0007)
        for i in range(6000):
            key = f"k{i % 900}"
            try:
                armed[0] = True
                if i % 5 == 4:
                    pod.pop(key, None)
                else:
                    pod[key] = {"i": i}
                armed[0] = False
            except TimeoutError:
                armed[0] = False
                timeouts += 1
        signal.setitimer(signal.ITIMER_REAL, 0)
        model = dict(pod)
        pod.close()
        with tastypy.POD(sys.argv[1], readonly=True) as again:
            same = dict(again) == model and list(again) == list(model)
        print(timeouts, same, flush=True)
    """
    done = run(code, str(tmp_path / "s"), timeout=120)
    assert done.returncode == 0, done.stderr
    timeouts, same = done.stdout.split()
    assert int(timeouts) >= 5 and same == "True", done.stdout
