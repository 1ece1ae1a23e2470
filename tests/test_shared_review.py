"""Bugs an adversarial review of shared stores found, each pinned by a test.

Numbers follow the review's report (docs/SHARED.md and the closing note).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tastypy
from tastypy.errors import CorruptStoreError
from tastypy.storage.files import _engine as files
from tastypy.storage.files._writers import WRITERS, live_writers

from _subproc import Child

CLAIM_AND_WAIT = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True)
assert t.try_it("task")
print("claimed", flush=True)
sys.stdin.readline()
"""

CLAIM_BOTH_AND_WAIT = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], shared=True)
assert t.try_it("kept") and t.try_it("deleted") and t.try_it("never_committed")
print("claimed", flush=True)
sys.stdin.readline()
"""


def killed_after_claiming(store: Path, *extra: str) -> None:
    with Child(CLAIM_AND_WAIT, str(store), *extra) as child:
        child.expect("claimed")
        child.signal(signal.SIGKILL)
        child.proc.wait(timeout=20)


def test_1_a_plain_writers_tries_log_is_applied_once_not_at_every_shared_open(
    tmp_path: Path,
) -> None:
    store = tmp_path / "t"
    code = """
    import os, sys, tastypy
    def fn(key):
        if key == "b":
            os._exit(9)  # dies mid-run: the outcome of "a" is only in tries.jsonl
        raise ValueError("first attempt failed")
    tastypy.Tracker(sys.argv[1], max_tries=5).run(fn, ["a", "b"], progress=False)
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(store)], check=False)
    assert (store / "tries.jsonl").stat().st_size > 0
    with tastypy.Tracker(store, shared=True) as t:
        assert t.try_it("a")
        t["a"]["result"] = "page"
        t.mark_done("a")
    with tastypy.Tracker(store, shared=True):
        pass  # a later open must not lay the old outcome over the new one
    with tastypy.Tracker(store, readonly=True) as seen:
        assert seen["a"]["_done"] is True and seen["a"]["result"] == "page"
        assert seen["a"]["_tries"] == 2


def test_2_a_dead_writer_with_a_long_command_line_keeps_its_tries(tmp_path: Path) -> None:
    store = tmp_path / "t"
    tastypy.Tracker(store, max_tries=1, shared=True).close()
    killed_after_claiming(store, "x" * 5000)
    with tastypy.Tracker(store, shared=True) as t:
        assert not t.try_it("task"), "its one try was used by the killed writer"


def test_3_a_clean_exit_whose_last_sync_failed_keeps_its_tries(tmp_path: Path) -> None:
    store = tmp_path / "t"
    tastypy.Tracker(store, max_tries=1, shared=True).close()
    code = """
    import sys, tastypy
    t = tastypy.Tracker(sys.argv[1], shared=True)
    if t.try_it("task"):
        t["task"]["result"] = float("nan")  # cannot be written: the last sync leaves it out
        print("ran", flush=True)
    """
    runs = [
        subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), str(store)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for _ in range(3)
    ]
    assert runs == ["ran\n", "", ""], "the try counted once, though never committed"


@pytest.mark.parametrize("how", ["revert", "locked() raising"])
def test_4_a_try_counted_before_a_revert_still_counts(tmp_path: Path, how: str) -> None:
    store = tmp_path / "t"
    tastypy.Tracker(store, max_tries=1, shared=True).close()
    t = tastypy.Tracker(store, shared=True)
    if how == "revert":
        assert t.try_it("task")
        t.revert()
    else:
        with pytest.raises(RuntimeError), t.locked():
            assert t.try_it("task")
            raise RuntimeError("the task failed")
    t.close()
    with tastypy.Tracker(store, shared=True) as again:
        assert not again.try_it("task")


def test_5_a_failure_to_list_the_writers_raises_rather_than_claim_a_held_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "t"
    with Child(CLAIM_AND_WAIT, str(store)) as holder:
        holder.expect("claimed")
        t = tastypy.Tracker(store, shared=True)
        try:
            (store / WRITERS / ".joined").write_bytes(b"++++++")  # a writer joined: list again
            from tastypy.storage.files import _fs

            def out_of_fds(path: Path) -> list[str]:
                raise OSError(errno.EMFILE, "Too many open files", str(path))

            monkeypatch.setattr(_fs, "listdir", out_of_fds)
            # A task held elsewhere is refused by its claim lock, before any listing.
            assert not t.try_it("task")
            with pytest.raises(OSError, match="Too many open files"):
                t.try_it("free")
            monkeypatch.undo()
            assert not t.try_it("task"), "the holder lives"
            assert t.try_it("free"), "the failed try took nothing"
        finally:
            t.close()


def test_9_an_empty_temporary_file_of_a_writer_registering_is_not_reaped(
    tmp_path: Path,
) -> None:
    directory = tmp_path / WRITERS
    directory.mkdir()
    registering = directory / ".1-2-0badc0de.jsonl.tmp"  # between its open and its lock
    registering.write_bytes(b"")
    dead = directory / ".1-3-0badc0de.jsonl.tmp"  # locked, written, then killed
    dead.write_bytes(b'{"pid": 1}\n')
    live_writers(tmp_path, reap=True)
    assert registering.exists()
    assert not dead.exists()


def test_11_a_shared_tracker_compacts_by_itself_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "COMPACT_MIN_BYTES", 20_000)
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True) as t:
        for i in range(400):
            key = f"k{i % 20}"
            if t.try_it(key):
                t[key]["pad"] = "x" * 200
            t.sync()
        manifest = json.loads((store / "manifest.json").read_text())
        assert manifest["generation"] > 0
        assert (store / manifest["journal"]).stat().st_size < 60_000


def test_12_keys_added_here_go_after_the_others_new_keys_as_in_the_store(
    tmp_path: Path,
) -> None:
    store = tmp_path / "t"
    other = """
    import sys, tastypy
    with tastypy.Tracker(sys.argv[1], shared=True) as t:
        assert t.try_it(sys.argv[2])
        t.mark_done(sys.argv[2])
    """
    with tastypy.Tracker(store, shared=True) as a:
        assert a.try_it("a1")
        subprocess.run(
            [sys.executable, "-c", textwrap.dedent(other), str(store), "b1"], check=True
        )
        assert a.try_it("a2")  # catches up: b1 comes in
        a.sync()
        order = list(a)
        with tastypy.POD(store, readonly=True) as seen:
            assert order == list(seen) == ["b1", "a1", "a2"]


def test_14_hostile_writer_files_neither_crash_nor_lead_out_of_the_store(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s"
    tastypy.POD(store, shared=True).close()
    huge = store / WRITERS / "1-1-0badc0de.jsonl"
    huge.write_text('{"pid": 1, "since": 1' + "0" * 400 + "}\n")
    fd = os.open(huge, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "alive"
    try:
        tastypy.POD(store, shared=True).close()
        [listed] = live_writers(store)
        assert listed.since == 0.0
    finally:
        os.close(fd)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".9-9-0badc0de.jsonl.tmp").write_text("{}\n")
    other = tmp_path / "t"
    tastypy.POD(other).close()
    os.symlink(elsewhere, other / WRITERS)
    with pytest.raises(CorruptStoreError, match="not a directory"):
        tastypy.POD(other, shared=True)
    assert (elsewhere / ".9-9-0badc0de.jsonl.tmp").exists(), "nothing outside was touched"


def test_7_a_locked_block_with_a_value_that_cannot_be_written_commits_nothing(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s"
    with tastypy.POD(store, shared=True) as pod:
        pod.update({"alice": {"balance": 50}, "bob": {"balance": 0}})
        pod.sync()
        with pytest.raises(TypeError, match="committed nothing"), pod.locked():
            pod["alice"]["balance"] -= 50
            pod["bob"]["balance"] += 50
            pod["bob"]["history"] = [float("nan")]  # cannot be written
        assert dict(pod) == {"alice": {"balance": 50}, "bob": {"balance": 0}}
    with tastypy.POD(store, readonly=True) as seen:
        assert dict(seen) == {"alice": {"balance": 50}, "bob": {"balance": 0}}


def test_6_a_deleted_commit_lock_still_excludes_the_writers_opened_after(
    tmp_path: Path,
) -> None:
    store = tmp_path / "n"
    with tastypy.POD(store, shared=True) as pod:
        pod["n"] = 0
    a = tastypy.POD(store, shared=True)
    (store / "commit.lock").unlink()  # "a stale lock?"
    code = """
    import sys, tastypy
    with tastypy.POD(sys.argv[1], shared=True) as pod:
        for _ in range(100):
            with pod.locked():
                pod["n"] += 1
    """
    with a.locked():
        n = a["n"]
        later = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(store)])
        with pytest.raises(subprocess.TimeoutExpired):
            later.wait(timeout=1.0)  # it waits for this block
        a["n"] = n + 1
    assert later.wait(timeout=60) == 0
    a.close()
    with tastypy.POD(store, readonly=True) as seen:
        assert seen["n"] == 101


HOLD_BLOCK = """
import sys, tastypy
with tastypy.POD(sys.argv[1], shared=True) as pod:
    with pod.locked():
        pod["held"] = True
        print("holding", flush=True)
        sys.stdin.readline()
"""

WAIT_TO_SYNC = """
import sys, tastypy
pod = tastypy.POD(sys.argv[1], shared=True)
pod["mine"] = 1
print("syncing", flush=True)
sys.stdin.readline()
pod.sync()
print("synced", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_10_a_writer_waiting_for_anothers_commit_answers_ctrl_c_and_sigterm(
    tmp_path: Path, signum: int
) -> None:
    store = tmp_path / "s"
    tastypy.POD(store, shared=True).close()
    with Child(WAIT_TO_SYNC, str(store)) as waiter:
        waiter.expect("syncing")  # opened, before the holder starts
        with Child(HOLD_BLOCK, str(store)) as holder:
            holder.expect("holding")
            waiter.send()  # its sync now waits for the holder's block
            time.sleep(0.5)
            assert waiter.alive()
            waiter.signal(signum)
            status = waiter.proc.wait(timeout=30)  # within the exit's 10 s bound, not never
            assert status != 0
            if signum == signal.SIGTERM:
                assert status == -signal.SIGTERM
                assert "not saved" in waiter.proc.stderr.read().decode()
            else:
                assert b"KeyboardInterrupt" in waiter.proc.stderr.read()
            holder.send()
            assert holder.finish() == 0
    with tastypy.POD(store, readonly=True) as seen:
        assert dict(seen) == {"held": True}, "the interrupted sync committed nothing"


def test_13_reset_tries_in_a_shared_tracker_sticks(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with (
        tastypy.Tracker(store, shared=True, max_tries=2) as a,
        tastypy.Tracker(store, shared=True, max_tries=2) as b,
    ):
        for _ in range(2):  # two tries, each claimed and released (committed)
            assert a.try_it("k")
            a.release("k")
        assert not b.try_it("k"), "exhausted across the fleet"
        b.reset_tries("k")
        b.sync()
        assert a.try_it("k"), "the reset holds: a's old claims no longer count"
        assert a.tries("k") == 1
        a.release("k")
        assert b.try_it("k")
        assert b.tries("k") == 2
        b.reset_tries("k")  # of a task this process holds
        assert b.tries("k") == 0
        b.release("k")
        assert a.try_it("k") and a.tries("k") == 1
    with tastypy.Tracker(store, readonly=True) as seen:
        assert seen.tries("k") == 1


@pytest.mark.parametrize("plain", [False, True], ids=["shared", "plain"])
def test_8_a_task_deleted_while_a_killed_writer_held_it_stays_deleted(
    tmp_path: Path, plain: bool
) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True) as seed:
        seed.add_many(["kept", "deleted"])
    with Child(CLAIM_BOTH_AND_WAIT, str(store)) as holder:
        holder.expect("claimed")
        with tastypy.Tracker(store, shared=True) as other:
            del other["deleted"]  # while its holder lives
        holder.signal(signal.SIGKILL)
        holder.proc.wait(timeout=20)
    with tastypy.Tracker(store, shared=not plain) as after:  # settles the dead log
        after.sync()
        assert "deleted" not in after, "a deleted task does not come back"
        assert after.tries("kept") == 1, "the killed writer's try of the other counts"
        assert after.tries("never_committed") == 1, "so does one of a task it added"
    with tastypy.Tracker(store, readonly=True) as seen:
        assert list(seen) == ["kept", "never_committed"]


def test_add_and_add_if_absent_commit_at_once_in_a_shared_tracker(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with tastypy.Tracker(store, shared=True) as a, tastypy.Tracker(store, readonly=True) as view:
        a.add("one")
        a.add_if_absent("two")
        a.add_if_absent("two")
        view.refresh()
        assert list(view) == ["one", "two"], "seen by another process before any sync"
        with pytest.raises(tastypy.errors.DuplicateKeyError):
            a.add("one")
    with Child(ADD_IN_CHILD, str(store)) as child:
        assert child.readline() == "duplicate"
        assert child.finish() == 0


ADD_IN_CHILD = """
import sys, tastypy
with tastypy.Tracker(sys.argv[1], shared=True) as t:
    t.add_if_absent("three")
    try:
        t.add("one")   # another process added it (and committed it)
    except tastypy.errors.DuplicateKeyError:
        print("duplicate", flush=True)
"""
