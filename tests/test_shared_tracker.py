"""``Tracker(path, shared=True)`` in several real processes: tasks claimed across them.

A live process's claim keeps every other process's ``try_it`` from the task;
a killed process's claims end at once, but its tries still count; done
marks another process synced are seen at the next claim.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tastypy
from tastypy.cli import main

from _subproc import Child

WORKER = """
import json, sys
import tastypy
path, max_tries = sys.argv[1], int(sys.argv[2])
tracker = tastypy.Tracker(path, shared=True, max_tries=max_tries or None)
print("open", flush=True)
for line in sys.stdin:
    command, _, key = line.strip().partition(" ")
    if command == "try":
        print(json.dumps(tracker.try_it(key)), flush=True)
    elif command == "done":
        tracker.mark_done(key)
        tracker.sync()
        print("ok", flush=True)
    elif command == "release":
        tracker.release(key)
        print("ok", flush=True)
    elif command == "show":
        tracker.refresh()
        print(json.dumps(tracker.get(key)), flush=True)
    elif command == "close":
        tracker.close()
        print("closed", flush=True)
"""


def worker(store: Path, max_tries: int = 0) -> Child:
    child = Child(WORKER, str(store), str(max_tries))
    child.expect("open")
    return child


def ask(child: Child, line: str) -> object:
    child.send(line)
    return json.loads(child.readline()) if not line.startswith(("done", "release")) else None


def test_a_live_claim_keeps_the_others_off_and_a_killed_one_ends_at_once(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with worker(store) as a, worker(store) as b:
        assert ask(a, "try x") is True
        assert ask(b, "try x") is False, "a holds x"
        assert ask(b, "try y") is True
        a.signal(signal.SIGKILL)
        a.proc.wait(timeout=20)
        assert ask(b, "try x") is True, "a is dead: its claim is void"
        b.send("done x")
        b.readline()
        assert ask(b, "show x") == {"_done": True, "_tries": 2}, "a's try still counts"


def test_a_task_done_and_synced_elsewhere_is_not_tried_again(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with worker(store) as a, worker(store) as b:
        assert ask(a, "try x") is True
        a.send("done x")
        a.readline()
        assert ask(b, "try x") is False
        assert ask(b, "show x") == {"_done": True, "_tries": 1}


def test_a_released_task_can_be_claimed_by_another(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with worker(store) as a, worker(store) as b:
        assert ask(a, "try x") is True
        assert ask(b, "try x") is False
        a.send("release x")
        a.readline()
        assert ask(b, "try x") is True
        assert ask(b, "show x") == {"_done": False, "_tries": 2}


def test_max_tries_holds_across_the_fleet_and_killed_tries_count(tmp_path: Path) -> None:
    store = tmp_path / "t"
    for _ in range(2):  # two processes each claim x once, and are killed
        with worker(store, max_tries=2) as w:
            assert ask(w, "try x") is True
            w.signal(signal.SIGKILL)
            w.proc.wait(timeout=20)
    with worker(store, max_tries=2) as last:
        assert ask(last, "try x") is False, "exhausted: two tries counted"
        last.send("close")
        assert last.readline() == "closed"
    # The last one settled the dead writers' tries into the record, and their logs went.
    with tastypy.Tracker(store, readonly=True) as seen:
        assert seen["x"]["_tries"] == 2
        assert seen.num_exhausted() == 1
    assert list((store / "writers").glob("*.jsonl")) == []


def test_a_plain_open_after_killed_shared_writers_counts_their_tries(tmp_path: Path) -> None:
    store = tmp_path / "t"
    with worker(store, max_tries=3) as w:
        assert ask(w, "try x") is True
        assert ask(w, "try y") is True
        w.signal(signal.SIGKILL)
        w.proc.wait(timeout=20)
    with tastypy.Tracker(store, readonly=True) as view:
        assert view["x"]["_tries"] == 1 and view["y"]["_tries"] == 1
    with tastypy.Tracker(store) as plain:
        assert plain.tries("x") == 1
        assert plain.try_it("x") is True
        assert plain.tries("x") == 2
    assert list((store / "writers").glob("*.jsonl")) == [], "settled by the plain writer's sync"
    with tastypy.Tracker(store, readonly=True) as seen:
        assert seen["x"]["_tries"] == 2 and seen["y"]["_tries"] == 1


FLEET = """
import glob, os, sys, time
import tastypy
path, log, tasks, fleet = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with tastypy.Tracker(path, shared=True, sync_at=20) as tracker, open(log, "a") as out:
    open(f"{log}.ready-{os.getpid()}", "w").close()
    while len(glob.glob(f"{log}.ready-*")) < fleet:  # all start together
        time.sleep(0.005)
    for i in range(tasks):
        key = f"task{i}"
        if not tracker.try_it(key):
            continue
        out.write(f"start {key} {os.getpid()} {time.monotonic()}\\n")
        out.flush()
        time.sleep(0.001)  # some work, so that the others get their turn
        tracker[key]["result"] = os.getpid()
        out.write(f"end {key} {os.getpid()} {time.monotonic()}\\n")
        out.flush()
        tracker.mark_done(key)
"""


def test_four_processes_split_the_seed_loop_and_each_task_runs_once(tmp_path: Path) -> None:
    store, log = tmp_path / "t", tmp_path / "log"
    procs = [
        subprocess.Popen([sys.executable, "-c", FLEET, str(store), str(log), "400", "4"])
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    starts = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("start")]
    assert sorted(starts) == sorted(f"task{i}" for i in range(400)), "each task exactly once"
    with tastypy.Tracker(store, readonly=True) as seen:
        assert seen.num_done() == 400
        assert all(seen[f"task{i}"]["_tries"] == 1 for i in range(400))
        assert len({seen[f"task{i}"]["result"] for i in range(400)}) > 1, "the work was split"
    assert tastypy.verify(store).ok


RUNNER = """
import glob, os, sys, time
import tastypy
path, log, fleet, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def work(key):
    with open(log, "a") as out:
        out.write(f"{key} {os.getpid()}\\n")
    time.sleep(0.002)
    return key.upper()

if __name__ == "__main__":
    tracker = tastypy.Tracker(path, shared=True, sync_at=10)
    open(f"{log}.ready-{os.getpid()}", "w").close()
    while len(glob.glob(f"{log}.ready-*")) < fleet:
        time.sleep(0.005)
    summary = tracker.run(work, [f"t{i}" for i in range(150)], workers=workers, progress=False)
    tracker.close()
    print(summary.done, flush=True)
"""


def test_processes_each_calling_run_split_the_work_and_each_task_runs_once(
    tmp_path: Path,
) -> None:
    store, log = tmp_path / "t", tmp_path / "log"
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(store), str(log), "3", str(workers)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for workers in (1, 2, 2)
    ]
    done = [int(proc.communicate(timeout=120)[0].split()[-1]) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    ran = [line.split()[0] for line in log.read_text().splitlines()]
    assert sorted(ran) == sorted(f"t{i}" for i in range(150)), "each task exactly once"
    assert sum(done) == 150
    with tastypy.Tracker(store, readonly=True) as seen:
        assert seen.num_done() == 150
        assert all(seen[f"t{i}"]["result"] == f"T{i}" for i in range(150))
        assert all(seen[f"t{i}"]["_tries"] == 1 for i in range(150))


def test_status_shows_each_live_process_with_the_tasks_it_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "t"
    with worker(store) as a, worker(store) as b:
        assert ask(a, "try x") is True
        assert ask(a, "try y") is True
        assert ask(b, "try z") is True
        a.send("done x")
        a.readline()
        assert main(["status", "--json", str(store)]) == 0
        shot = json.loads(capsys.readouterr().out)
        holding = {each["pid"]: each["holding"] for each in shot["processes"]}
        assert holding == {a.pid: 1, b.pid: 1}, "x is done: a holds only y"
        assert main(["status", str(store)]) == 0
        screen = capsys.readouterr().out
        assert "2 processes sharing it" in screen
        assert f"pid {a.pid}: holds 1" in screen and f"pid {b.pid}: holds 1" in screen
        b.signal(signal.SIGKILL)
        b.proc.wait(timeout=20)
        assert main(["status", "--json", str(store)]) == 0
        shot = json.loads(capsys.readouterr().out)
        assert [each["pid"] for each in shot["processes"]] == [a.pid]
