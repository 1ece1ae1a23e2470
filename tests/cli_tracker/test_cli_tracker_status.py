"""``tastypy status`` and ``tastypy list`` of a tracker at rest.

The command runs as a real subprocess (``python -m tastypy``): see _tracker_commands.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import tastypy

from _tracker_commands import (
    ERRORS,
    STATES,
    TRIED,
    WAIT,
    _assert_fits,
    _count_fields,
    _env,
    _files,
    _rows,
    tastypy_cmd,
)

# -- status ---------------------------------------------------------------------------------


def test_status_counts_and_errors(tracker_store: Path) -> None:
    before = _files(tracker_store)
    done = tastypy_cmd("status", str(tracker_store))
    assert done.returncode == 0, done.stderr
    screen = done.stdout
    _assert_fits(screen, tracker_store)
    rows = _rows(screen)
    expected = {
        "done": 4,
        "tried": TRIED,
        "failed": 3,
        "exhausted": 1,
        "aborted": 1,
        "untried": 3,
    }
    assert rows == {name: (n, f"{100 * n / 12:.2f}") for name, n in expected.items()}
    assert list(rows) == list(expected)  # in this order
    lines = screen.splitlines()
    name = str(tracker_store)
    assert lines[0] == (name if len(name) <= 80 else name[:79] + "…")
    bar = next(line for line in lines if "4/12" in line)
    assert bar.endswith(" 33.3% 4/12")
    assert "no job is writing to this store" in lines
    at = lines.index("most frequent recent errors:")
    errors = [line.split(None, 1) for line in lines[at + 1 :]]
    assert errors == [["3", "ValueError: boom"], ["1", "OSError: disk full"]]
    assert _files(tracker_store) == before


def test_status_shows_tasks_waiting_for_a_retry_and_when_the_next_is_due(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    with tastypy.Tracker(store, max_tries=3, retry_delay=3600, max_retry_delay=3600) as tracker:
        tracker.add_many(["a", "b", "c"])
        tracker.run(_fail, ["a", "b"], progress=False, wait_for_retries=False)
        tracker["b"]["_retry_at"] = time.time() + 600  # in ten minutes, give or take
        tracker["a"]["_retry_at"] = time.time() + 3000
    done = tastypy_cmd("status", str(store))
    assert done.returncode == 0, done.stderr
    assert re.search(r"^  2 waiting for a retry, the next due in (9|10) min$", done.stdout, re.M)
    frame = json.loads(tastypy_cmd("status", str(store), "--json").stdout)
    assert frame["waiting"] == 2 and 500 < frame["next_retry"] <= 600


def _fail(key: str) -> None:
    raise ConnectionError("503")


def test_status_json(tracker_store: Path) -> None:
    before = _files(tracker_store)
    done = tastypy_cmd("status", str(tracker_store), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1  # one frame, one line
    frame = json.loads(done.stdout)
    assert frame == {
        "total": 12,
        "done": 4,
        "tried": TRIED,
        "failed": 3,
        "exhausted": 1,
        "aborted": 1,
        "untried": 3,
        "waiting": 0,
        "next_retry": None,
        "errors": ERRORS,
        "rate": None,
        "eta_seconds": None,
        "writer": None,
        "writer_state": None,
        "processes": [],  # the live writers of a shared tracker
    }
    assert _files(tracker_store) == before


def test_status_of_an_empty_tracker(tmp_path: Path) -> None:
    path = tmp_path / "empty.tracker"
    tastypy.Tracker(path).close()
    frame = json.loads(tastypy_cmd("status", str(path), "--json").stdout)
    assert _count_fields(frame) == dict.fromkeys(_count_fields(frame), 0)
    screen = tastypy_cmd("status", str(path))
    assert screen.returncode == 0, screen.stderr
    assert list(_rows(screen.stdout).values()) == [(0, "0.00")] * 6
    # --watch has nothing to wait for
    watched = tastypy_cmd("status", str(path), "--watch", "--json", timeout=WAIT)
    assert watched.returncode == 0
    assert len(watched.stdout.splitlines()) == 1


def test_status_fits_80_columns_with_long_errors_and_many_tasks(tmp_path: Path) -> None:
    path = tmp_path / "big.tracker"
    with tastypy.Tracker(path, max_tries=5) as tracker:
        tracker.add_many(f"t{i}" for i in range(20_000))
        for i in range(1_234):
            tracker.mark_done(f"t{i}")
        tracker.try_it("t19999")
        tracker["t19999"]["_errors"] = [
            {"type": "RuntimeError", "message": "a long message " * 20, "traceback": "", "at": ""}
        ]
    done = tastypy_cmd("status", str(path))
    assert done.returncode == 0, done.stderr
    _assert_fits(done.stdout, path)
    assert _rows(done.stdout)["done"] == (1_234, "6.17")
    untried = 20_000 - 1_234 - 1
    assert _rows(done.stdout)["untried"] == (untried, f"{100 * untried / 20_000:.2f}")
    assert "1,234/20,000" in done.stdout
    error = next(line for line in done.stdout.splitlines() if "RuntimeError" in line)
    assert len(error) == 80
    assert error.endswith("…")


def _on_a_terminal(args: list[str], **env: str) -> str:
    """Run ``tastypy ARGS`` with its stdout on an 80-column pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    output = b""
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "tastypy", *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=_env(**env),
        ) as proc:
            os.close(slave)
            slave = -1
            deadline = time.monotonic() + WAIT
            while True:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no end of output in {WAIT}s: {output!r}"
                ready, _, _ = select.select([master], [], [], remaining)
                if not ready:
                    continue
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            assert proc.wait(timeout=WAIT) == 0
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return output.decode().replace("\r\n", "\n")


def test_colour_only_on_a_terminal_without_no_color(tracker_store: Path) -> None:
    coloured = _on_a_terminal(["status", str(tracker_store)])
    assert "\x1b[" in coloured  # the check below would notice escapes
    plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    _assert_fits(plain, tracker_store)
    assert _rows(plain)["done"] == (4, "33.33")
    no_color = _on_a_terminal(["status", str(tracker_store)], NO_COLOR="1")
    _assert_fits(no_color, tracker_store)
    assert no_color == plain
    piped = tastypy_cmd("status", str(tracker_store))
    assert piped.stdout == plain


def test_status_and_list_file_every_task_under_one_state(tmp_path: Path) -> None:
    """The status counts agree with ``list``, also for tasks with several flags."""
    path = tmp_path / "flags.tracker"
    with tastypy.Tracker(path, max_tries=1) as tracker:
        tracker.add_many(["done-aborted", "exhausted-aborted", "exhausted", "untried"])
        for key in ("done-aborted", "exhausted-aborted", "exhausted"):
            tracker.try_it(key)
        tracker.mark_done("done-aborted")
        tracker.abort("done-aborted")
        tracker.abort("exhausted-aborted")
    frame = json.loads(tastypy_cmd("status", str(path), "--json").stdout)
    listed = {
        state: json.loads(tastypy_cmd("list", str(path), "--state", state, "--json").stdout)
        for state in ("done", "failed", "exhausted", "aborted", "untried")
    }
    assert {state: len(keys) for state, keys in listed.items()} == {
        state: frame[state] for state in listed
    }, (listed, frame)
    assert sum(frame[state] for state in listed) == frame["total"]


# -- list -------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", sorted(STATES))
def test_list_each_state_in_order(tracker_store: Path, state: str) -> None:
    before = _files(tracker_store)
    done = tastypy_cmd("list", str(tracker_store), "--state", state)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == STATES[state]
    _assert_fits(done.stdout)
    as_json = tastypy_cmd("list", str(tracker_store), "--state", state, "--json")
    assert json.loads(as_json.stdout) == STATES[state]
    limited = tastypy_cmd("list", str(tracker_store), "--state", state, "--limit", "2")
    assert limited.stdout.splitlines() == STATES[state][:2]
    limited_json = tastypy_cmd(
        "list", str(tracker_store), "--state", state, "--limit", "1", "--json"
    )
    assert json.loads(limited_json.stdout) == STATES[state][:1]
    assert _files(tracker_store) == before


def test_list_counts_match_status(tracker_store: Path) -> None:
    frame = json.loads(tastypy_cmd("status", str(tracker_store), "--json").stdout)
    for state in ("done", "failed", "exhausted", "aborted", "untried"):
        listed = tastypy_cmd("list", str(tracker_store), "--state", state, "--json")
        assert len(json.loads(listed.stdout)) == frame[state], state


def test_list_bad_options(tracker_store: Path) -> None:
    assert tastypy_cmd("list", str(tracker_store)).returncode == 2  # --state is required
    assert tastypy_cmd("list", str(tracker_store), "--state", "lost").returncode == 2
    negative = tastypy_cmd("list", str(tracker_store), "--state", "done", "--limit", "-1")
    assert negative.returncode == 2
    assert "Traceback" not in negative.stderr
    zero = tastypy_cmd("list", str(tracker_store), "--state", "done", "--limit", "0")
    assert zero.returncode == 0
    assert zero.stdout == ""
