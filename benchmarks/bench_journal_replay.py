"""Reopen time of a store whose journal holds N syncs, plain and gzipped.

Each sync changes one key (of 100), so the journal holds N small commits: the
case of a store reopened after a crash, or after closes that leave the journal
in place. Replay must be linear in N. Run: ``python benchmarks/bench_journal_replay.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import tastypy


def reopen_seconds(syncs: int, gzipped: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store"
        pod = tastypy.POD(path, gzipped=gzipped, durable=False)
        for i in range(syncs):
            pod[f"k{i % 100}"] = {"i": i, "text": "x" * 40}
            pod.sync()
        best = float("inf")
        for _ in range(3):  # read-only: the writer keeps the journal as it is
            start = time.perf_counter()
            reader = tastypy.POD(path, readonly=True)
            best = min(best, time.perf_counter() - start)
            reader.close()
        pod.close()
        return best


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [1000, 4000]
    print("| syncs in the journal | plain reopen (ms) | gzipped reopen (ms) |")
    print("|---|---|---|")
    for n in counts:
        plain, gz = reopen_seconds(n, False), reopen_seconds(n, True)
        print(f"| {n:,} | {plain * 1000:.1f} | {gz * 1000:.1f} |")


if __name__ == "__main__":
    main()
