"""``tastypy demo``: a resumable crawl. Stop it (Ctrl-C) at any moment; run it again.

A few thousand simulated page fetches run with :meth:`ProgressTracker.run`
on an asyncio event loop, a few hundred in flight at once, with a progress
bar. Each fetch waits on a simulated network: most answer within a few
hundred milliseconds, some fail (a 503, a reset connection) and are tried
again after a short random delay, and a few hang until the time limit
fails them. Results and failures are kept in a tracker store (default
``./demo.tracker``); run it again and it skips what is done.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import shlex
import shutil
import sys
import time

from ..tracker._tracker import Tracker
from ._store_commands import plural

_FAILURES = ("connection reset by peer", "HTTP 503 from upstream", "HTTP 429 too many requests")
TIMEOUT = 2.0  # seconds a fetch may take
MAX_TRIES = 3


async def simulated_fetch(name: str) -> dict[str, str]:
    """Stands in for real I/O-bound work: a download, a call to an API."""
    rng = random.Random(f"{name}-{time.time_ns()}")
    roll = rng.random()
    if roll < 0.01:
        await asyncio.sleep(60)  # a server that never answers: the time limit fails it
    await asyncio.sleep(rng.uniform(0.02, 0.3))
    if roll > 0.92:
        raise ConnectionError(rng.choice(_FAILURES))
    return {"digest": hashlib.sha256(name.encode()).hexdigest()[:16]}


def _command() -> str:
    """How to call the tastypy command the way this process was called."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else "tastypy"
    if program.endswith("__main__.py"):
        return f"{shlex.quote(sys.executable)} -m tastypy"
    if os.sep in program and shutil.which(os.path.basename(program)) != program:
        return shlex.quote(os.path.relpath(program))  # not on PATH, e.g. .venv/bin/tastypy
    return os.path.basename(program)


def run_demo(path: str, tasks: int, workers: int) -> int:
    """The demo job; returns the exit status."""
    # Each failed try is a warning of run()'s logger: the demo shows only give-ups.
    logging.getLogger("tastypy.tracker.run").setLevel(logging.ERROR)
    names = [f"task-{i:05d}" for i in range(tasks)]
    # sync_at=100: `tastypy status --watch` sees progress every 100 tasks.
    # A failed fetch is tried again after a random wait of up to 0.5 s, then
    # up to 1 s (backoff 2), within this run: up to 3 tries in all.
    with Tracker(
        path, sync_at=100, max_tries=MAX_TRIES, retry_delay=0.5, max_retry_delay=2.0
    ) as tracker:
        print(f"{path}: {tracker.num_done():,} of {len(names):,} tasks already done")
        try:
            summary = tracker.run(simulated_fetch, names, workers=workers, timeout=TIMEOUT)
        except KeyboardInterrupt:
            print(
                f"\nstopped: {tracker.num_done():,} tasks done and saved; run it again to resume"
            )
            return 130
        print(
            f"this run: {summary.done:,} done, {summary.failed:,} failed attempts, "
            f"{summary.skipped:,} skipped (done before), {summary.exhausted:,} given up"
        )
        if summary.timed_out:
            print(f"  ({summary.timed_out:,} of the attempts ran over the {TIMEOUT:g} s limit)")
        print(
            f"in all: {tracker.percent_done()} done ({tracker.num_done():,} of {len(tracker):,})"
        )
        retryable = sum(1 for name in names if tracker.should_do(name))
        if retryable:
            print(f"run it again to retry the {retryable:,} failed tasks")
        elif tracker.num_done() < len(tracker):
            given_up = plural(len(tracker) - tracker.num_done(), "task")
            print(f"{given_up} given up after {MAX_TRIES} tries")
    print(f"look at the result: {_command()} status {shlex.quote(path)}")
    return 0
