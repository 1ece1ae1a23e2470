"""Shared stores across real processes: ``POD(path, shared=True)`` in several programs.

Each process commits on top of the others' commits; per key the last writer
wins; nobody's keys are lost; a plain writer and shared writers exclude each
other; a shared writer killed at any OS call of its sync costs nothing but
that sync, and the others go on.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import tastypy
from tastypy.errors import LockedError
from tastypy.storage.files._writers import live_writers

from _subproc import Child, read_store

WRITER = """
import sys
import tastypy
path, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with tastypy.POD(path, shared=True, sync_at=7) as pod:
    print("open", flush=True)
    sys.stdin.readline()
    for i in range(count):
        pod[f"{tag}{i}"] = {"by": tag, "i": i}
        if i % 5 == 0:
            pod["both"] = tag  # a key both write
    pod.sync()
    print(len(pod), flush=True)
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with Child(WRITER, str(store), "a", "300") as a, Child(WRITER, str(store), "b", "300") as b:
        a.expect("open")
        b.expect("open")
        a.send()
        b.send()
        assert a.finish() == 0, a.stderr
        assert b.finish() == 0, b.stderr
    stored = dict(read_store(store))
    assert len(stored) == 601
    for tag in "ab":
        assert all(stored[f"{tag}{i}"] == {"by": tag, "i": i} for i in range(300))
    assert stored["both"] in ("a", "b")
    # The last of the two to close had seen everything: it printed all keys.
    assert max(int(a.stdout.split()[-1]), int(b.stdout.split()[-1])) == 601
    assert tastypy.verify(store).ok


HOLDER = """
import sys
import tastypy
with tastypy.POD(sys.argv[1], shared=True) as pod:
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        if command == "set":
            key, value = rest.split(" ")
            pod[key] = value
        elif command == "sync":
            pod.sync()
        elif command == "show":
            pod.refresh()
        print(sorted(pod.items()), flush=True)
"""


def test_per_key_the_last_writer_wins_and_a_key_only_read_is_not_written_back(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s"
    with tastypy.POD(store) as pod:
        pod.update({"k": "start", "j": "start"})
    with Child(HOLDER, str(store)) as child, tastypy.POD(store, shared=True) as here:
        assert here["k"] == "start"  # read here: dirty, but not a change
        child.send("set k child")
        child.readline()
        child.send("sync")
        assert child.readline() == str([("j", "start"), ("k", "child")])
        here["j"] = "here"
        here.sync()  # k was only read here: the child's k stands
        assert dict(here) == {"k": "child", "j": "here"}
        child.send("show")
        assert child.readline() == str([("j", "here"), ("k", "child")])
        here["k"] = "here"  # now a change of ours, committed after the child's
        here.sync()
        child.send("show")
        assert child.readline() == str([("j", "here"), ("k", "here")])
    assert dict(read_store(store)) == {"k": "here", "j": "here"}


def test_plain_and_shared_writers_exclude_each_other_and_name_the_holder(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s"
    with Child(HOLDER, str(store)) as child:
        child.send("show")
        child.readline()
        with pytest.raises(LockedError, match=rf"shared writing by process {child.pid}\b"):
            tastypy.POD(store)
        with tastypy.POD(store, readonly=True) as reader:
            assert dict(reader) == {}
        child.send("set x 1")
        child.readline()
        child.send("sync")
        child.readline()
        with tastypy.POD(store, shared=True) as other:
            assert other["x"] == "1"
    with tastypy.POD(store) as plain:
        code = "import sys, tastypy\ntastypy.POD(sys.argv[1], shared=True)"
        done = subprocess.run(
            [sys.executable, "-c", code, str(store)], capture_output=True, text=True, check=False
        )
        assert done.returncode != 0
        assert "LockedError" in done.stderr and "not shared" in done.stderr
        plain["y"] = 2
    assert dict(read_store(store)) == {"x": "1", "y": 2}


KILLED = """
import os, signal, sys
import tastypy
path, gzipped, kill_at = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
pod = tastypy.POD(path, shared=True)
pod["k0"] = "child"
pod["k1"]["i"] = 100
del pod["k2"]
pod["child-new"] = [1, 2]
calls = 0
def counting(name, real):
    def call(*args, **kwargs):
        global calls
        calls += 1
        if calls == kill_at:
            if name == "pwrite" and len(args[1]) > 1:  # die halfway through the write
                real(args[0], bytes(args[1])[: len(args[1]) // 2], args[2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call
for name in ("write", "pwrite", "fsync", "fdatasync", "ftruncate", "replace", "unlink", "open"):
    setattr(os, name, counting(name, getattr(os, name)))
pod.sync()
pod.compact()  # folds the survivor's commits and this one's, under the commit lock
print("finished", calls, flush=True)
os._exit(0)
"""


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzipped"])
def test_a_shared_writer_killed_at_each_step_of_a_sync_and_compaction_costs_only_that(
    tmp_path: Path, gzipped: bool
) -> None:
    before = {f"k{i}": {"i": i} for i in range(5)}
    child_after = {
        "k0": "child",
        "k1": {"i": 100},
        **{f"k{i}": {"i": i} for i in range(3, 5)},
        "child-new": [1, 2],
    }
    kill_at, finished = 1, False
    while not finished:
        store = tmp_path / f"s{kill_at}"
        with tastypy.POD(store, gzipped=gzipped, file_size=2) as pod:
            pod.update(before)
        with tastypy.POD(store, shared=True) as survivor:
            survivor["mine"] = "before"
            survivor.sync()
            done = subprocess.run(
                [sys.executable, "-c", KILLED, str(store), str(int(gzipped)), str(kill_at)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            finished = done.returncode == 0
            assert finished or done.returncode == -9, done.stderr
            survivor["mine"] = "after"
            survivor.sync()  # the dead writer's torn commit, if any, is cut off here
            seen = dict(survivor)
        stored = dict(read_store(store))
        assert stored == seen
        assert stored.pop("mine") == "after"
        assert stored in (before, child_after), f"killed at OS call {kill_at}: {stored}"
        if finished:
            assert stored == child_after
        report = tastypy.verify(store)
        assert report.ok, (kill_at, report)
        assert live_writers(store) == []
        kill_at += 1
    assert kill_at > 8  # the sync and compaction reached several OS calls before finishing


INCREMENT = """
import sys
import tastypy
with tastypy.POD(sys.argv[1], shared=True) as pod:
    print("open", flush=True)
    sys.stdin.readline()
    for _ in range(200):
        with pod.locked():
            pod["n"] = pod.get("n", 0) + 1
"""


def test_two_processes_incrementing_in_locked_blocks_lose_no_increment(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with Child(INCREMENT, str(store)) as a, Child(INCREMENT, str(store)) as b:
        a.expect("open")
        b.expect("open")
        a.send()
        b.send()
        assert a.finish() == 0, a.stderr
        assert b.finish() == 0, b.stderr
    assert dict(read_store(store)) == {"n": 400}


def test_a_locked_block_on_a_plain_store_is_one_sync_or_none(tmp_path: Path) -> None:
    with tastypy.POD(tmp_path / "p") as pod:
        pod["a"] = 1
        with pod.locked():
            pod["a"] += 1
            pod["b"] = 1
        assert dict(read_store(tmp_path / "p")) == {"a": 2, "b": 1}
        with pytest.raises(KeyError), pod.locked():
            pod["a"] = 100
            _ = pod["missing"]
        assert dict(pod) == {"a": 2, "b": 1}


CREATE_AT = """
import sys, time
import tastypy
start = float(sys.argv[2])
while time.time() < start:  # every process opens at the same moment
    pass
tastypy.POD(sys.argv[1], shared=True).close()
"""


def test_processes_making_one_new_shared_store_at_once_all_open_it(tmp_path: Path) -> None:
    # The store's manifest appeared between an opener's two looks at the
    # directory, which then called it a stranger's ("found manifest.json").
    failures = []
    for round_ in range(20):
        store = tmp_path / f"s{round_}"
        start = time.time() + 0.3
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CREATE_AT, str(store), str(start)],
                stderr=subprocess.PIPE,
            )
            for _ in range(4)
        ]
        for proc in procs:
            _out, err = proc.communicate(timeout=60)
            if proc.returncode:
                failures.append(err.decode().strip().splitlines()[-1])
    assert failures == []
