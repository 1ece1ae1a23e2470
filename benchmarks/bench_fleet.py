"""Several processes on one shared tracker: scaling, and the cost of coordination.

Usage:  .venv/bin/python benchmarks/bench_fleet.py [--processes 4] [--tasks 4000]
        [--noop-tasks 20000]

- **Scaling.** P processes run the seed loop (``try_it``, work, ``mark_done``)
  on one ``Tracker(path, shared=True)`` over the same task list, each task
  sleeping 5 ms; the time is compared with one process doing it all.
  Target: at most 0.35x (the ideal is 1/P).
- **Compaction pause.** One writer compacts a store of 200,000 values while
  another syncs a changed key again and again: how long each compaction
  took, and the longest (and 99th percentile) sync the other writer saw.
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


def _run(
    worker: Callable[[str, list[str], float], int],
    barrier: Any,
    results: Any,
    args: tuple[str, list[str], float],
) -> None:
    barrier.wait()
    results.put(worker(*args))


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
    results = context.Queue()
    procs = [
        context.Process(target=_run, args=(worker, barrier, results, (path, names, work)))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    barrier.wait()
    start = time.perf_counter()
    done = sum(results.get(timeout=600) for _ in procs)
    seconds = time.perf_counter() - start
    for proc in procs:
        proc.join()
        assert proc.exitcode == 0, proc.exitcode
    return seconds, done


def syncing_worker(path: str, seconds: float) -> tuple[int, float, float]:
    """Sync one changed key again and again for *seconds*: syncs, longest and p99 (s)."""
    took = []
    with tastypy.POD(path, shared=True) as pod:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            pod[f"small{n % 100}"] = n
            started = time.perf_counter()
            pod.sync()
            took.append(time.perf_counter() - started)
            n += 1
    took.sort()
    return len(took), took[-1], took[int(len(took) * 0.99)]


def compacting_worker(path: str, rounds: int, values: int) -> list[float]:
    """Change every hundredth value and compact, *rounds* times: how long each compaction took."""
    took = []
    with tastypy.POD(path, shared=True, sync_at=10**9) as pod:
        for round_ in range(rounds):
            pod.update(
                {f"big{i}": {"round": round_, "pad": "x" * 100} for i in range(0, values, 100)}
            )
            pod.sync()
            started = time.perf_counter()
            pod.compact()
            took.append(time.perf_counter() - started)
    return took


def compaction_pause(
    root: Path, values: int, rounds: int
) -> tuple[list[float], int, float, float]:
    """One writer compacts a store of *values* values while another syncs; what each saw."""
    path = str(root / "pause")
    with tastypy.POD(path) as pod:
        pod.update({f"big{i}": {"round": -1, "pad": "x" * 100} for i in range(values)})
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:  # plain arguments only: nothing to share but the store
        compacting = pool.apply_async(compacting_worker, (path, rounds, values))
        time.sleep(0.5)  # the compactor's first fold is under way
        syncing = pool.apply_async(syncing_worker, (path, 8.0))
        took = compacting.get(timeout=600)
        syncs, longest, p99 = syncing.get(timeout=600)
    return took, syncs, longest, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--noop-tasks", type=int, default=20_000)
    parser.add_argument("--work", type=float, default=0.005)
    parser.add_argument("--pause-values", type=int, default=200_000)
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
        took, syncs, longest, p99 = compaction_pause(root, args.pause_values, 4)
        print(
            f"\ncompaction while another writer syncs ({args.pause_values:,} values): "
            f"compactions took {', '.join(f'{t:.2f}' for t in took)} s; the other writer's "
            f"{syncs:,} syncs meanwhile: longest {longest * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
