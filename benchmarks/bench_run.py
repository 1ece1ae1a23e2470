"""run() for I/O-bound tasks: threads and asyncio against the same loops written by hand.

Usage:  .venv/bin/python benchmarks/bench_run.py [--tasks 2000] [--sleep 0.05] [--repeat 3]

N tasks, each sleeping S seconds (a network wait), on a fresh tracker:

- ``run(fn, executor="threads", workers=100)`` against a hand-written
  ``ThreadPoolExecutor(100)``: the main thread calls ``try_it`` for each
  task, submits it, and as each finishes stores its result and marks it
  done (the same tracker calls ``run()`` makes);
- ``run(async_fn, workers=500)`` against ``asyncio.gather`` over the tasks
  with an ``asyncio.Semaphore(500)``, with the same tracker calls in the
  event loop's thread.

Targets (issue "run() for real workloads"): each ``run()`` within 1.2x of
its hand-written loop, and within 1.5x of the ideal wall time N * S /
workers. The best of --repeat runs is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tastypy

SLEEP = 0.05


def fetch(key: str) -> str:
    time.sleep(SLEEP)
    return key


async def afetch(key: str) -> str:
    await asyncio.sleep(SLEEP)
    return key


def run_threads(tracker: tastypy.Tracker, keys: list[str]) -> None:
    tracker.run(fetch, keys, executor="threads", workers=100, progress=False)


def hand_threads(tracker: tastypy.Tracker, keys: list[str]) -> None:
    tracker.add_many_if_absent(keys)
    with cf.ThreadPoolExecutor(100) as pool:
        running = {pool.submit(fetch, key): key for key in keys if tracker.try_it(key)}
        for future in cf.as_completed(running):
            key = running[future]
            tracker[key]["result"] = future.result()
            tracker.mark_done(key)
    tracker.sync()


def run_async(tracker: tastypy.Tracker, keys: list[str]) -> None:
    tracker.run(afetch, keys, workers=500, progress=False)


def hand_async(tracker: tastypy.Tracker, keys: list[str]) -> None:
    tracker.add_many_if_absent(keys)

    async def main() -> None:
        gate = asyncio.Semaphore(500)

        async def one(key: str) -> None:
            async with gate:
                result = await afetch(key)
            tracker[key]["result"] = result
            tracker.mark_done(key)

        await asyncio.gather(*(one(key) for key in keys if tracker.try_it(key)))

    asyncio.run(main())
    tracker.sync()


def best(
    loop: Callable[[tastypy.Tracker, list[str]], None], keys: list[str], repeat: int
) -> float:
    times = []
    for _ in range(repeat):
        where = Path(tempfile.mkdtemp(prefix="bench-run-"))
        try:
            with tastypy.Tracker(where / "store", max_tries=3) as tracker:
                start = time.perf_counter()
                loop(tracker, keys)
                times.append(time.perf_counter() - start)
                assert tracker.num_done() == len(keys), loop.__name__
        finally:
            shutil.rmtree(where)
    return min(times)


def main() -> None:
    global SLEEP
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--sleep", type=float, default=SLEEP)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    SLEEP = args.sleep
    keys = [f"https://example.com/page/{i}" for i in range(args.tasks)]
    print(f"# machine: {platform.platform()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    print(f"| {args.tasks:,} tasks sleeping {SLEEP * 1000:.0f} ms | seconds | vs hand-written "
          "| vs ideal | target |")  # fmt: skip
    print("|---|---|---|---|---|")
    for label, workers, ours, theirs in (
        ("threads, workers=100", 100, run_threads, hand_threads),
        ("asyncio, workers=500", 500, run_async, hand_async),
    ):
        ideal = args.tasks * SLEEP / workers
        peer = best(theirs, keys, args.repeat)
        mine = best(ours, keys, args.repeat)
        print(f"| hand-written, {label} | {peer:.2f} | | {peer / ideal:.2f}x | |")
        print(f"| tastypy run(), {label} | {mine:.2f} | {mine / peer:.2f}x | {mine / ideal:.2f}x "
              "| <= 1.2x, <= 1.5x |")  # fmt: skip


if __name__ == "__main__":
    main()
