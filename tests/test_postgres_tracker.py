"""A tracker on PostgreSQL: claims leased in server time, fencing, a fleet of real processes.

Workers are real processes against the session's real server. They are
killed (SIGKILL), paused past their lease (SIGSTOP, then SIGCONT), and the
server is restarted under them. Leases are short here (1 to 2 s) so that
running out takes little time.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from pathlib import Path

import pytest

import tastypy
from tastypy import SettingsError

from _postgres import Server
from _subproc import Child

HOLD = """
import sys, tastypy
t = tastypy.Tracker(
    sys.argv[1], name=sys.argv[2], max_tries=int(sys.argv[4]), lease=float(sys.argv[5])
)
print(t.try_it(sys.argv[3]), flush=True)
for line in sys.stdin:
    if line.strip() == "done":
        t.mark_done(sys.argv[3])
        t.sync()
        print(dict(t[sys.argv[3]]), flush=True)
    elif line.strip() == "close":
        t.close()
        print("closed", flush=True)
"""


def holder(url: str, name: str, key: str, *, max_tries: int = 0, lease: float = 60) -> Child:
    """A child that opens the tracker, prints ``try_it(key)``, then waits for orders."""
    return Child(HOLD, url, name, key, str(max_tries), str(lease))


@pytest.fixture
def url(pg_server: Server) -> str:
    return pg_server.url()


def test_a_claim_is_exclusive_while_its_holder_lives_and_ends_when_it_closes(
    url: str, pg_name: str
) -> None:
    with tastypy.Tracker(url, name=pg_name, max_tries=3) as tracker:
        tracker.add("a")
        with holder(url, pg_name, "a", max_tries=3) as child:
            child.expect("True")
            assert not tracker.try_it("a")  # held elsewhere, lease live
            assert tracker.should_do("a")
            child.send("close")
            child.expect("closed")
            assert tracker.try_it("a")  # released at close
            assert tracker.tries("a") == 2  # the child's try counts


def test_a_killed_holders_claim_runs_out_with_its_lease_and_its_try_counts(
    url: str, pg_name: str
) -> None:
    with tastypy.Tracker(url, name=pg_name, max_tries=2) as tracker:
        tracker.add("a")
        with holder(url, pg_name, "a", max_tries=2, lease=1) as child:
            child.expect("True")
            child.proc.kill()
            child.proc.wait()
            assert not tracker.try_it("a")  # the lease still runs
            deadline = time.monotonic() + 10
            while not tracker.try_it("a"):
                assert time.monotonic() < deadline, "the dead holder's lease never ran out"
                time.sleep(0.1)
        assert tracker.tries("a") == 2
        tracker.sync()
        assert not tracker.try_it("a")  # two tries of two, counted across processes
        assert tracker.num_exhausted() == 1


def test_a_live_holders_lease_is_renewed_by_its_heartbeat(url: str, pg_name: str) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add("a")
        with holder(url, pg_name, "a", lease=1) as child:
            child.expect("True")
            for _ in range(25):  # 2.5 leases
                assert not tracker.try_it("a")
                time.sleep(0.1)


def test_a_holder_paused_past_its_lease_is_fenced_off(
    url: str, pg_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Fencing: the late holder's mark_done does not undo the new holder's state.

    The late holder's changes to the task are dropped at its sync, it takes
    the store's record instead, and a warning names the task.
    """
    with tastypy.Tracker(url, name=pg_name, max_tries=5) as tracker:
        tracker.add("a")
        tracker.add("b")
    with holder(url, pg_name, "a", max_tries=5, lease=1) as late:
        late.expect("True")
        late.signal(signal.SIGSTOP)
        try:
            with tastypy.Tracker(url, name=pg_name) as fresh:
                deadline = time.monotonic() + 10
                while not fresh.try_it("a"):
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                assert fresh.tries("a") == 2
                fresh["a"]["by"] = "fresh"
                fresh.sync()  # the new holder's state, before the late one wakes
                late.signal(signal.SIGCONT)
                late.send("done")
                seen_late = late.readline()
                fresh.refresh()
                assert dict(fresh["a"]) == {"_done": False, "_tries": 2, "by": "fresh"}
                fresh.mark_done("a")
        finally:
            if late.alive():
                os.kill(late.pid, signal.SIGCONT)
        late.send("close")
        late.expect("closed")
        assert late.finish() == 0
    # The late holder holds the store's record, not its own mark_done.
    assert seen_late == "{'_done': False, '_tries': 2, 'by': 'fresh'}"
    assert "claimed them since ('a')" in late.stderr
    with tastypy.Tracker(url, name=pg_name, readonly=True) as after:
        assert dict(after["a"]) == {"_done": True, "_tries": 2, "by": "fresh"}
    del caplog


def test_lease_is_for_postgresql_and_must_be_a_sane_number(
    tmp_path: Path, url: str, pg_name: str
) -> None:
    with pytest.raises(SettingsError, match="lease= is for a tracker on PostgreSQL"):
        tastypy.Tracker(tmp_path / "t", lease=5)
    for bad in (0, -1, 0.1, 10**9, True, "60"):
        with pytest.raises(ValueError, match="lease must be"):
            tastypy.Tracker(url, name=pg_name, lease=bad)  # type: ignore[arg-type]
    tastypy.Tracker(url, name=pg_name, lease=5).close()


def test_a_reset_of_a_claimed_task_starts_its_count_again(url: str, pg_name: str) -> None:
    with tastypy.Tracker(url, name=pg_name, max_tries=1) as tracker:
        tracker.add("a")
        assert tracker.try_it("a")
        tracker.release("a")
        assert not tracker.try_it("a")
        tracker.reset_tries("a")
        tracker.sync()
        assert tracker.try_it("a")
        assert tracker.tries("a") == 1


# -- the fleet ------------------------------------------------------------------------

WORKER = """
import os, random, sys, time, tastypy
url, name, out = sys.argv[1], sys.argv[2], sys.argv[3]
rng = random.Random(os.getpid())
t = tastypy.Tracker(url, name=name, lease=1.0, sync_at=1)
log = open(out, "a", buffering=1)
print("ready", flush=True)
while True:
    t.refresh()
    todo = list(t.todo_keys())
    if not todo:
        break
    rng.shuffle(todo)
    claimed = False
    for key in todo:
        log.write(f"T {key} {os.getpid()} {time.time():.6f}\\n")  # a claim may begin now
        if t.try_it(key):
            claimed = True
            log.write(f"S {key} {os.getpid()} {time.time():.6f}\\n")
            time.sleep(rng.uniform(0.02, 0.06))
            log.write(f"E {key} {os.getpid()} {time.time():.6f}\\n")
            t.mark_done(key)
    if not claimed:
        time.sleep(0.05)
t.close()
log.write(f"X - {os.getpid()} {time.time():.6f}\\n")
"""


Run = tuple[int, float, float | None]  # pid, start, end (None: killed during it)
# What the torture does to the fleet, at these seconds after it starts.
SCHEDULE = [(0.4, "pause"), (0.8, "kill"), (1.2, "restart"), (2.0, "kill"), (2.6, "pause")]


class Fleet:
    """Worker processes running WORKER, and what the test did to each."""

    def __init__(self, server: Server, name: str, out: Path) -> None:
        self.server, self.name, self.out = server, name, out
        self.workers: list[Child] = []
        self.disturbed: dict[int, list[tuple[float, float]]] = {}  # pid -> (from, to)
        self.restarts: list[tuple[float, float]] = []

    def start(self) -> None:
        worker = Child(WORKER, self.server.url(), self.name, str(self.out))
        worker.expect("ready")
        self.workers.append(worker)

    def live(self) -> list[Child]:
        return [worker for worker in self.workers if worker.alive()]

    def disturb(self, what: str, rng: random.Random) -> None:
        live = self.live()
        if what == "restart":
            begun = time.time()
            self.server.restart()
            self.restarts.append((begun, time.time()))
        elif live and what == "kill":
            victim = rng.choice(live)
            victim.proc.kill()
            victim.proc.wait()
            self.disturbed.setdefault(victim.pid, []).append((time.time(), 1e18))
            self.start()
        elif live:
            victim = rng.choice(live)
            begun = time.time()
            victim.signal(signal.SIGSTOP)
            time.sleep(1.6)  # past its 1 s lease
            victim.signal(signal.SIGCONT)
            self.disturbed.setdefault(victim.pid, []).append((begun, time.time()))

    def lapsed(self, run: Run, until: float) -> bool:
        """Whether *run*'s claim could run out before *until*: its worker killed or
        paused, or the server restarted (no lease renewed), between its start and then."""
        pid, begun, _ended = run
        windows = self.disturbed.get(pid, []) + self.restarts
        return any(a <= until and b >= begun for a, b in windows)

    def close(self) -> None:
        for worker in self.workers:
            if worker.alive():
                os.kill(worker.pid, signal.SIGCONT)
                worker.proc.kill()
            worker.__exit__(None, None, None)

    def runs(self, keys: list[str]) -> dict[str, list[Run]]:
        """Each task's executions, from the workers' log lines."""
        runs: dict[str, list[Run]] = {key: [] for key in keys}
        started: dict[tuple[str, int], float] = {}
        trying: dict[tuple[str, int], float] = {}
        for line in self.out.read_text().splitlines():
            kind, key, pid, when = line.split()
            if kind == "T":
                trying[(key, int(pid))] = float(when)
            elif kind == "S":  # the run, from the try_it that claimed it
                started[(key, int(pid))] = trying[(key, int(pid))]
            elif kind == "E":
                runs[key].append((int(pid), started.pop((key, int(pid))), float(when)))
        for (key, pid), begun in started.items():
            runs[key].append((pid, begun, None))
        return runs


@pytest.mark.slow
def test_a_fleet_under_kills_pauses_and_a_server_restart_does_every_task(
    pg_server: Server, pg_name: str, tmp_path: Path
) -> None:
    """The fleet torture of the shared-mode issue, against PostgreSQL.

    Invariants: every task done; each task's tries at least the executions
    it started and at most max_tries; a task executed again, or two of its
    executions overlapping, only after the earlier claim could run out: its
    worker killed or paused, or the server restarted, since it began.
    """
    rng = random.Random(12)
    keys = [f"task{i:03d}" for i in range(240)]
    with tastypy.Tracker(pg_server.url(), name=pg_name, max_tries=6) as tracker:
        tracker.add_many(keys)
    fleet = Fleet(pg_server, pg_name, tmp_path / "executions")
    try:
        for _ in range(4):
            fleet.start()
        began = time.monotonic()
        for at, what in SCHEDULE:
            time.sleep(max(0.0, began + at - time.monotonic()))
            fleet.disturb(what, rng)
        for worker in fleet.workers:
            if worker.proc.returncode != -signal.SIGKILL:
                assert worker.finish(timeout=120) == 0, worker.stderr
    finally:
        fleet.close()
    runs = fleet.runs(keys)
    assert sum(e is None for each in runs.values() for _p, _b, e in each) <= 2  # the kills
    with tastypy.Tracker(pg_server.url(), name=pg_name, readonly=True) as after:
        assert after.num_done() == len(keys), "every task done"
        for key in keys:
            executions = runs[key]
            assert executions, f"{key} was never executed"
            assert len(executions) <= after.tries(key) <= 6, (key, executions)
            executions.sort(key=lambda run: run[1])
            for one, again in itertools.pairwise(executions):
                # Executed again: the earlier claim ran out before its outcome was
                # committed, which takes a kill, a pause or the server's restart.
                assert fleet.lapsed(one, again[1]), (key, executions, fleet.disturbed)
            for i, one in enumerate(executions):
                for other in executions[i + 1 :]:
                    if other[1] <= (one[2] or 1e18):  # overlapping (sorted by start)
                        assert fleet.lapsed(one, other[1]), (
                            f"{key}: two executions overlap with both leases live"
                        )


# -- run() ------------------------------------------------------------------------------

RUNNER = """
import os, sys, time, tastypy
url, name, out, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
log = open(out, "a", buffering=1)

def work(key):
    log.write(f"{key} {os.getpid()}\\n")
    time.sleep(pause)
    return key.upper()

with tastypy.Tracker(url, name=name, lease=5) as t:
    print("ready", flush=True)
    sys.stdin.readline()
    summary = t.run(work, progress=False)
print(summary.done, summary.interrupted, flush=True)
"""


def test_runs_in_two_processes_split_the_tasks_and_do_each_once(
    url: str, pg_name: str, tmp_path: Path
) -> None:
    keys = [f"k{i:03d}" for i in range(300)]
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(keys)
    out = tmp_path / "ran"
    runners = [Child(RUNNER, url, pg_name, str(out), "0.002") for _ in range(2)]
    for runner in runners:
        runner.expect("ready")
    for runner in runners:
        runner.send()
    done = [int(runner.readline(timeout=60).split()[0]) for runner in runners]
    for runner in runners:
        assert runner.finish() == 0, runner.stderr
    ran = out.read_text().split("\n")[:-1]
    assert sorted(line.split()[0] for line in ran) == keys  # each once
    assert sum(done) == len(keys) and min(done) > 0  # both did some
    with tastypy.Tracker(url, name=pg_name, readonly=True) as after:
        assert after.num_done() == len(keys)
        assert all(after.tries(key) == 1 and after[key]["result"] == key.upper() for key in keys)


def test_a_run_stopped_by_sigterm_gives_back_the_claims_it_never_ran(
    url: str, pg_name: str, tmp_path: Path
) -> None:
    """Batches claim ahead; what a stopped run did not start counts no try."""
    keys = [f"k{i:03d}" for i in range(400)]
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(keys)
    out = tmp_path / "ran"
    with Child(RUNNER, url, pg_name, str(out), "0.001") as runner:
        runner.expect("ready")
        runner.send()
        deadline = time.monotonic() + 30
        while not out.exists() or len(out.read_text().splitlines()) < 120:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        runner.signal(signal.SIGTERM)
        status = runner.finish()
    assert status != 0 or "True" in runner.stdout, runner.stderr
    ran = {line.split()[0] for line in out.read_text().splitlines()}
    assert 120 <= len(ran) < len(keys)
    with tastypy.Tracker(url, name=pg_name) as after:
        for key in keys:
            assert after.tries(key) == (1 if key in ran else 0), key
        assert after.try_it(keys[-1])  # nothing left held


FAST = """
import sys, tastypy
with tastypy.Tracker(sys.argv[1], name=sys.argv[2]) as t:
    print("ready", flush=True)
    sys.stdin.readline()
    summary = t.run(lambda key: None, progress=False)
print(summary.done, flush=True)
"""


@pytest.mark.slow
def test_four_quick_runs_do_each_task_exactly_once(url: str, pg_name: str) -> None:
    """A claim must not read a record older than the claim row it takes.

    (Found by the benchmark: a claim's snapshot could predate the commit
    that finished a task and let go of its claim, and so run it again.)
    """
    keys = [f"k{i:05d}" for i in range(16000)]
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(keys)
    runners = [Child(FAST, url, pg_name) for _ in range(4)]
    try:
        for runner in runners:
            runner.expect("ready")
        for runner in runners:
            runner.send()
        done = [int(runner.readline(timeout=120)) for runner in runners]
        for runner in runners:
            assert runner.finish() == 0, runner.stderr
    finally:
        for runner in runners:
            runner.__exit__(None, None, None)
    assert sum(done) == len(keys), done
    with tastypy.Tracker(url, name=pg_name, readonly=True) as after:
        assert after.num_done() == len(keys)
        assert {after.tries(key) for key in keys} == {1}


LATE = """
import sys, tastypy
t = tastypy.Tracker(sys.argv[1], name=sys.argv[2], lease=1)
print(t.try_it("new"), flush=True)  # a task no record of which is committed yet
sys.stdin.readline()
t["new"]["result"] = "late"
t.mark_done("new")
t.sync()
print("new" in t, flush=True)
t.sync()
t.close()
print("closed", flush=True)
"""


def test_a_late_holder_of_a_task_it_claimed_new_is_fenced_off_too(url: str, pg_name: str) -> None:
    tastypy.Tracker(url, name=pg_name).close()
    with Child(LATE, url, pg_name) as late:
        late.expect("True")
        late.signal(signal.SIGSTOP)
        try:
            with tastypy.Tracker(url, name=pg_name) as fresh:
                deadline = time.monotonic() + 10
                while not fresh.try_it("new"):
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                late.signal(signal.SIGCONT)
                late.send()
                assert late.readline() == "False"  # it holds the store's view: no record
                late.expect("closed")
                assert late.finish() == 0, late.stderr
                with tastypy.Tracker(url, name=pg_name, readonly=True) as seen:
                    # The late holder's record never landed (the view counts the
                    # new holder's claimed try, as a reader's view does).
                    assert dict(seen["new"]) == {"_done": False, "_tries": 2}
                fresh.mark_done("new")
        finally:
            if late.alive():
                os.kill(late.pid, signal.SIGCONT)
    with tastypy.Tracker(url, name=pg_name, readonly=True) as after:
        assert dict(after["new"]) == {"_done": True, "_tries": 2}
