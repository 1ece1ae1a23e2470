"""Helpers for tests that run tastypy in child processes.

Children are ``python -c CODE STORE_PATH``: the store path is ``sys.argv[1]``.
Every wait has a timeout, and handshakes go through the child's stdout
(``print("ready", flush=True)``), so no test sleeps to synchronize.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import tastypy

WAIT = 20.0  # seconds; generous, only reached if something hangs


def read_store(path: Path) -> list[tuple[str, Any]]:
    """The store's synced contents, in order, read without taking the lock."""
    with tastypy.POD(path, readonly=True) as pod:
        return list(pod.items())


def run(code: str, *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    """Run *code* to the end in a child; returns its status and output."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


TRY_IN_OTHER_PROCESS = """
import sys, tastypy
with tastypy.Tracker(sys.argv[1], shared=True, max_tries=int(sys.argv[2])) as b:
    print(b.try_it(sys.argv[3]), b.tries(sys.argv[3]) if sys.argv[3] in b else None)
"""


def try_elsewhere(store: Path, key: str, max_tries: int = 0) -> str:
    """``try_it(key)`` on the shared tracker at *store*, in a fresh process: "True 1", say."""
    done = run(TRY_IN_OTHER_PROCESS, str(store), str(max_tries), key)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Child:
    """A running child with line-based handshakes on stdin/stdout.

    Use as a context manager: leaving the block kills the child if it still
    runs and closes its pipes.
    """

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        self._buf = b""
        self._finished = False
        self.stdout = ""
        self.stderr = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readline(self, timeout: float = WAIT) -> str:
        """The child's next line of output (without the newline)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"child printed no full line in {timeout}s: {self._buf!r}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                self.proc.kill()
                _, err = self.proc.communicate(timeout=WAIT)
                self._finished = True
                raise AssertionError(
                    f"child ended (status {self.proc.returncode}) before printing a line; "
                    f"output so far {self._buf!r}; stderr:\n{err.decode(errors='replace')}"
                )
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def expect(self, wanted: str, timeout: float = WAIT) -> None:
        line = self.readline(timeout)
        assert line == wanted, f"child printed {line!r}, expected {wanted!r}"

    def send(self, line: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    def signal(self, signum: int) -> None:
        assert self.proc.poll() is None, "child already ended"
        os.kill(self.proc.pid, signum)

    def finish(self, timeout: float = WAIT) -> int:
        """Close the child's stdin, wait for it to end; returns its status.

        The rest of its output lands in :attr:`stdout` and :attr:`stderr`.
        """
        out, err = self.proc.communicate(timeout=timeout)
        self._finished = True
        self.stdout = (self._buf + out).decode(errors="replace")
        self._buf = b""
        self.stderr = err.decode(errors="replace")
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._finished:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=WAIT)
