"""Several processes on one shared tracker: scaling, and the cost of coordination.

Usage:  .venv/bin/python benchmarks/bench_fleet.py [--processes 4] [--tasks 4000]
        [--noop-tasks 20000]

- **Scaling.** P processes run the seed loop (``try_it``, work, ``mark_done``)
  on one ``Tracker(path, shared=True)`` over the same task list, each task
  sleeping 5 ms; the time is compared with one process doing it all.
  Target: at most 0.35x (the ideal is 1/P).
- **Coordination.** The same fleet loop with no-op tasks, tasks per second
  summed over the P processes, against the same loop, claims included, on:
  SQLite in WAL mode (a hand-written claim: ``BEGIN IMMEDIATE``, then
  ``UPDATE ... WHERE NOT done AND (owner IS NULL OR owner is dead)
  RETURNING``) and ``diskcache.Index`` inside ``transact()``. Target: at
  least 2x the faster of them.

Every loop claims each task before it runs, so that no task runs twice
while its claimer lives, and marks it done once it ran; a dead owner is a
pid that no longer exists. All processes start together, from a barrier.
Needs: pip install diskcache.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diskcache

import tastypy


def tastypy_worker(path: str, names: list[str], work: float) -> int:
    done = 0
    with tastypy.Tracker(path, shared=True) as tracker:
        for name in names:
            if not tracker.try_it(name):
                continue
            if work:
                time.sleep(work)
            tracker.mark_done(name)
            done += 1
    return done


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def sqlite_worker(path: str, names: list[str], work: float) -> int:
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # a commit survives a process crash
    me, done = os.getpid(), 0
    for name in names:
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT owner FROM tasks WHERE key = ? AND NOT done", (name,)).fetchone()
        owner = row[0] if row else None
        claimed = None
        if row is not None and (owner is None or not _alive(owner)):
            claimed = db.execute(
                "UPDATE tasks SET owner = ?, tries = tries + 1 "
                "WHERE key = ? AND NOT done AND (owner IS NULL OR owner = ?) RETURNING key",
                (me, name, owner),
            ).fetchone()
        db.execute("COMMIT")
        if claimed is None:
            continue
        if work:
            time.sleep(work)
        db.execute("UPDATE tasks SET done = 1, owner = NULL WHERE key = ?", (name,))
        done += 1
    db.close()
    return done


def diskcache_worker(path: str, names: list[str], work: float) -> int:
    index = diskcache.Index(path)
    me, done = os.getpid(), 0
    for name in names:
        with index.transact():
            record = index.get(name)
            if record is None or record["done"] or _alive(record["owner"]):
                continue
            index[name] = {"done": False, "tries": record["tries"] + 1, "owner": me}
        if work:
            time.sleep(work)
        with index.transact():
            index[name] = {"done": True, "tries": record["tries"] + 1, "owner": None}
        done += 1
    index.cache.close()
    return done


def seed_tastypy(path: str, names: list[str]) -> None:
    with tastypy.Tracker(path, shared=True) as tracker:
        tracker.add_many(names)


def seed_sqlite(path: str, names: list[str]) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE tasks (key TEXT PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0, "
        "tries INTEGER NOT NULL DEFAULT 0, owner INTEGER)"
    )
    db.executemany("INSERT INTO tasks (key) VALUES (?)", [(n,) for n in names])
    db.commit()
    db.close()


def seed_diskcache(path: str, names: list[str]) -> None:
    index = diskcache.Index(path)
    index.update({n: {"done": False, "tries": 0, "owner": None} for n in names})
    index.cache.close()


def _run(worker: Callable[[str, list[str], float], int], args: tuple[Any, ...]) -> int:
    barrier, path, names, work = args
    barrier.wait()
    return worker(path, names, work)


def fleet(
    worker: Callable[[str, list[str], float], int],
    path: str,
    names: list[str],
    processes: int,
    work: float,
) -> tuple[float, int]:
    """Seconds for *processes* workers, started together, to do every task; tasks done."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes + 1)
    with context.Pool(processes) as pool:
        pending = pool.starmap_async(
            _run, [(worker, (barrier, path, names, work)) for _ in range(processes)]
        )
        barrier.wait()
        start = time.perf_counter()
        done = sum(pending.get())
        return time.perf_counter() - start, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--noop-tasks", type=int, default=20_000)
    parser.add_argument("--work", type=float, default=0.005)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tastypy-bench-fleet-"))
    p = args.processes
    try:
        machine = f"{platform.platform()}, {os.cpu_count()} cores"
        print(f"# machine: {machine}, Python {platform.python_version()}")
        print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
        names = [f"task{i}" for i in range(args.tasks)]
        seed_tastypy(str(root / "one"), names)
        one, done1 = fleet(tastypy_worker, str(root / "one"), names, 1, args.work)
        seed_tastypy(str(root / "many"), names)
        many, done_p = fleet(tastypy_worker, str(root / "many"), names, p, args.work)
        assert done1 == done_p == args.tasks, (done1, done_p)
        head = f"scaling: {args.tasks:,} tasks of {args.work * 1000:g} ms"
        print(f"| {head} | seconds | vs 1 process | target |")
        print("|---|---|---|---|")
        print(f"| 1 process | {one:.2f} | | |")
        print(f"| {p} processes, one shared tracker | {many:.2f} | {many / one:.2f}x | <= 0.35x |")
        print()
        names = [f"task{i}" for i in range(args.noop_tasks)]
        rates = {}
        for label, seed, worker in (
            ("tastypy, Tracker(shared=True)", seed_tastypy, tastypy_worker),
            ("SQLite WAL, BEGIN IMMEDIATE + UPDATE ... RETURNING", seed_sqlite, sqlite_worker),
            ("diskcache.Index, transact()", seed_diskcache, diskcache_worker),
        ):
            path = str(root / label.split(",")[0].replace(" ", "-"))
            seed(path, names)
            seconds, done = fleet(worker, path, names, p, 0.0)
            assert done == args.noop_tasks, (label, done)
            rates[label] = done / seconds
        ours = rates["tastypy, Tracker(shared=True)"]
        best_peer = max(v for k, v in rates.items() if not k.startswith("tastypy"))
        head = f"coordination: {args.noop_tasks:,} no-op tasks, {p} processes"
        print(f"| {head} | tasks/s | tastypy is faster by |")
        print("|---|---|---|")
        for label, rate in rates.items():
            ratio = "" if label.startswith("tastypy") else f"{ours / rate:.1f}x"
            print(f"| {label} | {rate:,.0f} | {ratio} |")
        print(f"\ntastypy / the faster peer: {ours / best_peer:.2f}x (target >= 2x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
