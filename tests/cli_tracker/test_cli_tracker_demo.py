"""``tastypy demo``: Ctrl-C stops it, a rerun resumes it, and it says when to run it again.

The command runs as a real subprocess (``python -m tastypy``): see _tracker_commands.py.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import tastypy

from _tracker_commands import (
    WAIT,
    _assert_fits,
    _assert_one_line_error,
    _env,
    _records,
    _rows,
    tastypy_cmd,
)

# -- demo -----------------------------------------------------------------------------------


def _done_so_far(path: Path) -> int:
    """Tasks done in the store as last synced (0 while it is being made)."""
    if not (path / "manifest.json").exists():
        return 0
    try:
        with tastypy.Tracker(path, readonly=True) as tracker:
            return tracker.num_done()
    except tastypy.TastypyError:  # caught half made
        return 0


_THIS_RUN = re.compile(r"^this run: ([\d,]+) done, ([\d,]+) failed attempts, ([\d,]+) skipped")


def test_demo_stops_on_ctrl_c_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "my demo" / "demo.tracker"  # a space: the printed command quotes it
    tasks = 1000
    options = ["--tasks", str(tasks), "--workers", "50"]
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with (
        out.open("w") as stdout,
        err.open("w") as stderr,
        subprocess.Popen(
            [sys.executable, "-m", "tastypy", "demo", str(path), *options],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=_env(),
            start_new_session=True,  # its own process group, as a terminal's job
        ) as demo,
    ):
        deadline = time.monotonic() + WAIT
        while _done_so_far(path) == 0:
            assert demo.poll() is None, f"the demo ended first: {out.read_text()}"
            assert time.monotonic() < deadline, "the demo saved no done task in time"
            time.sleep(0.02)
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: to the demo and its workers
        status = demo.wait(timeout=WAIT)
    stopped = out.read_text()
    _assert_fits(stopped, path)
    assert status == 130, (stopped, err.read_text())
    assert "Traceback" not in err.read_text()
    saved = _records(path)
    assert list(saved) == [f"task-{i:05d}" for i in range(tasks)]
    done_first = sum(1 for record in saved.values() if record["_done"])
    assert 0 < done_first < tasks
    assert f"stopped: {done_first:,} tasks done and saved" in stopped
    assert all("result" in record for record in saved.values() if record["_done"])
    assert all(record["_tries"] <= 1 for record in saved.values())

    # again, until every task is done or given up on: a run tries failed tasks
    # again after their delay, up to 3 tries, so one more run is enough
    runs = []
    for _ in range(3):
        again = tastypy_cmd("demo", str(path), *options, timeout=60)
        assert again.returncode == 0, again.stderr
        assert "Traceback" not in again.stderr
        _assert_fits(again.stdout, path)
        runs.append(again.stdout)
        if all(r["_done"] or r["_tries"] >= 3 for r in _records(path).values()):
            break
    assert len(runs) == 1, runs
    lines = runs[0].splitlines()
    assert lines[0] == f"{path}: {done_first:,} of {tasks:,} tasks already done"
    this_run = next(m for m in map(_THIS_RUN.match, lines) if m)
    assert int(this_run[3].replace(",", "")) == done_first  # skipped: done before
    assert all("run it again" in run for run in runs[:-1])

    final = _records(path)
    assert len(final) == tasks
    assert all(record["_done"] or record["_tries"] >= 3 for record in final.values())
    last = runs[-1].splitlines()[-1]
    prefix = "look at the result: "
    assert last.startswith(prefix)
    command = shlex.split(last[len(prefix) :])
    assert command[-2:] == ["status", str(path)]
    shown = subprocess.run(
        command, capture_output=True, encoding="utf-8", timeout=60, check=False, env=_env()
    )
    assert shown.returncode == 0, shown.stderr
    done_final = sum(1 for record in final.values() if record["_done"])
    assert _rows(shown.stdout)["done"][0] == done_final
    assert _rows(shown.stdout)["exhausted"][0] == tasks - done_final


def test_demo_says_run_it_again_only_if_a_task_can_be_retried(tmp_path: Path) -> None:
    path = tmp_path / "demo.tracker"
    with tastypy.Tracker(path, max_tries=3) as tracker:
        tracker.add_many(f"task-{i:05d}" for i in range(5))
        for i in range(1, 5):
            tracker.mark_done(f"task-{i:05d}")
        for _ in range(3):
            tracker.try_it("task-00000")  # given up on: tried 3 times, not done
    before = _records(path)
    done = tastypy_cmd("demo", str(path), "--tasks", "5", "--workers", "1", timeout=60)
    assert done.returncode == 0, done.stderr
    assert _records(path) == before  # nothing was left to try
    lines = done.stdout.splitlines()
    assert lines[0] == f"{path}: 4 of 5 tasks already done"
    assert lines[1].startswith("this run: 0 done, 0 failed attempts, 4 skipped")
    assert lines[1].endswith(", 1 given up")
    assert lines[-1].endswith(f" status {shlex.quote(str(path))}")
    assert not any("run it again" in line for line in lines), done.stdout


def test_demo_bad_options(tmp_path: Path) -> None:
    zero = tastypy_cmd("demo", str(tmp_path / "d.tracker"), "--workers", "0")
    _assert_one_line_error(zero, "--workers")
    assert tastypy_cmd("demo", str(tmp_path / "d.tracker"), "--tasks", "x").returncode == 2
