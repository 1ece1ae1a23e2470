"""Picklable task functions for ``ProgressTracker.run()`` tests.

``run(fn)`` with ``workers > 1`` sends *fn* to worker processes, so these are
module-level functions; per-test state (a directory, a log file) is bound
with :func:`functools.partial`, which pickles by reference too. Every call is
appended to a file (one ``O_APPEND`` write, so lines from several processes
never mix), which lets a test count calls made in any process.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time
from collections.abc import Callable
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


class HTTPError(Exception):
    """An exception pickle can write but not read back: its ``__init__`` takes two arguments."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}")
        self.status, self.url = status, url


def raise_http_error(directory: str, key: str) -> None:
    raise HTTPError(503, f"https://example.invalid/{key}")


class BadStrError(Exception):
    """An exception whose ``str()`` raises (and whose pickling fails too)."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("no pickle either")


def raise_bad_str(directory: str, key: str) -> None:
    raise BadStrError


class WorseStrError(Exception):
    """An exception whose ``__str__`` raises a BaseException, not an Exception."""

    def __str__(self) -> str:
        raise SystemExit("not from str")


def raise_worse_str(directory: str, key: str) -> None:
    raise WorseStrError


def terminate_self(directory: str, key: str) -> None:
    """SIGTERM to the process running the task: a worker must die of it."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # a worker that ignored it would go on to return


def exit_with_status(directory: str, key: str) -> None:
    sys.exit(3)


def exit_plain(directory: str, key: str) -> None:
    sys.exit()


def raise_interrupt(directory: str, key: str) -> None:
    raise KeyboardInterrupt(f"{key} interrupts itself")


def return_lambda(directory: str, key: str) -> Callable[[], None]:
    return lambda: None


def _refuse_to_load() -> None:
    raise RuntimeError("this object cannot be unpickled")


class UnloadableStr(str):
    """A ``str`` that pickles but cannot be unpickled (JSON writes it as its text)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


def return_unloadable_str(directory: str, key: str) -> str:
    return UnloadableStr(f"text of {key}")


def segfault(directory: str, key: str) -> None:
    """Die of SIGSEGV, as a crash in a C extension would."""
    faulthandler.disable()  # pytest's, inherited: its dump of every thread is noise here
    os.kill(os.getpid(), signal.SIGSEGV)


def pool_size(directory: str, key: str) -> int:
    """How many processes share this one's parent and command line: the pool's workers."""
    parent, mine = os.getppid(), Path("/proc/self/cmdline").read_bytes()
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            same = ppid == parent and (entry / "cmdline").read_bytes() == mine
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        count += same
    return count


BEHAVIOURS = {
    "ok": succeed,
    "fail": always_fail,
    "flaky": fail_once,
    "set": return_set,
    "crash": crash,
    "http": raise_http_error,
    "badstr": raise_bad_str,
    "worsestr": raise_worse_str,
    "term": terminate_self,
    "exit": exit_with_status,
    "bareexit": exit_plain,
    "interrupt": raise_interrupt,
    "lambda": return_lambda,
    "unloadable": return_unloadable_str,
    "segv": segfault,
    "poolsize": pool_size,
}


class UnloadableTask:
    """A task function that pickles but cannot be unpickled in a worker process."""

    def __call__(self, key: str) -> dict[str, Any]:
        return result_of(key)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


def by_prefix(directory: str, key: str) -> Any:
    """Log the call, then behave as the key's prefix (before the first ``-``) says."""
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


def interrupt_or_gated(log: str, gate: str, first_gated: int, key: str) -> dict[str, str]:
    """:func:`gated`, except that ``task-005`` raises ``KeyboardInterrupt`` itself."""
    if key == "task-005":
        append_line(log, key)
        raise KeyboardInterrupt(f"{key} interrupts itself")
    return gated(log, gate, first_gated, key)


def stuck_or_quick(directory: str, key: str) -> str:
    """Log the call; a key starting ``stuck`` hangs for a minute, any other takes 0.3 s."""
    append_line(Path(directory) / CALLS, key)
    time.sleep(60 if key.startswith("stuck") else 0.3)
    return key


def fail_twice(directory: str, key: str) -> str:
    """Log the call; fail the first two calls of *key*, succeed from the third on."""
    append_line(Path(directory) / CALLS, key)
    if calls(directory, key) <= 2:
        raise ConnectionError(f"{key}: 503 on call {calls(directory, key)}")
    return key


async def fail_twice_async(directory: str, key: str) -> str:
    return fail_twice(directory, key)


def sleep_logged(directory: str, key: str) -> str:
    """Sleep 0.3 s, logging when the call began and ended (to measure concurrency)."""
    began = time.time()
    time.sleep(0.3)
    append_line(Path(directory) / CALLS, f"{key} {began} {time.time()}")
    return key


def die_or_quick(directory: str, key: str) -> str:
    """A key starting ``die`` kills its worker process after 0.3 s; others take 0.1 s."""
    if key.startswith("die"):
        time.sleep(0.3)
        os._exit(3)
    time.sleep(0.1)
    return key
