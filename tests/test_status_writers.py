"""``tastypy status`` tells the truth about writers.

"A job is writing" is decided by the OS lock itself, never by the pid the
lock file names: a copied store, or a lock file naming a live process that
does not hold the store, shows no job. A stopped writer shows as stopped.
Writers are real child processes; tests wait on their output, never on sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tastypy

from _subproc import Child

WAIT = 60.0

HOLD = """
import sys
import time
import tastypy

tracker = tastypy.Tracker(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
tracker.close()
print("closed", flush=True)
"""


def _status(path: Path, *extra: str, prefix: tuple[str, ...] = ()) -> str:
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "tastypy", "status", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def _frame(path: Path, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(_status(path, "--json", prefix=prefix))
    return frame


@pytest.fixture
def tracker_store(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.tracker"
    with tastypy.Tracker(path) as tracker:
        tracker.add_many(f"task-{i}" for i in range(5))
        tracker.mark_done("task-0")
    return path


def test_a_copy_of_a_held_store_has_no_writer(tracker_store: Path, tmp_path: Path) -> None:
    with Child(HOLD, str(tracker_store)) as writer:
        writer.expect("ready")
        copy = tmp_path / "copy.tracker"
        shutil.copytree(tracker_store, copy)
        assert json.loads((copy / "lock").read_text())["pid"] == writer.pid
        assert _frame(tracker_store)["writer"] == writer.pid
        frame = _frame(copy)
        assert (frame["writer"], frame["writer_state"]) == (None, None)
        assert "no job is writing to this store" in _status(copy)
        writer.send()
        writer.expect("closed")
        assert writer.finish() == 0


@pytest.mark.parametrize("who", ["this process", "init"])
def test_a_lock_file_naming_a_live_process_is_not_a_writer(tracker_store: Path, who: str) -> None:
    pid = os.getpid() if who == "this process" else 1
    (tracker_store / "lock").write_text(json.dumps({"pid": pid, "host": "here", "argv": ["x"]}))
    os.kill(pid, 0)  # it lives
    assert _frame(tracker_store)["writer"] is None
    screen = _status(tracker_store)
    assert "job running" not in screen
    assert "no job is writing to this store" in screen


def test_a_killed_writer_is_no_writer(tracker_store: Path) -> None:
    with Child(HOLD, str(tracker_store)) as writer:
        writer.expect("ready")
        writer.signal(signal.SIGKILL)
        writer.proc.wait(timeout=WAIT)
        assert json.loads((tracker_store / "lock").read_text())["pid"] == writer.pid
        assert _frame(tracker_store)["writer"] is None


def test_a_stopped_writer_shows_as_stopped(tracker_store: Path) -> None:
    with Child(HOLD, str(tracker_store)) as writer:
        writer.expect("ready")
        writer.signal(signal.SIGSTOP)
        try:
            _wait_for_state(writer.pid, "T")
            frame = _frame(tracker_store)
            assert (frame["writer"], frame["writer_state"]) == (writer.pid, "stopped")
            assert (frame["rate"], frame["eta_seconds"]) == (None, None)
            screen = _status(tracker_store)
            assert f"job stopped (pid {writer.pid})" in screen
            assert f"kill -CONT {writer.pid}" in screen
            assert "job running" not in screen
        finally:
            writer.signal(signal.SIGCONT)
        frame = _frame(tracker_store)
        assert (frame["writer"], frame["writer_state"]) == (writer.pid, "running")
        assert f"job running (pid {writer.pid})" in _status(tracker_store)
        writer.send()
        writer.expect("closed")
        assert writer.finish() == 0


def _wait_for_state(pid: int, state: str) -> None:
    """Return once /proc says process *pid* is in *state* (SIGSTOP is asynchronous)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        pytest.skip("needs /proc to see a process's state")
    deadline = time.monotonic() + WAIT
    while stat.read_text().rsplit(")", 1)[1].split()[0] != state:
        assert time.monotonic() < deadline, f"process {pid} never reached {state}"
        os.sched_yield()


def _without_proc_locks() -> tuple[str, ...]:
    """A prefix running a command where ``/proc`` is hidden (so no ``/proc/locks``)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to hide /proc in a private mount namespace")
    prefix = (
        unshare,
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount -t tmpfs none /proc && exec "$@"',
        "sh",
    )
    probe = subprocess.run(
        [*prefix, "test", "!", "-e", "/proc/locks"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot hide /proc here: {probe.stderr.decode().strip()}")
    return prefix


def test_without_proc_locks_the_lock_itself_is_asked(tracker_store: Path, tmp_path: Path) -> None:
    hidden = _without_proc_locks()
    with Child(HOLD, str(tracker_store)) as writer:
        writer.expect("ready")
        copy = tmp_path / "copy.tracker"
        shutil.copytree(tracker_store, copy)
        assert _frame(tracker_store, hidden)["writer"] == writer.pid
        assert _frame(copy, hidden)["writer"] is None
        writer.send()
        writer.expect("closed")
        assert writer.finish() == 0
    (tracker_store / "lock").write_text(json.dumps({"pid": 1}))
    assert _frame(tracker_store, hidden)["writer"] is None
    # The peek took nothing: a writer opens the store at once afterwards.
    tastypy.Tracker(tracker_store).close()
