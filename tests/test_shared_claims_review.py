"""Findings of the review of lock-free claims (claims by byte locks, 6182131 on).

Each test pins one finding; each failed before its fix. Numbers follow the
review's report. Real processes wherever liveness or a
kill matters (``_subproc.Child``); a fault is injected (monkeypatch) only to
stop a process at an exact point that a signal or SIGKILL could hit.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

import tastypy
from tastypy.storage.files import _shared

from _subproc import Child, try_elsewhere

# -- 1. a task added in memory, then claimed: the claim says "not new" ---------------

ADD_CLAIM_AND_WAIT = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True, max_tries=1)
t.add_if_absent("poison")      # in memory: committed at the next sync
got = t.try_it("poison")       # claim line without "new": a record is in memory
print("claimed" if got else "refused", flush=True)
if got:
    sys.stdin.readline()       # the task kills its process before any sync
"""


def test_1_a_poison_task_added_with_add_is_retried_forever_despite_max_tries(
    tmp_path: Path,
) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True, max_tries=1):
        pass
    with Child(ADD_CLAIM_AND_WAIT, str(store)) as child:
        child.expect("claimed")
        child.signal(signal.SIGKILL)
        child.proc.wait(timeout=20)
    with tastypy.Tracker(store, shared=True, max_tries=1) as after:
        after.sync()  # settles the killed writer's log (and deletes it)
    # max_tries=1 and one try already killed a process: no more tries. (d15e513
    # re-created the record with its try; now the claim is "not new", the
    # record is missing, so the try is dropped and the next worker runs it again.)
    with Child(ADD_CLAIM_AND_WAIT, str(store)) as child:
        assert child.readline() == "refused", "the poison task got a second try"
        assert child.finish() == 0


# -- 2. release() releases a claim whose tries its commit left out --------------------


def test_2_release_after_a_commit_that_left_the_key_out_keeps_max_tries(
    tmp_path: Path,
) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True, max_tries=1) as seed:
        seed.add("k")
    a = tastypy.Tracker(store, shared=True, max_tries=1)
    try:
        assert a.try_it("k")
        a["k"]["note"] = {1, 2}  # cannot be encoded: the commit in release() leaves "k" out
        with pytest.raises(TypeError, match="not JSON-serializable"):
            a.release("k")  # refused: "its tries are committed" would be false
        assert try_elsewhere(store, "k", max_tries=1).startswith("False"), (
            "another process got a second try of a task with max_tries=1"
        )
    finally:
        a["k"]["note"] = "fixed"
        a.close()


# -- 3. a signal between take() and the try block left the byte lock taken ------------


def test_3_a_signal_right_after_the_claim_lock_is_taken_leaks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "t"
    t = tastypy.Tracker(store, shared=True)
    try:
        t.add("k")
        real = _shared.SharedFileStorage.take

        def take_then_interrupted(self: _shared.SharedFileStorage, key: str) -> bool:
            real(self, key)
            # What a SIGALRM timeout handler or Ctrl-C does when it lands just
            # after take() returns, before _fleet_try's try/finally (and
            # outside critical()). A real SIGALRM loop leaks ~5% of the
            # interrupted tries this way.
            raise KeyboardInterrupt

        monkeypatch.setattr(_shared.SharedFileStorage, "take", take_then_interrupted)
        with pytest.raises(KeyboardInterrupt):
            t.try_it("k")
        assert "k" not in set(t.holders()), "this process did not claim it"
        t.sync()  # a program that catches the interrupt and syncs lets it go
        assert try_elsewhere(store, "k").startswith("True"), (
            "nobody claims the task, yet no other process can get it while this one lives"
        )
        with pytest.raises(KeyboardInterrupt):
            t.try_it("j")
        monkeypatch.undo()
        assert t.try_it("k") and t.tries("k") == 2, "free again: the other's try counts"
        assert try_elsewhere(store, "j").startswith("True"), "let go at the next try_it"
    finally:
        t.close()


# -- 4. a durable commit whose writer died before publishing it -----------------------

MARK_DONE_KILLED_BEFORE_PUBLISHING = """
import os, signal, sys, tastypy
from tastypy.storage.files import _commit_lock
t = tastypy.Tracker(sys.argv[1], shared=True)
assert t.try_it("k")
print("claimed", flush=True)
sys.stdin.readline()
def killed(self, generation, end):  # SIGKILL after fdatasync, before the publish pwrite
    os.kill(os.getpid(), signal.SIGKILL)
_commit_lock.CommitLock.publish = killed
t.mark_done("k")
t.sync()
"""


def test_4_a_durable_done_mark_is_seen_by_the_next_claim_even_if_unpublished(
    tmp_path: Path,
) -> None:
    store = tmp_path / "t"
    other = tastypy.Tracker(store, shared=True)
    try:
        other.add_many(["k", "x"])
        with Child(MARK_DONE_KILLED_BEFORE_PUBLISHING, str(store)) as child:
            child.expect("claimed")
            other.refresh()  # has seen the child's open (its manifest)
            child.send()
            child.proc.wait(timeout=20)
            assert child.proc.returncode == -signal.SIGKILL
        with tastypy.Tracker(store, readonly=True) as seen:
            assert seen.check("k"), "the done mark is durable in the journal"
        claimed = other.try_it("k")
        other.sync()
        with tastypy.Tracker(store, readonly=True) as seen:
            assert seen.check("k"), "the durable done mark was overwritten by a redo's claim"
        assert not claimed, "a task whose done mark is committed was handed out again"
    finally:
        other.close()


# -- 5. commit.lock replaced: a reader's published line is stale for good -------------

COMMIT_TWICE = """
import sys, tastypy
q = tastypy.POD(sys.argv[1], shared=True)
q["b"] = 2; q.sync()
print("b", flush=True)
sys.stdin.readline()
q["c"] = 3; q.sync()
print("c", flush=True)
sys.stdin.readline()
q.close()
"""


def test_5_refresh_sees_commits_made_after_commit_lock_was_replaced(tmp_path: Path) -> None:
    store = tmp_path / "s"
    p = tastypy.POD(store, shared=True)
    try:
        p["a"] = 1
        p.sync()
        with Child(COMMIT_TWICE, str(store)) as child:
            child.expect("b")
            p.refresh()
            assert dict(p) == {"a": 1, "b": 2}
            os.unlink(store / "commit.lock")  # a "stale lock" clean-up (docs/SHARED.md gap)
            child.send()
            child.expect("c")
            p.refresh()  # reads the old inode's published line: nothing new
            assert dict(p) == {"a": 1, "b": 2, "c": 3}, "refresh() missed a committed change"
            child.send()
            assert child.finish() == 0
    finally:
        p.close()


# -- 6. claims/ removed: every try_it raises ------------------------------------------


def test_6_try_it_survives_the_claims_directory_being_removed(tmp_path: Path) -> None:
    store = tmp_path / "t"
    t = tastypy.Tracker(store, shared=True)
    try:
        t.add_many([f"k{i}" for i in range(40)])
        assert t.try_it("k0")
        shutil.rmtree(store / "claims")  # a clean-up of "lock files"
        # commit.lock is opened anew when deleted; claims/NN.lock cannot be.
        assert t.try_it("k1")
        assert t.try_it("k2")
    finally:
        t.close()


# -- 7. the fast parse of a claims log accepts what no line says -----------------------


def test_7_a_claim_split_over_two_damaged_lines_is_not_counted(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True, max_tries=5) as seed:
        seed.add("k")
    # A dead writer's log, damaged (hand edit): neither line is JSON on its own,
    # so the careful path skips both; joined by "," they make a claim.
    (store / "writers" / "123-456-0badf00d.jsonl").write_bytes(
        b'{"pid": 123}\n{"claim":"k","x":"\n","tries":5},0\n'
    )
    with tastypy.Tracker(store, max_tries=5) as t:  # a plain open applies dead logs
        assert t.tries("k") == 0, "five tries counted from two lines that are no claim"


# -- 8. a task the killed writer added itself, deleted since, comes back ---------------

ADD_NEW_SYNC_AND_WAIT = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True)
assert t.try_it("added_here")  # a task new to the store: its claim says "new"
t.sync()                       # its record is committed now; the claim stays
print("claimed", flush=True)
sys.stdin.readline()
"""


def test_8_a_task_deleted_while_its_killed_adder_held_it_stays_deleted(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True):
        pass
    with Child(ADD_NEW_SYNC_AND_WAIT, str(store)) as holder:
        holder.expect("claimed")
        with tastypy.Tracker(store, shared=True) as other:
            del other["added_here"]
        holder.signal(signal.SIGKILL)
        holder.proc.wait(timeout=20)
    with tastypy.Tracker(store, shared=True) as after:
        after.sync()
        assert "added_here" not in after, "a deleted task stays deleted"


# -- 9. reset_tries() is undone when its process is killed holding the task ------------

RESET_AND_WAIT = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True, max_tries=3)
assert t.try_it("k") and t.try_it("k") and t.try_it("k")
t.reset_tries("k")
t.sync()                       # the reset is committed
print("reset", flush=True)
sys.stdin.readline()
"""


def test_9_a_committed_reset_survives_its_writer_being_killed(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True, max_tries=3) as seed:
        seed.add("k")
    with Child(RESET_AND_WAIT, str(store)) as child:
        child.expect("reset")
        child.signal(signal.SIGKILL)
        child.proc.wait(timeout=20)
    with tastypy.Tracker(store, shared=True, max_tries=3) as after:
        after.sync()  # settles the killed writer's log: its claim lines say 3
        assert after.tries("k") == 0, "the committed reset was undone by the dead log"


# -- 10. a claim's try lost: _hand_out's auto-sync reloads the record it handed out ----

COMMIT_AND_COMPACT_ON_CUE = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True)
print("ready", flush=True)
sys.stdin.readline()
for i in range(5):                 # commits the other writer has not seen...
    t[f"n{i}"] = {"_done": True}
    t.sync()
t.compact()                        # ...folded: it has missed a whole compaction
print("done", flush=True)
sys.stdin.readline()
t.close()
"""


def test_10_a_try_counted_by_try_it_reaches_the_record_across_an_automatic_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tastypy.tracker import _fleet

    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True, max_tries=1) as seed:
        seed.add_many(["k", "x"])
    a = tastypy.Tracker(store, shared=True, max_tries=1, sync_at=2)
    try:
        a["x"]["note"] = 1  # one key dirty: the next hand-out reaches sync_at
        with Child(COMMIT_AND_COMPACT_ON_CUE, str(store)) as other:
            other.expect("ready")
            real = _fleet.FleetTasks._claim

            def claim_then_others_compact(self: object, storage: object, key: str, limit: int):
                tries = real(self, storage, key, limit)  # type: ignore[arg-type]
                # Here, between the lock-free catch-up and _hand_out, another
                # writer commits and compacts (a race the 6-process stress hits
                # a few times per 3,000 tasks).
                other.send()
                other.expect("done")
                return tries

            monkeypatch.setattr(_fleet.FleetTasks, "_claim", claim_then_others_compact)
            assert a.try_it("k")
            monkeypatch.undo()
            assert a.tries("k") == 1, "try_it's count went into a record the sync replaced"
            a.release("k")
            other.send()
            assert other.finish() == 0
        with tastypy.Tracker(store, readonly=True) as seen:
            assert seen.tries("k") == 1
    finally:
        a.close()


POD_COMMIT_AND_COMPACT_ON_CUE = """
import sys, tastypy
q = tastypy.POD(sys.argv[1], shared=True)
print("ready", flush=True)
sys.stdin.readline()
for i in range(5):
    q[f"n{i}"] = i
    q.sync()
q.compact()
print("done", flush=True)
q.close()
"""


def test_10b_a_value_handed_out_across_an_automatic_sync_keeps_its_change(
    tmp_path: Path,
) -> None:
    # The root of 10, in pod.py's _hand_out (older than this change): the value
    # is read before the automatic sync, which may reload every key.
    store = tmp_path / "s"
    with tastypy.POD(store, shared=True) as seed:
        seed["k"] = {"v": 0}
        seed["x"] = {}
    p = tastypy.POD(store, shared=True, sync_at=2)
    try:
        p["x"]["note"] = 1  # dirty: handing out "k" reaches sync_at
        with Child(POD_COMMIT_AND_COMPACT_ON_CUE, str(store)) as other:
            other.expect("ready")
            other.send()
            other.expect("done")
            assert other.finish() == 0
        p["k"]["v"] = 1  # the automatic sync first reloads "k"; this changes the old dict
        p.sync()
        assert p["k"] == {"v": 1}, "a change made through p[key] was silently lost"
    finally:
        p.close()
