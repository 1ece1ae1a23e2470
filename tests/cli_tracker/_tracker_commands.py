"""Running the tracker commands of ``tastypy`` in tests, and reading what they leave.

Each command runs as a real subprocess (``python -m tastypy``). Writers that a
command must cope with run in child processes too; every wait has a deadline,
and tests synchronise on a child's output or on the store (read-only), never
on sleeps alone. ``tracker_store`` (conftest.py) is a tracker with tasks in
every state: :data:`STATES`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import tastypy

from _subproc import Child

WAIT = 30.0  # seconds; generous, only reached if something hangs

STATES = {
    "done": ["task-00", "task-01", "task-02", "task-03"],
    "failed": ["task-04", "task-05", "task-06"],
    "exhausted": ["task-07"],
    "aborted": ["task-08"],
    "untried": ["task-09", "task-10", "task-11"],
}
STATES["todo"] = STATES["failed"] + STATES["untried"]
KEYS = [f"task-{i:02d}" for i in range(12)]
TRIED = 7  # task-00..02 and task-04..07
ERRORS = [["ValueError: boom", 3], ["OSError: disk full", 1]]


# -- running the command ------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    """The environment, without the settings that change the command's looks."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(extra)
    return env


def tastypy_cmd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tastypy", *args],
        capture_output=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
        env=_env(),
    )


class Command(Child):
    """``python -m tastypy ARGS`` running; read its output line by line (see Child)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tastypy", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env=_env(),
        )
        self._buf = b""
        self._finished = False
        self.stdout = ""
        self.stderr = ""


def _files(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _records(path: Path) -> dict[str, Any]:
    with tastypy.Tracker(path, readonly=True) as tracker:
        return dict(tracker.items())


def _items(path: Path) -> list[tuple[str, Any]]:
    with tastypy.POD(path, readonly=True) as pod:
        return list(pod.items())


def _exact(items: list[tuple[str, Any]]) -> str:
    """*items* as JSON text: tells 1 from 1.0 and True from 1, which == does not."""
    return json.dumps(items, ensure_ascii=False)


def _assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("tastypy: error: "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def _assert_fits(text: str, path: Path | None = None) -> None:
    """At most 80 columns (but for lines with the user's path), and no colour."""
    assert "\x1b" not in text
    for line in text.splitlines():
        if path is None or str(path) not in line:
            assert len(line) <= 80, line


_ROW = re.compile(r"^  (\w+) +([\d,]+) +([\d.]+) %$")


def _rows(screen: str) -> dict[str, tuple[int, str]]:
    """The status screen's count rows: name -> (count, percentage as printed)."""
    rows = {}
    for line in screen.splitlines():
        match = _ROW.match(line)
        if match:
            rows[match[1]] = (int(match[2].replace(",", "")), match[3])
    return rows


def _count_fields(frame: dict[str, Any]) -> dict[str, int]:
    names = ("total", "done", "tried", "failed", "exhausted", "aborted", "untried")
    return {name: frame[name] for name in names}


# -- the store in every state (see tracker_store in conftest.py) --------------------------


def _work(key: str) -> str:
    if key == "task-06":
        raise OSError("disk full")
    if key in ("task-04", "task-05", "task-07"):
        raise ValueError("boom")
    return key.upper()
