"""A resumable job: stop it (Ctrl-C) at any moment, run it again, it resumes.

Usage: python examples/demo.py [PATH] [--tasks N] [--workers W]

A few thousand simulated tasks (some slow, some failing at random) run with
tastypy.Tracker.run() on a pool of worker processes, with a progress bar.
Results and failures are kept in a tracker store at PATH (default:
./demo.tracker). Run it again and it skips what is done and retries what
failed, up to 3 tries per task. (The `tastypy demo` command will replace this
script.)
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import sys
import time

import tastypy


def simulated_task(name: str) -> dict[str, str]:
    """Stands in for real work: a download, a computation, a call to a service."""
    rng = random.Random(f"{name}-{time.time_ns()}")
    time.sleep(0.002 if rng.random() > 0.05 else 0.05)  # a few are slow
    if rng.random() < 0.08:
        raise ConnectionError(f"simulated network error while fetching {name}")
    return {"digest": hashlib.sha256(name.encode()).hexdigest()[:16]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("path", nargs="?", default="demo.tracker")
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")

    names = [f"task-{i:05d}" for i in range(args.tasks)]
    with tastypy.Tracker(args.path, max_tries=3) as tracker:
        print(f"{args.path}: {tracker.num_done()} of {len(names)} tasks already done")
        try:
            summary = tracker.run(simulated_task, names, workers=args.workers)
        except KeyboardInterrupt:
            print(f"\nstopped: {tracker.num_done()} tasks done and saved; run me again to resume")
            return 130
        print(
            f"this run: {summary.done} done, {summary.failed} failed attempts, "
            f"{summary.skipped} skipped (done before), {summary.exhausted} given up"
        )
        print(f"in all: {tracker.percent_done()} done ({tracker.num_done()} of {len(tracker)})")
        if tracker.num_done() < len(tracker):
            print("run it again to retry the failed tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
