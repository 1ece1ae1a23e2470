"""Fleet torture: processes share one tracker, some are SIGKILLed and restarted.

Each worker runs the seed loop (``try_it``, work, store a result,
``mark_done``) over the same tasks and logs the start and end of every
execution with its pid and the system's monotonic clock. The test kills
workers at random moments, starts new ones, and at the end runs a clean
pass. Then, from the logs:

- two executions of one task never overlap while the first one's process
  lives: a task runs again only after its last run ended or its process was
  killed;
- every task ends done, with a result from the process that last ran it;
- each task's ``_tries`` is at least the number of times it ran;
- re-executions are explained by kills: every run of a task but its last is
  by a process that was killed;
- ``verify`` passes.
"""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tastypy

TASKS = 1500

WORKER = """
import os, sys, time
import tastypy
path, log, tasks, gzipped, compact = sys.argv[1:6]
tasks, gzipped, compact = int(tasks), gzipped == "1", compact == "1"
tracker = tastypy.Tracker(path, shared=True, sync_at=15, gzipped=gzipped, file_size=50)
out = open(log, "a", buffering=1)
ran = 0
for i in range(tasks):
    key = f"t{i}"
    if not tracker.try_it(key):
        continue
    out.write(f"start {key} {os.getpid()} {time.monotonic()}\\n")
    time.sleep(0.0005)
    tracker[key]["result"] = os.getpid()
    out.write(f"end {key} {os.getpid()} {time.monotonic()}\\n")
    tracker.mark_done(key)
    ran += 1
    if compact and ran % 40 == 0:
        tracker.compact()
tracker.close()
"""


def start(store: Path, log: Path, gzipped: bool, compact: bool) -> subprocess.Popen[bytes]:
    args = [str(store), str(log), str(TASKS), str(int(gzipped)), str(int(compact))]
    with open(log.with_suffix(".stderr"), "ab") as stderr:
        return subprocess.Popen([sys.executable, "-c", WORKER, *args], stderr=stderr)


@pytest.mark.parametrize(
    ("gzipped", "compact"),
    [(False, False), (True, True)],
    ids=["plain", "gzipped-compacting"],
)
def test_killed_and_restarted_workers_never_run_a_task_twice_at_once(
    tmp_path: Path, gzipped: bool, compact: bool
) -> None:
    store, log = tmp_path / "t", tmp_path / "log"
    rng = random.Random(11 if gzipped else 7)
    killed: dict[int, float] = {}  # pid -> when it was killed (monotonic)
    fleet = [start(store, log, gzipped, compact) for _ in range(4)]
    deadline = time.monotonic() + 60
    for _ in range(8):  # kill one at a random moment, start another
        time.sleep(rng.uniform(0.05, 0.3))
        running = [p for p in fleet if p.poll() is None]
        if not running:
            break
        victim = rng.choice(running)
        killed[victim.pid] = time.monotonic()  # before: it dies after this moment
        victim.send_signal(signal.SIGKILL)
        if victim.wait(timeout=20) != -signal.SIGKILL:
            del killed[victim.pid]  # it had finished just before the signal
        fleet.append(start(store, log, gzipped, compact))
    errors = log.with_suffix(".stderr")
    for proc in fleet:
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        assert status == (-9 if proc.pid in killed else 0), errors.read_text()
    final = start(store, log, gzipped, compact)  # a clean pass finishes what is left
    assert final.wait(timeout=60) == 0, errors.read_text()
    assert killed, "the test killed nobody"

    runs: dict[str, list[tuple[float, float | None, int]]] = {}
    started: dict[tuple[str, int], float] = {}
    for line in log.read_text().splitlines():
        what, key, pid_text, when_text = line.split()
        pid, when = int(pid_text), float(when_text)
        if what == "start":
            started[key, pid] = when
            runs.setdefault(key, []).append((when, None, pid))
        else:
            runs[key] = [(s, when if (p == pid and e is None) else e, p) for s, e, p in runs[key]]
    with tastypy.Tracker(store, readonly=True) as seen:
        assert seen.num_done() == TASKS
        for i in range(TASKS):
            key = f"t{i}"
            history = sorted(runs[key])
            record = seen[key]
            assert record["_done"] is True
            assert record["result"] == history[-1][2], f"{key}: the last run's result"
            assert record["_tries"] >= len(history), f"{key}: {record} ran {len(history)}x"
            for (_s1, _e1, p1), (s2, _e2, _p2) in itertools.pairwise(history):
                # Run again only because the last runner died holding it, and only then.
                assert p1 in killed, f"{key} ran again after a run by {p1}, never killed"
                assert s2 >= killed[p1], f"{key}: ran again while {p1} still held it"
    report = tastypy.verify(store)
    assert report.ok, report
    assert not list((store / "writers").glob("*.jsonl")), (
        "every writer's log was settled or removed"
    )
