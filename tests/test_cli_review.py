"""Regressions from a hostile review of the ``tastypy`` command line.

Each test reproduces one finding through ``tastypy.cli.main([...])`` or a
real ``python -m tastypy`` subprocess, and asserts what the command must do
instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy.cli import main

from _subproc import Child

WAIT = 30.0


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def tastypy_cmd(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tastypy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,
    )


def _mk(path: Path, n: int = 300, file_size: int = 100) -> Path:
    """The review's store: *n* records ``k{i}: {"v": i}``, *file_size* per data file."""
    with tastypy.POD(path, file_size=file_size) as pod:
        for i in range(n):
            pod[f"k{i}"] = {"v": i}
    return path


def _items(path: Path) -> dict[str, Any]:
    with tastypy.POD(path, readonly=True) as pod:
        return dict(pod.items())


# -- 1. reset decides which tasks to reset once it holds the store ---------------------


def test_reset_failed_with_timeout_leaves_tasks_finished_while_it_waited(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.tracker"
    with tastypy.Tracker(path) as tracker:
        tracker.add_many(f"t{i}" for i in range(10))
    job = """
        import sys, tastypy
        t = tastypy.Tracker(sys.argv[1])
        for i in range(5):
            t.try_it(f"t{i}")
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(5):
            t.mark_done(f"t{i}")
            t[f"t{i}"]["result"] = i
        t.close()
        print("closed", flush=True)
    """
    with Child(job, str(path)) as child:
        child.expect("ready")
        reset = subprocess.Popen(
            [sys.executable, "-m", "tastypy", "reset", str(path), "--failed", "--timeout", "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Give the reset the time to read the store and start waiting for the
        # lock (the bug picked its tasks then); the assertions do not depend on it.
        time.sleep(1.5)
        child.send("go")
        child.expect("closed")
        out, err = reset.communicate(timeout=WAIT)
    assert reset.returncode == 0, err
    assert "reset 0 tasks" in out
    with tastypy.Tracker(path, readonly=True) as tracker:
        assert [tracker.check(f"t{i}") for i in range(5)] == [True] * 5
        assert [tracker[f"t{i}"]["result"] for i in range(5)] == list(range(5))


def test_reset_counts_a_key_given_twice_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.tracker"
    with tastypy.Tracker(path) as tracker:
        tracker.add_many(["a", "b"])
    status, out, _ = _cli(capsys, "reset", str(path), "a", "a")
    assert status == 0
    assert "reset 1 task" in out and "tasks" not in out
