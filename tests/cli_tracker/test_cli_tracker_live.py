"""The read commands beside a live or a killed writer, and ``tastypy status --watch``.

Writers run in child processes; every wait has a deadline, and tests synchronise
on a child's output or on the store (read-only), never on sleeps alone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tastypy

from _subproc import Child
from _tracker_commands import (
    KEYS,
    STATES,
    TRIED,
    WAIT,
    Command,
    _assert_fits,
    _assert_one_line_error,
    _count_fields,
    _files,
    _records,
    tastypy_cmd,
)

HOLD = """
import sys
import tastypy

tracker = tastypy.Tracker(sys.argv[1])
if len(sys.argv) > 2:
    tracker.try_it("task-09")  # logged to tries.jsonl at once, not synced
    tracker.mark_done("task-10")  # in memory only
print("ready", flush=True)
sys.stdin.readline()
tracker.close()
print("closed", flush=True)
"""


KILLED = """
import os, signal, sys
import tastypy

tracker = tastypy.Tracker(sys.argv[1])
assert tracker.try_it("task-04")  # tried once before: its second and last try
assert tracker.try_it("task-09")  # untried until now
assert tracker.try_it("task-new")  # not in the store: the try adds it
os.kill(os.getpid(), signal.SIGKILL)  # no sync: only tries.jsonl knows these tries
"""


def test_read_commands_show_the_tries_of_a_killed_writer(tracker_store: Path) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, str(tracker_store)],
        capture_output=True,
        encoding="utf-8",
        timeout=WAIT,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tracker_store / "tries.jsonl").stat().st_size > 0
    before = _files(tracker_store)
    tries = {"task-04": 2, "task-09": 1, "task-new": 1}

    for key, count in tries.items():
        pretty = tastypy_cmd("show", str(tracker_store), key)
        assert pretty.returncode == 0, pretty.stderr
        assert json.loads(pretty.stdout)["_tries"] == count, (key, pretty.stdout)
        compact = tastypy_cmd("show", str(tracker_store), key, "--json")
        assert json.loads(compact.stdout) == json.loads(pretty.stdout)
    assert json.loads(tastypy_cmd("show", str(tracker_store), "task-new").stdout) == {
        "_done": False,
        "_tries": 1,
    }
    summary = json.loads(tastypy_cmd("show", str(tracker_store), "--json").stdout)
    assert summary["kind"] == "tracker"
    assert summary["keys"] == len(KEYS) + 1  # task-new too

    exported = tastypy_cmd("export", str(tracker_store))
    assert exported.returncode == 0, exported.stderr
    records = json.loads(exported.stdout)
    assert list(records) == [*KEYS, "task-new"]
    assert {key: records[key]["_tries"] for key in tries} == tries
    assert records == _records(tracker_store)  # what the tracker itself sees
    lines = tastypy_cmd("export", str(tracker_store), "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [[k, v] for k, v in records.items()]

    failed = tastypy_cmd("list", str(tracker_store), "--state", "failed")
    assert failed.stdout.split() == ["task-05", "task-06", "task-09", "task-new"]
    exhausted = tastypy_cmd("list", str(tracker_store), "--state", "exhausted")
    assert exhausted.stdout.split() == ["task-04", "task-07"]
    assert _files(tracker_store) == before  # read commands changed nothing


def test_status_and_refusals_name_a_writer_whose_lock_file_was_deleted(
    tracker_store: Path,
) -> None:
    with Child(HOLD, str(tracker_store)) as writer:
        writer.expect("ready")
        (tracker_store / "lock").unlink()
        frame = json.loads(tastypy_cmd("status", str(tracker_store), "--json").stdout)
        assert frame["writer"] == writer.pid
        refused = tastypy_cmd("reset", str(tracker_store), "--all")
        _assert_one_line_error(refused, str(tracker_store), f"process {writer.pid} ")
        writer.send()
        writer.expect("closed")
        assert writer.finish() == 0, writer.stderr
    frame = json.loads(tastypy_cmd("status", str(tracker_store), "--json").stdout)
    assert frame["writer"] is None


def test_read_commands_work_while_a_writer_holds_the_store(tracker_store: Path) -> None:
    with Child(HOLD, str(tracker_store), "busy") as writer:
        writer.expect("ready")
        before = _files(tracker_store)
        assert json.loads((tracker_store / "lock").read_text())["pid"] == writer.pid

        frame = json.loads(tastypy_cmd("status", str(tracker_store), "--json").stdout)
        assert frame["writer"] == writer.pid
        # the logged try of task-09 counts; the unsynced mark_done does not
        assert _count_fields(frame) == {
            "total": 12,
            "done": 4,
            "tried": TRIED + 1,
            "failed": 4,
            "exhausted": 1,
            "aborted": 1,
            "untried": 2,
        }
        screen = tastypy_cmd("status", str(tracker_store))
        assert screen.returncode == 0, screen.stderr
        assert f"job running (pid {writer.pid})" in screen.stdout
        _assert_fits(screen.stdout, tracker_store)

        listed = tastypy_cmd("list", str(tracker_store), "--state", "failed")
        assert listed.stdout.split() == [*STATES["failed"], "task-09"]
        exported = tastypy_cmd("export", str(tracker_store))
        assert exported.returncode == 0, exported.stderr
        assert list(json.loads(exported.stdout)) == KEYS
        assert _files(tracker_store) == before

        # a writing command is refused, with the holder named
        refused = tastypy_cmd("reset", str(tracker_store), "--all")
        _assert_one_line_error(refused, str(tracker_store), str(writer.pid))
        assert _files(tracker_store) == before
        writer.send()
        writer.expect("closed")
        assert writer.finish() == 0


FOLLOW = """
import sys
import time
import tastypy

n = int(sys.argv[2])
with tastypy.Tracker(sys.argv[1]) as tracker:
    tracker.add_many(f"task-{i:02d}" for i in range(n))
    tracker.sync()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(n):
        time.sleep(0.1)
        tracker.mark_done(f"task-{i:02d}")
        tracker.sync()
print("closed", flush=True)
"""


def test_status_watch_follows_a_live_writer_and_stops_when_all_is_done(tmp_path: Path) -> None:
    path = tmp_path / "live.tracker"
    n = 40
    with Child(FOLLOW, str(path), str(n)) as writer:
        writer.expect("ready")
        with Command("status", str(path), "--watch", "--json") as watcher:
            first = json.loads(watcher.readline())
            assert first["total"] == n
            assert first["done"] == 0
            assert first["writer"] == writer.pid
            writer.send()  # start marking tasks done
            assert watcher.finish(timeout=WAIT) == 0, watcher.stderr  # ends by itself
            frames = [first, *(json.loads(line) for line in watcher.stdout.splitlines())]
        writer.expect("closed")
        assert writer.finish() == 0
    dones = [frame["done"] for frame in frames]
    assert dones == sorted(dones)
    assert len(set(dones)) >= 3, dones  # several frames, progress between them
    assert dones[-1] == n
    assert dones.count(n) == 1  # it stopped at the first frame with everything done
    assert all(frame["total"] == n for frame in frames)
    running = [frame for frame in frames[1:-1] if frame["writer"] == writer.pid]
    assert running, frames
    assert any(frame["rate"] and frame["rate"] > 0 for frame in running), frames
    assert any(frame["eta_seconds"] is not None for frame in running), frames
    assert not watcher.stderr


OVERLAPPING = """
import sys
import tastypy

with tastypy.Tracker(sys.argv[1], max_tries=1) as tracker:
    tracker.add_many(["a", "b"])
    tracker.try_it("a")
    tracker.abort("a")  # exhausted and aborted
"""


@pytest.mark.parametrize("store", ["untried", "aborted after max_tries"])
def test_status_watch_keeps_going_until_ctrl_c(tmp_path: Path, store: str) -> None:
    """While a job writes and a task is left to do, --watch redraws until Ctrl-C."""
    path = tmp_path / "w.tracker"
    if store == "untried":
        with tastypy.Tracker(path) as tracker:
            tracker.add_many(["a", "b"])
    else:
        made = subprocess.run(
            [sys.executable, "-c", OVERLAPPING, str(path)],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert made.returncode == 0, made.stderr
    with Child(HOLD, str(path)) as writer:
        writer.expect("ready")
        with Command("status", str(path), "--watch", "--json") as watcher:
            first = json.loads(watcher.readline())
            assert first["total"] == 2
            assert first["writer"] == writer.pid
            # "b" was never tried: a second frame must come, a second later
            second = json.loads(watcher.readline(timeout=10))
            assert _count_fields(second) == _count_fields(first)
            watcher.signal(signal.SIGINT)
            assert watcher.finish() == 0
            assert "Traceback" not in watcher.stderr
        writer.send()
        assert writer.finish() == 0
