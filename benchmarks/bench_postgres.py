"""A tracker on PostgreSQL: the claim loop of a fleet, against a hand-written psycopg queue.

Usage:  .venv/bin/python benchmarks/bench_postgres.py [--processes 4] [--tasks 20000]
        [--bulk 1000000] [--size 10000000] [--url postgresql://...]

Without ``--url`` it starts a PostgreSQL server of its own, as the tests do
(``tests/_postgres.py``: the machine's PostgreSQL binaries, a temporary
directory, ``fsync=off``), and stops it at the end.

- **Claim loop.** P worker processes, started together from a barrier, run
  N no-op tasks of one tracker: through the seed loop (``for key in keys:
  if tracker.try_it(key): tracker.mark_done(key)``, each worker going
  through the keys in an order of its own), and through ``tracker.run()``
  (``workers=1`` in each process). The peer is a hand-written psycopg loop
  over a plain table: claim one task with ``UPDATE ... WHERE key = (SELECT
  ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``, then mark it done, each
  statement its own transaction. Targets (issue "PostgreSQL engine"):
  ``run()`` at least 1.0x the hand-written loop's rate, the seed loop within
  1.5x of it.

- **Size.** On a store of S tasks (``--size``, 10M by default; made by
  ``add_many`` in chunks of 1M, each committed at once): the time to open
  it, the memory (RSS) of a worker process after it claimed 10,000 tasks,
  and the time ``tastypy status URL --name NAME`` takes (targets for 10M
  tasks: under 1 s, under 150 MiB, under 2 s). ``--size 0``: on the M-task
  store the bulk part made instead.
- **A POD on demand.** On the M-key POD the bulk part made, in a process of
  its own: open + ``len()``, 10,000 random keys read and changed in place
  (then synced), a walk through every value with ``items()``, and the
  memory (RSS) each added.
- **Bulk.** ``Tracker.add_many`` of M new tasks (then close), and
  ``POD.update`` of M new keys, against a raw psycopg ``COPY`` of the same
  rows (the same keys, positions and JSON text) into a table made ``LIKE``
  ``tastypy.records`` (its keys and indexes), in one transaction. Target:
  ``add_many`` within 1.5x of the raw COPY. The raw COPY and ``add_many``
  take turns twice, into new tables and stores, and the faster of each
  counts (both times are printed).

Every loop claims each task before it runs (exclusive while the claim
lives) and counts the try; tasks per second are summed over the workers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

import tastypy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _postgres import Server, find_bin  # the tests' server starter


def noop(key: str) -> None:
    """A task that does nothing: what is measured is the claiming."""


SYNC_AT = int(os.environ.get("BENCH_SYNC_AT", "0")) or None


def seed_loop_worker(url: str, name: str, index: int) -> int:
    done = 0
    with tastypy.Tracker(url, name=name, sync_at=SYNC_AT) as tracker:
        keys = list(tracker)
        random.Random(index).shuffle(keys)
        for key in keys:
            if tracker.try_it(key):
                tracker.mark_done(key)
                done += 1
    return done


def run_worker(url: str, name: str, index: int) -> int:
    with tastypy.Tracker(url, name=name) as tracker:
        summary = tracker.run(noop, progress=False)
    return summary.done


def handwritten_worker(url: str, name: str, index: int) -> int:
    table = f'"{name}"'
    me = f"{os.getpid()}"
    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        claim = (
            f"UPDATE {table} SET holder = %s, tries = tries + 1 WHERE key = ("
            f"SELECT key FROM {table} WHERE NOT done AND holder IS NULL "
            "LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING key"
        )
        finish = f"UPDATE {table} SET done = true, holder = NULL WHERE key = %s"
        while True:
            row = conn.execute(claim, (me,)).fetchone()
            if row is None:
                break
            noop(row[0])
            conn.execute(finish, (row[0],))
            done += 1
    return done


def seed_tracker(url: str, name: str, keys: list[str]) -> None:
    with tastypy.Tracker(url, name=name) as tracker:
        tracker.add_many(keys)


def seed_table(url: str, name: str, keys: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        conn.execute(
            f'CREATE TABLE "{name}" (key text PRIMARY KEY, done boolean NOT NULL DEFAULT false, '
            "tries integer NOT NULL DEFAULT 0, holder text)"
        )
        with conn.cursor().copy(f'COPY "{name}" (key) FROM STDIN') as copy:
            for key in keys:
                copy.write_row((key,))


FRESH = '{"_done":false,"_tries":0}'  # how the tracker writes a new task


def raw_copy(url: str, keys: list[str], value: str, facts: tuple[Any, Any]) -> float:
    """Seconds for one COPY of *keys* (each *value*) into a copy of tastypy.records."""
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw (LIKE tastypy.records INCLUDING ALL)")
        conn.commit()
        start = time.perf_counter()
        with conn.cursor().copy("COPY bench_raw FROM STDIN") as copy:
            for pos, key in enumerate(keys):
                copy.write_row((1, key, pos, 1, value, *facts))
        conn.commit()
        seconds = time.perf_counter() - start
        conn.execute("DROP TABLE bench_raw")
        conn.commit()
    return seconds


def sized(url: str, count: int) -> None:
    """A tracker of *count* tasks, added a million at a time; then :func:`size` on it."""
    name = f"bench-size-{os.getpid()}"
    start = time.perf_counter()
    with tastypy.Tracker(url, name=name) as tracker:
        for first in range(0, count, 1_000_000):
            last = min(count, first + 1_000_000)
            tracker.add_many(f"https://example.com/item/{i:08d}" for i in range(first, last))
    print(f"\n(made a {count:,}-task store in {time.perf_counter() - start:.0f} s)")
    size(url, name, count)


def add_many_seconds(url: str, name: str, keys: list[str]) -> float:
    """Seconds for a new tracker *name*'s ``add_many(keys)`` and close."""
    start = time.perf_counter()
    with tastypy.Tracker(url, name=name) as tracker:
        tracker.add_many(keys)
    return time.perf_counter() - start


def bulk(url: str, count: int, *, sizes: bool) -> None:
    keys = [f"https://example.com/item/{i:07d}" for i in range(count)]
    tastypy.POD(url, name=f"bench-made-{os.getpid()}").close()  # the tables exist
    # The raw COPY and add_many take turns, twice each, and the faster of
    # each counts: the first large write to a new server makes its WAL
    # files, and a checkpoint may fall in any one run.
    raws: list[float] = []
    adds: list[float] = []
    for turn in range(2):
        raws.append(raw_copy(url, keys, FRESH, (0, 0)))
        adds.append(add_many_seconds(url, f"bench-bulk-{os.getpid()}-{turn}", keys))
    raw_tasks, add_many = min(raws), min(adds)
    each = ", ".join(f"{raw:.2f} s / {add:.2f} s" for raw, add in zip(raws, adds, strict=True))
    print(f"\n(raw COPY / add_many, in turn: {each})")
    if sizes:
        size(url, f"bench-bulk-{os.getpid()}-0", count)
    value = {"status": 200, "bytes": 5120}
    start = time.perf_counter()
    with tastypy.POD(url, name=f"bench-update-{os.getpid()}") as pod:
        pod.update((key, value) for key in keys)
    update = time.perf_counter() - start
    raw_values = raw_copy(url, keys, '{"status":200,"bytes":5120}', (None, None))
    print(f"\n| bulk: {count:,} new keys, one process | seconds | vs raw COPY | target |")
    print("|---|---|---|---|")
    print(f"| raw psycopg COPY, task records | {raw_tasks:.2f} | | |")
    print(f"| tastypy Tracker.add_many + close | {add_many:.2f} | {add_many / raw_tasks:.2f}x "
          "| <= 1.5x |")  # fmt: skip
    print(f"| raw psycopg COPY, small values | {raw_values:.2f} | | |")
    print(f"| tastypy POD.update + close | {update:.2f} | {update / raw_values:.2f}x | |")
    pod_size(url, f"bench-update-{os.getpid()}", keys)


POD_SIZE_WORKER = """
import random, sys, time, tastypy
url, name, reads = sys.argv[1], sys.argv[2], int(sys.argv[3])
rss = lambda: int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
before = rss()
start = time.perf_counter()
pod = tastypy.POD(url, name=name)
size = len(pod)
opened = time.perf_counter() - start
keys = [f"https://example.com/item/{i:07d}" for i in random.Random(1).sample(range(size), reads)]
start = time.perf_counter()
for key in keys:
    pod[key]["seen"] = True
read = time.perf_counter() - start
after_reads = rss()
start = time.perf_counter()
count = sum(1 for _ in pod.items())
walked = time.perf_counter() - start
pod.close()
print(opened, size, read, after_reads - before, walked, rss() - before, count)
"""


def pod_size(url: str, name: str, keys: list[str]) -> None:
    """A POD served on demand: open + len, reads of random keys, a walk through every value."""
    done = subprocess.run(
        [sys.executable, "-c", POD_SIZE_WORKER, url, name, "10000"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    opened, size, read, rss_reads, walked, rss_walk, count = (
        float(x) for x in done.stdout.split()
    )
    assert int(size) == int(count) == len(keys), (size, count)
    print(f"\n| a POD of {len(keys):,} keys, served on demand | value |")
    print("|---|---|")
    print(f"| open + len() | {opened:.3f} s |")
    print(f"| 10,000 random keys read and changed in place | {read:.2f} s |")
    print(f"| memory (RSS) those reads added | {rss_reads:.0f} MiB |")
    print(f"| items() through every key | {walked:.1f} s ({count / walked:,.0f} keys/s) |")
    print(f"| memory (RSS) added by the end | {rss_walk:.0f} MiB |")


SIZE_WORKER = """
import resource, sys, time, tastypy
url, name, claims = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
tracker = tastypy.Tracker(url, name=name)
opened = time.perf_counter() - start
claimed = 0
for key in tracker:
    if claimed >= claims:
        break
    claimed += tracker.try_it(key)
rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
print(opened, rss, claimed)
tracker.close()
"""


def size(url: str, name: str, count: int) -> None:
    """Open time, a worker's memory after 10,000 claims, ``tastypy status`` time."""
    done = subprocess.run(
        [sys.executable, "-c", SIZE_WORKER, url, name, "10000"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    opened, rss, claimed = done.stdout.split()
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tastypy", "status", url, "--name", name],
        capture_output=True, check=True,
    )  # fmt: skip
    status = time.perf_counter() - start
    print(f"\n| size: a {count:,}-task store | value | target (10M tasks) |")
    print("|---|---|---|")
    print(f"| open | {float(opened):.2f} s | < 1 s |")
    print(f"| a worker's RSS after claiming {int(claimed):,} tasks | {float(rss):.0f} MiB "
          "| < 150 MiB |")  # fmt: skip
    print(f"| `tastypy status` | {status:.2f} s | < 2 s |")


def _run(
    worker: Callable[[str, str, int], int], barrier: Any, results: Any, args: tuple[Any, ...]
) -> None:
    barrier.wait()
    results.put(worker(*args))


def fleet(
    worker: Callable[[str, str, int], int], url: str, name: str, processes: int
) -> tuple[float, int]:
    """Seconds for *processes* workers, started together, to do every task; tasks done."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    procs = [
        context.Process(target=_run, args=(worker, barrier, results, (url, name, i)))
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    barrier.wait()
    start = time.perf_counter()
    done = sum(results.get(timeout=1800) for _ in procs)
    seconds = time.perf_counter() - start
    for proc in procs:
        proc.join()
        assert proc.exitcode == 0, proc.exitcode
    return seconds, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--bulk", type=int, default=1_000_000, help="keys (0: no bulk part)")
    parser.add_argument(
        "--size", type=int, default=10_000_000, help="tasks of the size part's store"
    )
    parser.add_argument("--url", help="a server to use instead of starting one")
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        bin_dir = find_bin()
        if bin_dir is None:
            sys.exit("no PostgreSQL binaries found: give --url")
        server = Server(bin_dir)
        url = server.url()
    try:
        print(f"# machine: {platform.platform()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}")  # fmt: skip
        print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        version = psycopg.connect(url).execute("SHOW server_version").fetchone()
        print(f"# PostgreSQL {version[0] if version else '?'}, psycopg {psycopg.__version__}\n")
        keys = [f"task{i:06d}" for i in range(args.tasks)]
        p = args.processes
        rates: dict[str, float] = {}
        for short, label, seed, worker in (
            (
                "queue",
                "hand-written psycopg, FOR UPDATE SKIP LOCKED",
                seed_table,
                handwritten_worker,
            ),
            ("seed", "tastypy seed loop (try_it, mark_done)", seed_tracker, seed_loop_worker),
            ("run", "tastypy run()", seed_tracker, run_worker),
        ):
            name = f"bench-{short}-{os.getpid()}"
            seed(url, name, keys)
            seconds, done = fleet(worker, url, name, p)
            assert done == args.tasks, (label, done)
            rates[label] = done / seconds
        peer = rates["hand-written psycopg, FOR UPDATE SKIP LOCKED"]
        print(
            f"| claim loop: {args.tasks:,} no-op tasks, {p} processes "
            "| tasks/s | vs hand-written | target |"
        )
        print("|---|---|---|---|")
        targets = {"tastypy seed loop (try_it, mark_done)": ">= 0.67x", "tastypy run()": ">= 1.0x"}
        for label, rate in rates.items():
            ratio = "" if rate is peer else f"{rate / peer:.2f}x"
            print(f"| {label} | {rate:,.0f} | {ratio} | {targets.get(label, '')} |")
        if args.bulk:
            bulk(url, args.bulk, sizes=not args.size)
        if args.size:
            sized(url, args.size)
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
