"""Workloads whose instruction count compares two versions of tastypy exactly.

Wall-clock benchmarks vary by tens of percent on a shared machine; the
number of instructions a workload executes does not. Run one under
callgrind, for each version (``PYTHONPATH=<checkout>/src``), and compare
the "Collected" line:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/instructions.py seed 20000

Workloads: ``import`` (just ``import tastypy``), ``seed N`` (the tracker's
seed loop of the original docs over N tasks, as bench_tracker.py), ``insert
N`` (N tracker-like values into a new POD, then close) and ``read N`` (build
such a store first, unmeasured only in the sense that it is the same for
both versions, then reopen it read-only and read every value).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import tastypy


def seed(directory: Path, n: int) -> None:
    with tastypy.Tracker(directory / "t") as tracker:
        for i in range(n):
            name = f"task-{i}"
            if not tracker.try_it(name):
                continue
            tracker.mark_done(name)
            tracker[name]["result"] = name


def insert(directory: Path, n: int) -> None:
    with tastypy.POD(directory / "p", durable=False) as pod:
        for i in range(n):
            pod[f"k{i}"] = {"_done": False, "_tries": i % 3, "result": f"r{i}"}


def read(directory: Path, n: int) -> None:
    insert(directory, n)
    with tastypy.POD(directory / "p", readonly=True) as pod:
        sum(len(value) for value in pod.values())


def main() -> None:
    workload = sys.argv[1] if len(sys.argv) > 1 else "import"
    if workload == "import":
        return
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        {"seed": seed, "insert": insert, "read": read}[workload](Path(tmp), n)


if __name__ == "__main__":
    main()
