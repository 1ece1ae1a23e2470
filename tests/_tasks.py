"""Picklable task functions for ``ProgressTracker.run()`` tests.

``run(fn)`` with ``workers > 1`` sends *fn* to worker processes, so these are
module-level functions; per-test state (a directory, a log file) is bound
with :func:`functools.partial`, which pickles by reference too. Every call is
appended to a file (one ``O_APPEND`` write, so lines from several processes
never mix), which lets a test count calls made in any process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

CALLS = "calls.log"


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append *line* durably: open, write, flush, fsync, close."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of *path* (none if it does not exist)."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def calls(directory: str | os.PathLike[str], key: str | None = None) -> int:
    """How many calls were made (of *key*, or of any task) with *directory*."""
    lines = read_lines(Path(directory) / CALLS)
    return len(lines) if key is None else lines.count(key)


def result_of(key: str) -> dict[str, Any]:
    """What a succeeding task returns for *key*."""
    return {"key": key, "upper": key.upper(), "n": [1, 2.5, None]}


def succeed(directory: str, key: str) -> dict[str, Any]:
    return result_of(key)


def always_fail(directory: str, key: str) -> None:
    raise ValueError(f"{key} failed on call {calls(directory, key)}")


def fail_once(directory: str, key: str) -> dict[str, Any]:
    """Fails on the first call for *key*, succeeds from then on (a marker file per key)."""
    marker = Path(directory) / f"{key}.failed-once"
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"{key}: first call fails")
    return result_of(key)


def return_set(directory: str, key: str) -> set[int]:
    return {1, 2, 3}


def crash(directory: str, key: str) -> None:
    """Kill the process running the task, as a segfault would."""
    os._exit(3)


BEHAVIOURS = {
    "ok": succeed,
    "fail": always_fail,
    "flaky": fail_once,
    "set": return_set,
    "crash": crash,
}


def by_prefix(directory: str, key: str) -> Any:
    """Log the call, then behave as the key's prefix says: ok-, fail-, flaky-, set-, crash-."""
    append_line(Path(directory) / CALLS, key)
    return BEHAVIOURS[key.split("-", 1)[0]](directory, key)


def say(line: str) -> None:
    """Print *line* in one ``write``: lines from several processes never mix.

    (``print`` may write the text and its newline separately.)
    """
    os.write(1, (line + "\n").encode())


def gated(log: str, gate: str, first_gated: int, key: str) -> dict[str, str]:
    """A task of a run that a test stops with a signal.

    Logs *key* (durably) and prints ``start KEY``; tasks numbered
    *first_gated* or more (``task-NNN``) then wait until the file *gate*
    exists, so the test can signal the run while they are in flight. Prints
    ``done KEY`` at the end. While waiting, a task answers the file
    ``GATE.ping`` appearing with one ``pong KEY`` line: proof that it is still
    running (and, in the process that handles signals, that no signal
    handler is running).
    """
    append_line(log, key)
    say(f"start {key}")
    if first_gated >= 0 and int(key.rsplit("-", 1)[1]) >= first_gated:
        ping, ponged = gate + ".ping", False
        deadline = time.monotonic() + 20.0
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key}: the gate {gate} never opened")
            if not ponged and os.path.exists(ping):
                say(f"pong {key}")
                ponged = True
            time.sleep(0.001)
    else:
        time.sleep(0.002)
    say(f"done {key}")
    return {"key": key}
