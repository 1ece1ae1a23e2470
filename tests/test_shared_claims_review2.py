"""Second review of lock-free claims: the fixes after cda986f (one test per finding).

Each test failed on the code under review (51f95d0), before its fix. Real
processes wherever liveness or a kill matters; a monkeypatch only stops a
process at an exact point a signal or another process's timing could hit.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import tastypy
from tastypy import _lifecycle
from tastypy.storage.files import _claim_locks, _shared
from tastypy.tracker import _fleet

from _subproc import Child, run, try_elsewhere

# -- 1. the fast parse's exact re-encoding check raises on a deeply nested line -------

DEEP = b"[" * 300 + b"]" * 300  # valid JSON: orjson loads 1024 levels, dumps only 254


def test_1_a_deeply_nested_line_in_a_dead_log_makes_the_store_unopenable(
    tmp_path: Path,
) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True, max_tries=5) as seed:
        seed.add("k")
    (store / "writers" / "123-456-0badf00d.jsonl").write_bytes(
        b'{"pid": 123}\n{"claim":"k","tries":2}\n' + DEEP + b"\n"
    )
    # FORMAT.md: "A reader skips a line it cannot parse". Before 3a053af the
    # fast path fell back to the careful one; now orjson.dumps(record) raises.
    with tastypy.Tracker(store, max_tries=5) as t:  # plain open: applies dead logs
        assert t.tries("k") == 2


LIVE_WRITER = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True)
print(t._storage._writer.path, flush=True)
sys.stdin.readline()
"""


def test_1b_a_deeply_nested_line_in_a_live_log_breaks_every_try_it(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True) as seed:
        seed.add_many(["k", "j"])
    a = tastypy.Tracker(store, shared=True)
    try:
        with Child(LIVE_WRITER, str(store)) as child:
            log_path = child.readline()
            with open(log_path, "ab") as f:  # a hand edit, a stray program
                f.write(DEEP + b"\n")
            assert a.try_it("k"), "a line that is no claim is skipped"
            child.send()
            assert child.finish() == 0
    finally:
        a.close()


# -- 2. an automatic sync inside try_it releases the claim it just made ---------------


def test_2_try_it_returns_true_without_holding_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True, max_tries=1) as seed:
        seed.add_many(["k", "x"])
    a = tastypy.Tracker(store, shared=True, max_tries=1, sync_at=2)
    try:
        a["x"]["note"] = 1  # one key dirty: handing out "k" reaches sync_at
        real = _fleet.FleetTasks._claim

        def claim_then_other_deletes(self: object, storage: object, key: str, limit: int):
            tries = real(self, storage, key, limit)  # type: ignore[arg-type]
            # Between the claim and _hand_out, another process deletes the task
            # (a clean-up; it needs no claim to do so).
            done = run(
                "import sys, tastypy\n"
                "with tastypy.Tracker(sys.argv[1], shared=True) as o:\n"
                "    del o['k']\n",
                str(store),
            )
            assert done.returncode == 0, done.stderr
            return tries

        monkeypatch.setattr(_fleet.FleetTasks, "_claim", claim_then_other_deletes)
        assert a.try_it("k")  # re-adds the task, as _fleet_try means to
        monkeypatch.undo()
        # _hand_out's automatic sync merged the deletion, then _release_finished
        # released "k" (held, no record), before try_it re-added it.
        assert "k" in set(a.holders()), "try_it said True, yet this process holds nothing"
        assert try_elsewhere(store, "k", max_tries=1).startswith("False"), (
            "a second live process got the task this one is working on (max_tries=1)"
        )
    finally:
        a.close()


# -- 3. a signal handler that syncs between take() and critical() untakes the lock ----

CLAIM_PAUSED_BEFORE_ITS_LINE = """
import sys, tastypy
from tastypy.storage.files import _shared
real = _shared.SharedFileStorage.claim
def claim(self, key, tries, *, new=False):
    print("checked", flush=True)   # byte lock taken, logs read, holder() None
    sys.stdin.readline()
    real(self, key, tries, new=new)
_shared.SharedFileStorage.claim = claim
t = tastypy.Tracker(sys.argv[1], shared=True)
print("ready", flush=True)
sys.stdin.readline()
print(t.try_it("k"), flush=True)
sys.stdin.readline()
"""


def test_3_a_sync_between_take_and_claim_lets_two_processes_hold_a_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True) as seed:
        seed.add("k")
    a = tastypy.Tracker(store, shared=True)
    try:
        a["k"]  # a worker's session has touched keys: its exit sync commits
        with Child(CLAIM_PAUSED_BEFORE_ITS_LINE, str(store)) as b:
            b.expect("ready")
            real = _shared.SharedFileStorage.take

            calls: list[str] = []

            def take_then_handler_syncs(self: _shared.SharedFileStorage, key: str) -> bool:
                got = real(self, key)
                calls.append(key)
                if len(calls) > 1:  # try_it taking it again, the handler done
                    return got
                # SIGTERM landing here, outside critical(): tastypy's handler
                # (_lifecycle._on_sigterm) runs sync_all(), then chains to the
                # program's own handler, which returns (a graceful "stop after
                # this task"). The exit sync's _fleet_commit calls untake_left(),
                # which lets this very take's byte lock go; try_it goes on and
                # claims without it.
                monkeypatch.setattr(_lifecycle, "_previous_sigterm", lambda *_: None)
                _lifecycle._on_sigterm(signal.SIGTERM, None)
                b.send()  # meanwhile another process takes the byte and reads the logs
                b.expect("checked")
                return got

            monkeypatch.setattr(_shared.SharedFileStorage, "take", take_then_handler_syncs)
            mine = a.try_it("k")
            monkeypatch.undo()
            b.send()
            theirs = b.readline() == "True"
            assert not (mine and theirs), "two live processes both hold task k"
            assert theirs and not mine, "the other took it while this one's handler ran"
            b.send()
            assert b.finish() == 0
    finally:
        a.close()


# -- 4. a run() attempt's claim, tried again, is released by the next sync ------------


def test_4_a_task_tried_again_after_a_failed_run_sync_is_released_mid_try(
    tmp_path: Path,
) -> None:
    store = tmp_path / "t"
    t = tastypy.Tracker(store, shared=True, max_tries=3)
    try:
        t.add_many(["k", "bad"])
        t.sync()
        t["bad"]["v"] = float("nan")  # the run's last sync leaves it out and raises

        def fail(key: str) -> None:
            raise ValueError("flaky")

        with pytest.raises(TypeError):
            t.run(fail, keys=["k"])  # k stays held and in _finished
        t["bad"]["v"] = "fixed"
        assert t.try_it("k")  # its second try, in this process
        t.sync()  # releases "k": it is still in _finished from the run
        assert "k" in set(t.holders()), "the claim of a try in progress ended"
        assert try_elsewhere(store, "k", max_tries=3).startswith("False"), (
            "another process got a task this one is trying"
        )
    finally:
        t.close()


# -- 5. settling a dead writer's tries forgets its log even when the commit left them out

CLAIM_AND_WAIT = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True, max_tries=1)
assert t.try_it("k")
print("claimed", flush=True)
sys.stdin.readline()
"""

SETTLE_WITH_A_BAD_VALUE_AND_WAIT = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True, max_tries=1)
t["k"]["note"] = float("nan")     # k cannot be written now
try:
    t.sync()                      # settles the dead writer's try into k, which it leaves out
except TypeError:
    print("refused", flush=True)
sys.stdin.readline()              # killed here: its memory is all that had the try
"""


def test_5_a_settled_try_is_lost_when_the_settling_commit_leaves_the_key_out(
    tmp_path: Path,
) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True, max_tries=1) as seed:
        seed.add("k")
    with Child(CLAIM_AND_WAIT, str(store)) as dead:
        dead.expect("claimed")
        dead.signal(signal.SIGKILL)
        dead.proc.wait(timeout=20)
    dead_log = [p for p in (store / "writers").glob(f"{dead.pid}-*.jsonl")]
    assert dead_log, "the killed writer's log counts its try"
    with Child(SETTLE_WITH_A_BAD_VALUE_AND_WAIT, str(store)) as settler:
        settler.expect("refused")
        settler.signal(signal.SIGKILL)
        settler.proc.wait(timeout=20)
    with tastypy.Tracker(store, readonly=True) as seen:
        committed = seen.tries("k")
    gone = not dead_log[0].exists()
    assert committed == 1 or not gone, "the dead log was deleted, its try never committed"
    # max_tries=1, and the killed writer's one try was never committed: the
    # settler deleted its log anyway (_fleet_commit ignores _commit_here's left).
    assert try_elsewhere(store, "k", max_tries=1).startswith("False"), (
        "a task with max_tries=1 got a second try"
    )


# -- 6. still_named() by st_nlink misses a renamed claims/ -----------------------------

HOLD_AND_TRY_ON_CUE = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True)
assert t.try_it(sys.argv[2])
print("claimed", flush=True)
sys.stdin.readline()
assert t.try_it(sys.argv[3])     # a lock in the same file: its check runs
print("again", flush=True)
sys.stdin.readline()
"""


def _same_file_as(key: str) -> str:
    number = _claim_locks._place(key)[0]
    for i in range(10_000):
        other = f"j{i}"
        if _claim_locks._place(other)[0] == number:
            return other
    raise AssertionError("no key in the same lock file")


def test_6_a_renamed_claims_directory_is_not_noticed(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True):
        pass
    other = _same_file_as("k")
    with Child(HOLD_AND_TRY_ON_CUE, str(store), "k", other) as holder:
        holder.expect("claimed")
        os.rename(store / "claims", store / "claims.old")  # a tidy-up "mv", not an rm
        holder.send()
        holder.expect("again")  # stat-based still_named() moved "k" to the new file here
        locks = _claim_locks.ClaimLocks(store)
        try:
            assert not locks.take("k"), "the byte lock of a held task is free in claims/"
        finally:
            locks.close()
        holder.send()
        assert holder.finish() == 0


# -- 7. try_it's own automatic sync marks the log settled before its try is recorded --

RUN_ONCE_WITH_AN_AUTO_SYNC_IN_TRY_IT = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True, sync_at=2)
t["x"]["n"] = 1                    # one key dirty: handing out "task" reaches sync_at
if t.try_it("task"):               # _hand_out's sync runs settled() before _tries is set
    t["task"]["result"] = float("nan")  # the exit sync leaves it out (as in review 3)
    print("ran", flush=True)
"""


def test_7_a_clean_exit_after_an_auto_sync_inside_try_it_loses_the_try(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True, max_tries=1) as seed:
        seed.add_many(["task", "x"])
    runs = [run(RUN_ONCE_WITH_AN_AUTO_SYNC_IN_TRY_IT, str(store)).stdout for _ in range(3)]
    # With the default sync_at this is ["ran\n", "", ""] (test_shared_review 3).
    assert runs == ["ran\n", "", ""], "max_tries=1, yet the task ran at every start"


# -- 8. a killed writer whose claims were all released (or reset) keeps its log forever

CLAIM_RELEASE_AND_WAIT = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True)
assert t.try_it("k")
t.release("k")                 # committed, then released: its log counts no tries now
print("released", flush=True)
sys.stdin.readline()
"""


def test_8_a_dead_writers_log_with_every_claim_released_is_never_removed(
    tmp_path: Path,
) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True) as seed:
        seed.add("k")
    with Child(CLAIM_RELEASE_AND_WAIT, str(store)) as child:
        child.expect("released")
        child.signal(signal.SIGKILL)
        child.proc.wait(timeout=20)
        pid = child.pid
    for shared in (True, True, False):  # shared syncs, then a plain open's full sync
        with tastypy.Tracker(store, shared=shared) as t:
            t.sync()
    left = list((store / "writers").glob(f"{pid}-*.jsonl"))
    # Fleet.dead() lists only dead logs that count tries, so neither
    # _fleet_commit nor clear_claims_logs forgets it, and live_writers(reap=True)
    # keeps any file with a line after the first: every shared writer opens it
    # (one descriptor each, per such log) for as long as the store is used.
    assert not left, "a dead writer's log that counts nothing stays in writers/ for good"
