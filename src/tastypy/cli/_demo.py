"""``tastypy demo``: a resumable job. Stop it (Ctrl-C) at any moment; run it again.

A few thousand simulated tasks (some slow, some failing at random) run with
:meth:`ProgressTracker.run` on a pool of worker processes, with a progress
bar. Results and failures are kept in a tracker store (default
``./demo.tracker``). Run it again and it skips what is done and retries what
failed, up to 3 tries per task.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shlex
import shutil
import sys
import time

from ..tracker._tracker import Tracker

_FAILURES = ("connection reset by peer", "timed out after 30 s", "HTTP 503 from upstream")


def simulated_task(name: str) -> dict[str, str]:
    """Stands in for real work: a download, a computation, a call to a service."""
    rng = random.Random(f"{name}-{time.time_ns()}")
    time.sleep(0.002 if rng.random() > 0.05 else 0.05)  # a few are slow
    if rng.random() < 0.08:
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
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
    names = [f"task-{i:05d}" for i in range(tasks)]
    # sync_at=100: `tastypy status --watch` sees progress every 100 tasks.
    with Tracker(path, sync_at=100, max_tries=3) as tracker:
        print(f"{path}: {tracker.num_done():,} of {len(names):,} tasks already done")
        try:
            summary = tracker.run(simulated_task, names, workers=workers)
        except KeyboardInterrupt:
            print(
                f"\nstopped: {tracker.num_done():,} tasks done and saved; run it again to resume"
            )
            return 130
        print(
            f"this run: {summary.done:,} done, {summary.failed:,} failed attempts, "
            f"{summary.skipped:,} skipped (done before), {summary.exhausted:,} given up"
        )
        print(
            f"in all: {tracker.percent_done()} done ({tracker.num_done():,} of {len(tracker):,})"
        )
        retryable = sum(1 for name in names if tracker.should_do(name))
        if retryable:
            print(f"run it again to retry the {retryable:,} failed tasks")
        elif tracker.num_done() < len(tracker):
            print(f"{len(tracker) - tracker.num_done():,} tasks were given up after 3 tries")
    print(f"look at the result: {_command()} status {shlex.quote(path)}")
    return 0
