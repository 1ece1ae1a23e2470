"""The tracker commands of ``tastypy`` (status, list, reset, export, import, demo).

Each runs as a real subprocess (``python -m tastypy``). Writers that a command
must cope with run in child processes too; every wait has a deadline, and
tests synchronise on a child's output or on the store (read-only), never on
sleeps alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

import tastypy

from _subproc import Child

WAIT = 30.0  # seconds; generous, only reached if something hangs

STATES = {
    "done": ["task-00", "task-01", "task-02", "task-03"],
    "failed": ["task-04", "task-05", "task-06"],
    "exhausted": ["task-07"],
    "aborted": ["task-08"],
    "untried": ["task-09", "task-10", "task-11"],
}
STATES["todo"] = STATES["failed"] + STATES["untried"]
KEYS = [f"task-{i:02d}" for i in range(12)]
TRIED = 7  # task-00..02 and task-04..07
ERRORS = [["ValueError: boom", 3], ["OSError: disk full", 1]]


# -- running the command ------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    """The environment, without the settings that change the command's looks."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(extra)
    return env


def tastypy_cmd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tastypy", *args],
        capture_output=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
        env=_env(),
    )


class Command(Child):
    """``python -m tastypy ARGS`` running; read its output line by line (see Child)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tastypy", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env=_env(),
        )
        self._buf = b""
        self._finished = False
        self.stdout = ""
        self.stderr = ""


def _files(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _records(path: Path) -> dict[str, Any]:
    with tastypy.Tracker(path, readonly=True) as tracker:
        return dict(tracker.items())


def _items(path: Path) -> list[tuple[str, Any]]:
    with tastypy.POD(path, readonly=True) as pod:
        return list(pod.items())


def _exact(items: list[tuple[str, Any]]) -> str:
    """*items* as JSON text: tells 1 from 1.0 and True from 1, which == does not."""
    return json.dumps(items, ensure_ascii=False)


def _assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("tastypy: error: "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def _assert_fits(text: str, path: Path | None = None) -> None:
    """At most 80 columns (but for lines with the user's path), and no colour."""
    assert "\x1b" not in text
    for line in text.splitlines():
        if path is None or str(path) not in line:
            assert len(line) <= 80, line


_ROW = re.compile(r"^  (\w+) +([\d,]+) +([\d.]+) %$")


def _rows(screen: str) -> dict[str, tuple[int, str]]:
    """The status screen's count rows: name -> (count, percentage as printed)."""
    rows = {}
    for line in screen.splitlines():
        match = _ROW.match(line)
        if match:
            rows[match[1]] = (int(match[2].replace(",", "")), match[3])
    return rows


def _count_fields(frame: dict[str, Any]) -> dict[str, int]:
    names = ("total", "done", "tried", "failed", "exhausted", "aborted", "untried")
    return {name: frame[name] for name in names}


# -- stores ---------------------------------------------------------------------------------


def _work(key: str) -> str:
    if key == "task-06":
        raise OSError("disk full")
    if key in ("task-04", "task-05", "task-07"):
        raise ValueError("boom")
    return key.upper()


@pytest.fixture
def tracker_store(tmp_path: Path) -> Path:
    """A tracker with tasks in every state: see STATES (max_tries 2)."""
    path = tmp_path / "jobs.tracker"
    with tastypy.Tracker(path, max_tries=2) as tracker:
        tracker.add_many(KEYS)
        tracker.run(_work, [*STATES["done"][:3], *STATES["failed"], "task-07"], progress=False)
        tracker.run(_work, ["task-07"], progress=False)  # its second try: exhausted
        tracker.mark_done("task-03")  # done without a try
        tracker.abort("task-08")
    return path


@pytest.fixture
def pod_store(tmp_path: Path) -> Path:
    path = tmp_path / "plain.pod"
    with tastypy.POD(path) as pod:
        pod["a"] = {"x": 1}
        pod["b"] = [1, 2]
    return path


HOLD = """
import sys
import tastypy

tracker = tastypy.Tracker(sys.argv[1])
if len(sys.argv) > 2:
    tracker.try_it("task-09")  # logged to tries.jsonl at once, not synced
    tracker.mark_done("task-10")  # in memory only
print("ready", flush=True)
sys.stdin.readline()
tracker.close()
print("closed", flush=True)
"""


# -- status ---------------------------------------------------------------------------------


def test_status_counts_and_errors(tracker_store: Path) -> None:
    before = _files(tracker_store)
    done = tastypy_cmd("status", str(tracker_store))
    assert done.returncode == 0, done.stderr
    screen = done.stdout
    _assert_fits(screen, tracker_store)
    rows = _rows(screen)
    expected = {
        "done": 4,
        "tried": TRIED,
        "failed": 3,
        "exhausted": 1,
        "aborted": 1,
        "untried": 3,
    }
    assert rows == {name: (n, f"{100 * n / 12:.2f}") for name, n in expected.items()}
    assert list(rows) == list(expected)  # in this order
    lines = screen.splitlines()
    name = str(tracker_store)
    assert lines[0] == (name if len(name) <= 80 else name[:79] + "…")
    bar = next(line for line in lines if "4/12" in line)
    assert bar.endswith(" 33.3% 4/12")
    assert "no job is writing to this store" in lines
    at = lines.index("most frequent recent errors:")
    errors = [line.split(None, 1) for line in lines[at + 1 :]]
    assert errors == [["3", "ValueError: boom"], ["1", "OSError: disk full"]]
    assert _files(tracker_store) == before


def test_status_json(tracker_store: Path) -> None:
    before = _files(tracker_store)
    done = tastypy_cmd("status", str(tracker_store), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1  # one frame, one line
    frame = json.loads(done.stdout)
    assert frame == {
        "total": 12,
        "done": 4,
        "tried": TRIED,
        "failed": 3,
        "exhausted": 1,
        "aborted": 1,
        "untried": 3,
        "errors": ERRORS,
        "rate": None,
        "eta_seconds": None,
        "writer": None,
        "writer_state": None,
    }
    assert _files(tracker_store) == before


def test_status_of_an_empty_tracker(tmp_path: Path) -> None:
    path = tmp_path / "empty.tracker"
    tastypy.Tracker(path).close()
    frame = json.loads(tastypy_cmd("status", str(path), "--json").stdout)
    assert _count_fields(frame) == dict.fromkeys(_count_fields(frame), 0)
    screen = tastypy_cmd("status", str(path))
    assert screen.returncode == 0, screen.stderr
    assert list(_rows(screen.stdout).values()) == [(0, "0.00")] * 6
    # --watch has nothing to wait for
    watched = tastypy_cmd("status", str(path), "--watch", "--json", timeout=WAIT)
    assert watched.returncode == 0
    assert len(watched.stdout.splitlines()) == 1


def test_status_fits_80_columns_with_long_errors_and_many_tasks(tmp_path: Path) -> None:
    path = tmp_path / "big.tracker"
    with tastypy.Tracker(path, max_tries=5) as tracker:
        tracker.add_many(f"t{i}" for i in range(20_000))
        for i in range(1_234):
            tracker.mark_done(f"t{i}")
        tracker.try_it("t19999")
        tracker["t19999"]["_errors"] = [
            {"type": "RuntimeError", "message": "a long message " * 20, "traceback": "", "at": ""}
        ]
    done = tastypy_cmd("status", str(path))
    assert done.returncode == 0, done.stderr
    _assert_fits(done.stdout, path)
    assert _rows(done.stdout)["done"] == (1_234, "6.17")
    untried = 20_000 - 1_234 - 1
    assert _rows(done.stdout)["untried"] == (untried, f"{100 * untried / 20_000:.2f}")
    assert "1,234/20,000" in done.stdout
    error = next(line for line in done.stdout.splitlines() if "RuntimeError" in line)
    assert len(error) == 80
    assert error.endswith("…")


def _on_a_terminal(args: list[str], **env: str) -> str:
    """Run ``tastypy ARGS`` with its stdout on an 80-column pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    output = b""
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "tastypy", *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=_env(**env),
        ) as proc:
            os.close(slave)
            slave = -1
            deadline = time.monotonic() + WAIT
            while True:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no end of output in {WAIT}s: {output!r}"
                ready, _, _ = select.select([master], [], [], remaining)
                if not ready:
                    continue
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            assert proc.wait(timeout=WAIT) == 0
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return output.decode().replace("\r\n", "\n")


def test_colour_only_on_a_terminal_without_no_color(tracker_store: Path) -> None:
    coloured = _on_a_terminal(["status", str(tracker_store)])
    assert "\x1b[" in coloured  # the check below would notice escapes
    plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    _assert_fits(plain, tracker_store)
    assert _rows(plain)["done"] == (4, "33.33")
    no_color = _on_a_terminal(["status", str(tracker_store)], NO_COLOR="1")
    _assert_fits(no_color, tracker_store)
    assert no_color == plain
    piped = tastypy_cmd("status", str(tracker_store))
    assert piped.stdout == plain


KILLED = """
import os, signal, sys
import tastypy

tracker = tastypy.Tracker(sys.argv[1])
assert tracker.try_it("task-04")  # tried once before: its second and last try
assert tracker.try_it("task-09")  # untried until now
assert tracker.try_it("task-new")  # not in the store: the try adds it
os.kill(os.getpid(), signal.SIGKILL)  # no sync: only tries.jsonl knows these tries
"""


def test_read_commands_show_the_tries_of_a_killed_writer(tracker_store: Path) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, str(tracker_store)],
        capture_output=True,
        encoding="utf-8",
        timeout=WAIT,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tracker_store / "tries.jsonl").stat().st_size > 0
    before = _files(tracker_store)
    tries = {"task-04": 2, "task-09": 1, "task-new": 1}

    for key, count in tries.items():
        pretty = tastypy_cmd("show", str(tracker_store), key)
        assert pretty.returncode == 0, pretty.stderr
        assert json.loads(pretty.stdout)["_tries"] == count, (key, pretty.stdout)
        compact = tastypy_cmd("show", str(tracker_store), key, "--json")
        assert json.loads(compact.stdout) == json.loads(pretty.stdout)
    assert json.loads(tastypy_cmd("show", str(tracker_store), "task-new").stdout) == {
        "_done": False,
        "_tries": 1,
    }
    summary = json.loads(tastypy_cmd("show", str(tracker_store), "--json").stdout)
    assert summary["kind"] == "tracker"
    assert summary["keys"] == len(KEYS) + 1  # task-new too

    exported = tastypy_cmd("export", str(tracker_store))
    assert exported.returncode == 0, exported.stderr
    records = json.loads(exported.stdout)
    assert list(records) == [*KEYS, "task-new"]
    assert {key: records[key]["_tries"] for key in tries} == tries
    assert records == _records(tracker_store)  # what the tracker itself sees
    lines = tastypy_cmd("export", str(tracker_store), "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [[k, v] for k, v in records.items()]

    failed = tastypy_cmd("list", str(tracker_store), "--state", "failed")
    assert failed.stdout.split() == ["task-05", "task-06", "task-09", "task-new"]
    exhausted = tastypy_cmd("list", str(tracker_store), "--state", "exhausted")
    assert exhausted.stdout.split() == ["task-04", "task-07"]
    assert _files(tracker_store) == before  # read commands changed nothing


def test_status_and_refusals_name_a_writer_whose_lock_file_was_deleted(
    tracker_store: Path,
) -> None:
    with Child(HOLD, str(tracker_store)) as writer:
        writer.expect("ready")
        (tracker_store / "lock").unlink()
        frame = json.loads(tastypy_cmd("status", str(tracker_store), "--json").stdout)
        assert frame["writer"] == writer.pid
        refused = tastypy_cmd("reset", str(tracker_store), "--all")
        _assert_one_line_error(refused, str(tracker_store), f"process {writer.pid} ")
        writer.send()
        writer.expect("closed")
        assert writer.finish() == 0, writer.stderr
    frame = json.loads(tastypy_cmd("status", str(tracker_store), "--json").stdout)
    assert frame["writer"] is None


def test_read_commands_work_while_a_writer_holds_the_store(tracker_store: Path) -> None:
    with Child(HOLD, str(tracker_store), "busy") as writer:
        writer.expect("ready")
        before = _files(tracker_store)
        assert json.loads((tracker_store / "lock").read_text())["pid"] == writer.pid

        frame = json.loads(tastypy_cmd("status", str(tracker_store), "--json").stdout)
        assert frame["writer"] == writer.pid
        # the logged try of task-09 counts; the unsynced mark_done does not
        assert _count_fields(frame) == {
            "total": 12,
            "done": 4,
            "tried": TRIED + 1,
            "failed": 4,
            "exhausted": 1,
            "aborted": 1,
            "untried": 2,
        }
        screen = tastypy_cmd("status", str(tracker_store))
        assert screen.returncode == 0, screen.stderr
        assert f"job running (pid {writer.pid})" in screen.stdout
        _assert_fits(screen.stdout, tracker_store)

        listed = tastypy_cmd("list", str(tracker_store), "--state", "failed")
        assert listed.stdout.split() == [*STATES["failed"], "task-09"]
        exported = tastypy_cmd("export", str(tracker_store))
        assert exported.returncode == 0, exported.stderr
        assert list(json.loads(exported.stdout)) == KEYS
        assert _files(tracker_store) == before

        # a writing command is refused, with the holder named
        refused = tastypy_cmd("reset", str(tracker_store), "--all")
        _assert_one_line_error(refused, str(tracker_store), str(writer.pid))
        assert _files(tracker_store) == before
        writer.send()
        writer.expect("closed")
        assert writer.finish() == 0


FOLLOW = """
import sys
import time
import tastypy

n = int(sys.argv[2])
with tastypy.Tracker(sys.argv[1]) as tracker:
    tracker.add_many(f"task-{i:02d}" for i in range(n))
    tracker.sync()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(n):
        time.sleep(0.1)
        tracker.mark_done(f"task-{i:02d}")
        tracker.sync()
print("closed", flush=True)
"""


def test_status_watch_follows_a_live_writer_and_stops_when_all_is_done(tmp_path: Path) -> None:
    path = tmp_path / "live.tracker"
    n = 40
    with Child(FOLLOW, str(path), str(n)) as writer:
        writer.expect("ready")
        with Command("status", str(path), "--watch", "--json") as watcher:
            first = json.loads(watcher.readline())
            assert first["total"] == n
            assert first["done"] == 0
            assert first["writer"] == writer.pid
            writer.send()  # start marking tasks done
            assert watcher.finish(timeout=WAIT) == 0, watcher.stderr  # ends by itself
            frames = [first, *(json.loads(line) for line in watcher.stdout.splitlines())]
        writer.expect("closed")
        assert writer.finish() == 0
    dones = [frame["done"] for frame in frames]
    assert dones == sorted(dones)
    assert len(set(dones)) >= 3, dones  # several frames, progress between them
    assert dones[-1] == n
    assert dones.count(n) == 1  # it stopped at the first frame with everything done
    assert all(frame["total"] == n for frame in frames)
    running = [frame for frame in frames[1:-1] if frame["writer"] == writer.pid]
    assert running, frames
    assert any(frame["rate"] and frame["rate"] > 0 for frame in running), frames
    assert any(frame["eta_seconds"] is not None for frame in running), frames
    assert not watcher.stderr


OVERLAPPING = """
import sys
import tastypy

with tastypy.Tracker(sys.argv[1], max_tries=1) as tracker:
    tracker.add_many(["a", "b"])
    tracker.try_it("a")
    tracker.abort("a")  # exhausted and aborted
"""


@pytest.mark.parametrize("store", ["untried", "aborted after max_tries"])
def test_status_watch_keeps_going_until_ctrl_c(tmp_path: Path, store: str) -> None:
    """While a job writes and a task is left to do, --watch redraws until Ctrl-C."""
    path = tmp_path / "w.tracker"
    if store == "untried":
        with tastypy.Tracker(path) as tracker:
            tracker.add_many(["a", "b"])
    else:
        made = subprocess.run(
            [sys.executable, "-c", OVERLAPPING, str(path)],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert made.returncode == 0, made.stderr
    with Child(HOLD, str(path)) as writer:
        writer.expect("ready")
        with Command("status", str(path), "--watch", "--json") as watcher:
            first = json.loads(watcher.readline())
            assert first["total"] == 2
            assert first["writer"] == writer.pid
            # "b" was never tried: a second frame must come, a second later
            second = json.loads(watcher.readline(timeout=10))
            assert _count_fields(second) == _count_fields(first)
            watcher.signal(signal.SIGINT)
            assert watcher.finish() == 0
            assert "Traceback" not in watcher.stderr
        writer.send()
        assert writer.finish() == 0


def test_status_and_list_file_every_task_under_one_state(tmp_path: Path) -> None:
    """The status counts agree with ``list``, also for tasks with several flags."""
    path = tmp_path / "flags.tracker"
    with tastypy.Tracker(path, max_tries=1) as tracker:
        tracker.add_many(["done-aborted", "exhausted-aborted", "exhausted", "untried"])
        for key in ("done-aborted", "exhausted-aborted", "exhausted"):
            tracker.try_it(key)
        tracker.mark_done("done-aborted")
        tracker.abort("done-aborted")
        tracker.abort("exhausted-aborted")
    frame = json.loads(tastypy_cmd("status", str(path), "--json").stdout)
    listed = {
        state: json.loads(tastypy_cmd("list", str(path), "--state", state, "--json").stdout)
        for state in ("done", "failed", "exhausted", "aborted", "untried")
    }
    assert {state: len(keys) for state, keys in listed.items()} == {
        state: frame[state] for state in listed
    }, (listed, frame)
    assert sum(frame[state] for state in listed) == frame["total"]


# -- list -------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", sorted(STATES))
def test_list_each_state_in_order(tracker_store: Path, state: str) -> None:
    before = _files(tracker_store)
    done = tastypy_cmd("list", str(tracker_store), "--state", state)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == STATES[state]
    _assert_fits(done.stdout)
    as_json = tastypy_cmd("list", str(tracker_store), "--state", state, "--json")
    assert json.loads(as_json.stdout) == STATES[state]
    limited = tastypy_cmd("list", str(tracker_store), "--state", state, "--limit", "2")
    assert limited.stdout.splitlines() == STATES[state][:2]
    limited_json = tastypy_cmd(
        "list", str(tracker_store), "--state", state, "--limit", "1", "--json"
    )
    assert json.loads(limited_json.stdout) == STATES[state][:1]
    assert _files(tracker_store) == before


def test_list_counts_match_status(tracker_store: Path) -> None:
    frame = json.loads(tastypy_cmd("status", str(tracker_store), "--json").stdout)
    for state in ("done", "failed", "exhausted", "aborted", "untried"):
        listed = tastypy_cmd("list", str(tracker_store), "--state", state, "--json")
        assert len(json.loads(listed.stdout)) == frame[state], state


def test_list_bad_options(tracker_store: Path) -> None:
    assert tastypy_cmd("list", str(tracker_store)).returncode == 2  # --state is required
    assert tastypy_cmd("list", str(tracker_store), "--state", "lost").returncode == 2
    negative = tastypy_cmd("list", str(tracker_store), "--state", "done", "--limit", "-1")
    assert negative.returncode == 2
    assert "Traceback" not in negative.stderr
    zero = tastypy_cmd("list", str(tracker_store), "--state", "done", "--limit", "0")
    assert zero.returncode == 0
    assert zero.stdout == ""


# -- reset ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "keys"),
    [
        (["task-00", "task-08", "task-07"], ["task-00", "task-08", "task-07"]),
        (["--failed"], STATES["failed"]),
        (["--exhausted"], STATES["exhausted"]),
        (["--all"], KEYS),
    ],
)
def test_reset(tracker_store: Path, how: list[str], keys: list[str]) -> None:
    before = _records(tracker_store)
    done = tastypy_cmd("reset", str(tracker_store), *how)
    assert done.returncode == 0, done.stderr
    noun = "task" if len(keys) == 1 else "tasks"
    assert done.stdout == f"{tracker_store}: reset {len(keys)} {noun}\n"
    after = _records(tracker_store)
    assert list(after) == KEYS
    for key in KEYS:
        if key in keys:
            assert after[key]["_done"] is False, key
            assert after[key]["_tries"] == 0, key
            assert not after[key].get("_aborted"), key
        else:
            assert after[key] == before[key], key
    frame = json.loads(tastypy_cmd("status", str(tracker_store), "--json").stdout)
    untried = [k for k in KEYS if k in keys or k in STATES["untried"]]
    assert frame["untried"] == len(untried)
    listed = tastypy_cmd("list", str(tracker_store), "--state", "untried")
    assert listed.stdout.splitlines() == untried


def test_reset_lets_a_rerun_try_again(tracker_store: Path) -> None:
    assert tastypy_cmd("reset", str(tracker_store), "--exhausted").returncode == 0
    with tastypy.Tracker(tracker_store) as tracker:
        assert list(tracker.todo_keys()) == [*STATES["failed"][:3], "task-07", *STATES["untried"]]
        assert tracker.try_it("task-07")


def test_reset_an_unknown_key_resets_nothing(tracker_store: Path) -> None:
    before = _files(tracker_store)
    done = tastypy_cmd("reset", str(tracker_store), "task-00", "nope", "task-04")
    _assert_one_line_error(done, "'nope'")
    assert _files(tracker_store) == before


@pytest.mark.parametrize(
    "how", [[], ["task-00", "--failed"], ["--failed", "--all"], ["--exhausted", "--all"]]
)
def test_reset_needs_exactly_one_selection(tracker_store: Path, how: list[str]) -> None:
    before = _files(tracker_store)
    done = tastypy_cmd("reset", str(tracker_store), *how)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert _files(tracker_store) == before


# -- export and import ------------------------------------------------------------------------

DATA: list[tuple[str, Any]] = [
    ("zeta", 1),
    ("alpha", 1.0),
    ("", "empty key"),
    ("ünï cödé ✓", {"nested": {"list": [1, 2.5, None, True, False, "x"]}}),
    ('quote " and \\ and\nnewline', ["a", {"b": []}]),
    ("big", 2**63 - 1),
    ("negative", -(2**63)),
    ("float", 0.1),
    ("tiny", 1e-300),
    ("none", None),
    ("false", False),
    ("text", "line1\nline2\ttab \u2028 😀"),
    ("empty", {}),
    ("1", 1),
]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
@pytest.mark.parametrize("to", ["file", "stdout"])
def test_export_import_round_trip(tmp_path: Path, fmt: str, to: str) -> None:
    source = tmp_path / "source.pod"
    with tastypy.POD(source) as pod:
        pod.update(DATA)
    before = _files(source)
    out = tmp_path / f"out.{fmt}"
    if to == "file":
        done = tastypy_cmd("export", str(source), "-o", str(out), "--format", fmt)
        assert done.stdout == ""
    else:
        done = tastypy_cmd("export", str(source), "--format", fmt)
        out.write_text(done.stdout, encoding="utf-8")
    assert done.returncode == 0, done.stderr
    assert _files(source) == before
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        assert list(json.loads(text).items()) == DATA
    else:
        # split at "\n" only: "\u2028" in a value is written as is, and is no line break
        assert text.endswith("\n")
        assert [tuple(json.loads(line)) for line in text.split("\n")[:-1]] == DATA
    target = tmp_path / "fresh" / "target.pod"
    loaded = tastypy_cmd("import", str(target), str(out))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == f"{target}: imported {len(DATA)} keys\n"
    assert _exact(_items(target)) == _exact(DATA)


def test_export_a_tracker_and_import_it_into_another(tracker_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "jobs.jsonl"
    done = tastypy_cmd("export", str(tracker_store), "--format", "jsonl", "-o", str(out))
    assert done.returncode == 0, done.stderr
    target = tmp_path / "copy.tracker"
    tastypy.Tracker(target, max_tries=2).close()
    loaded = tastypy_cmd("import", str(target), str(out))
    assert loaded.returncode == 0, loaded.stderr
    assert _exact(list(_records(target).items())) == _exact(list(_records(tracker_store).items()))
    assert json.loads(tastypy_cmd("status", str(target), "--json").stdout) == json.loads(
        tastypy_cmd("status", str(tracker_store), "--json").stdout
    )


def test_export_of_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.pod"
    tastypy.POD(path).close()
    assert json.loads(tastypy_cmd("export", str(path)).stdout) == {}
    assert tastypy_cmd("export", str(path), "--format", "jsonl").stdout == ""
    (tmp_path / "empty.jsonl").write_text("")
    assert (
        tastypy_cmd("import", str(tmp_path / "new.pod"), str(tmp_path / "empty.jsonl")).returncode
        == 0
    )
    assert _items(tmp_path / "new.pod") == []


def test_import_into_an_existing_store_in_order(pod_store: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('["c", 3]\n\n["a", 10]\n["d", {"e": [4]}]\n')
    done = tastypy_cmd("import", str(pod_store), str(source))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{pod_store}: imported 3 keys\n"
    assert _items(pod_store) == [("a", 10), ("b", [1, 2]), ("c", 3), ("d", {"e": [4]})]


def test_import_into_a_tracker_takes_records(tmp_path: Path) -> None:
    path = tmp_path / "t.tracker"
    tastypy.Tracker(path).close()
    source = tmp_path / "in.json"
    source.write_text('{"x": {"url": "u1"}, "y": {"_done": true, "_tries": 1}}')
    done = tastypy_cmd("import", str(path), str(source))
    assert done.returncode == 0, done.stderr
    assert _records(path) == {
        "x": {"url": "u1", "_done": False, "_tries": 0},
        "y": {"_done": True, "_tries": 1},
    }
    frame = json.loads(tastypy_cmd("status", str(path), "--json").stdout)
    assert (frame["total"], frame["done"], frame["untried"]) == (2, 1, 1)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
@pytest.mark.parametrize("size", [3, 1500])  # 1500: more than a sync's worth (sync_at 1000)
def test_import_of_non_records_into_a_tracker_imports_nothing(
    tracker_store: Path, tmp_path: Path, fmt: str, size: int
) -> None:
    items: list[tuple[str, Any]] = [(f"new-{i}", {"n": i}) for i in range(size)]
    items.append(("new-bad", 42))
    source = tmp_path / f"in.{fmt}"
    if fmt == "json":
        source.write_text(json.dumps(dict(items), indent=1))
    else:
        source.write_text("".join(json.dumps(item) + "\n" for item in items))
    before = _files(tracker_store)
    done = tastypy_cmd("import", str(tracker_store), str(source))
    _assert_one_line_error(done, str(source))
    assert _files(tracker_store) == before
    assert list(_records(tracker_store)) == KEYS


MALFORMED = {
    "jsonl, bad JSON on line 3": (b'["a", 1]\n["b", 2]\n["c", 3\n["d", 4]\n', 3),
    "jsonl, not a pair on line 2": (b'["a", 1]\n["b", 2, 3]\n', 2),
    "jsonl, key not a string on line 4": (b'["a", 1]\n\n["b", 2]\n[3, 3]\n', 4),
    "jsonl, an object on line 2": (b'["a", 1]\n{"b": 2}\n', 2),
    "jsonl, not UTF-8 on line 3": (b'["a", 1]\n["b", 2]\n["c", "caf\xe9"]\n', 3),
    "json, bad JSON on line 3": (b'{\n  "a": 1,\n  "b" 2\n}\n', 3),
    "json, cut short": (b'{\n  "a": 1,\n  "b": [2,', 3),
    "json, not UTF-8 on line 3": (b'{\n  "a": 1,\n  "b": "caf\xe9"\n}\n', 3),
    "json, a list": (b'[["a", 1]]\n', 1),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_import_names_the_line_and_imports_nothing(
    pod_store: Path, tmp_path: Path, case: str
) -> None:
    content, line = MALFORMED[case]
    source = tmp_path / "in.data"
    source.write_bytes(content)
    before = _files(pod_store)
    done = tastypy_cmd("import", str(pod_store), str(source))
    _assert_one_line_error(done, f"{source}:{line}:")
    assert _files(pod_store) == before
    fresh = tmp_path / "fresh.pod"
    again = tastypy_cmd("import", str(fresh), str(source))
    _assert_one_line_error(again, f"{source}:{line}:")
    assert not fresh.exists() or _items(fresh) == []


@pytest.mark.parametrize(
    "content",
    [b'{"a": 1, "b": NaN}', b'{"a": 1, "b": 1e999}', b'{"a": 1, "\\ud800": 2}'],
    ids=["NaN", "infinity", "lone surrogate key"],
)
def test_import_of_what_json_cannot_hold_imports_nothing(
    pod_store: Path, tmp_path: Path, content: bytes
) -> None:
    source = tmp_path / "in.json"
    source.write_bytes(content)
    before = _files(pod_store)
    done = tastypy_cmd("import", str(pod_store), str(source))
    _assert_one_line_error(done, str(source))
    assert _files(pod_store) == before


def test_import_bad_file_and_bad_store(pod_store: Path, tmp_path: Path) -> None:
    target = tmp_path / "new.pod"
    missing = tastypy_cmd("import", str(target), str(tmp_path / "missing.json"))
    _assert_one_line_error(missing, "missing.json")
    assert not target.exists()
    folder = tastypy_cmd("import", str(target), str(tmp_path))
    _assert_one_line_error(folder, str(tmp_path))
    assert not target.exists()
    source = tmp_path / "in.jsonl"
    source.write_text('["a", 1]\n')
    a_file = tastypy_cmd("import", str(source), str(source))
    _assert_one_line_error(a_file, str(source))
    assert source.read_text() == '["a", 1]\n'
    with tastypy.POD(pod_store):
        locked = tastypy_cmd("import", str(pod_store), str(source))
        _assert_one_line_error(locked, str(pod_store))


def test_export_to_a_file_that_cannot_be_written(pod_store: Path, tmp_path: Path) -> None:
    before = _files(pod_store)
    done = tastypy_cmd("export", str(pod_store), "-o", str(tmp_path / "no" / "such" / "x.json"))
    _assert_one_line_error(done, "x.json")
    assert _files(pod_store) == before


# -- bad stores -----------------------------------------------------------------------------

READ_AND_RESET = [
    ["status"],
    ["status", "--json"],
    ["status", "--watch"],
    ["list", "--state", "todo"],
    ["reset", "--all"],
    ["reset", "task-00"],
    ["export"],
    ["export", "--format", "jsonl"],
]


@pytest.mark.parametrize("command", READ_AND_RESET, ids=" ".join)
def test_bad_paths_get_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    name, *rest = command
    missing = tastypy_cmd(name, str(tmp_path / "missing"), *rest)
    _assert_one_line_error(missing, "no such file")
    assert not (tmp_path / "missing").exists()
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    stranger = tastypy_cmd(name, str(folder), *rest)
    _assert_one_line_error(stranger, "not a tastypy store")
    assert _files(folder) == {str(folder / "notes.txt"): b"mine"}
    a_file = tastypy_cmd(name, str(folder / "notes.txt"), *rest)
    _assert_one_line_error(a_file, "not a tastypy store")
    assert _files(folder) == {str(folder / "notes.txt"): b"mine"}


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["status", "--watch", "--json"],
        ["list", "--state", "done"],
        ["reset", "--all"],
        ["reset", "a"],
        ["demo", "--tasks", "5"],
    ],
    ids=" ".join,
)
def test_tracker_commands_refuse_a_plain_pod(pod_store: Path, command: list[str]) -> None:
    name, *rest = command
    before = _files(pod_store)
    done = tastypy_cmd(name, str(pod_store), *rest)
    _assert_one_line_error(done, str(pod_store), "not a tracker")
    assert _files(pod_store) == before


@pytest.mark.parametrize("command", [["import", "FILE"], ["demo", "--tasks", "5"]], ids=" ".join)
def test_writing_commands_leave_a_folder_that_is_not_a_store_alone(
    tmp_path: Path, command: list[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('["a", {"x": 1}]\n')
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    name, *rest = command
    rest = [str(source) if arg == "FILE" else arg for arg in rest]
    done = tastypy_cmd(name, str(folder), *rest)
    _assert_one_line_error(done, str(folder), "not a tastypy store")
    assert _files(folder) == {str(folder / "notes.txt"): b"mine"}


@pytest.mark.parametrize("command", ["status", "list", "reset", "export", "import", "demo"])
def test_help_for_every_tracker_command(command: str) -> None:
    done = tastypy_cmd(command, "--help")
    assert done.returncode == 0
    assert "usage: tastypy" in done.stdout
    _assert_fits(done.stdout)


# -- demo -----------------------------------------------------------------------------------


def _done_so_far(path: Path) -> int:
    """Tasks done in the store as last synced (0 while it is being made)."""
    if not (path / "manifest.json").exists():
        return 0
    try:
        with tastypy.Tracker(path, readonly=True) as tracker:
            return tracker.num_done()
    except tastypy.TastypyError:  # caught half made
        return 0


_THIS_RUN = re.compile(r"^this run: ([\d,]+) done, ([\d,]+) failed attempts, ([\d,]+) skipped")


def test_demo_stops_on_ctrl_c_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "my demo" / "demo.tracker"  # a space: the printed command quotes it
    tasks = 300
    options = ["--tasks", str(tasks), "--workers", "2"]
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with (
        out.open("w") as stdout,
        err.open("w") as stderr,
        subprocess.Popen(
            [sys.executable, "-m", "tastypy", "demo", str(path), *options],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=_env(),
            start_new_session=True,  # its own process group, as a terminal's job
        ) as demo,
    ):
        deadline = time.monotonic() + WAIT
        while _done_so_far(path) == 0:
            assert demo.poll() is None, f"the demo ended first: {out.read_text()}"
            assert time.monotonic() < deadline, "the demo saved no done task in time"
            time.sleep(0.02)
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: to the demo and its workers
        status = demo.wait(timeout=WAIT)
    stopped = out.read_text()
    _assert_fits(stopped, path)
    assert status == 130, (stopped, err.read_text())
    assert "Traceback" not in err.read_text()
    saved = _records(path)
    assert list(saved) == [f"task-{i:05d}" for i in range(tasks)]
    done_first = sum(1 for record in saved.values() if record["_done"])
    assert 0 < done_first < tasks
    assert f"stopped: {done_first:,} tasks done and saved" in stopped
    assert all("result" in record for record in saved.values() if record["_done"])
    assert all(record["_tries"] <= 1 for record in saved.values())

    # again, until every task is done or given up on: each run tries each task
    # at most once, and a task gets 3 tries, so 3 more runs are enough
    runs = []
    for _ in range(3):
        again = tastypy_cmd("demo", str(path), *options, timeout=60)
        assert again.returncode == 0, again.stderr
        assert "Traceback" not in again.stderr
        _assert_fits(again.stdout, path)
        runs.append(again.stdout)
        if all(r["_done"] or r["_tries"] >= 3 for r in _records(path).values()):
            break
    lines = runs[0].splitlines()
    assert lines[0] == f"{path}: {done_first:,} of {tasks} tasks already done"
    this_run = next(m for m in map(_THIS_RUN.match, lines) if m)
    assert int(this_run[3].replace(",", "")) == done_first  # skipped: done before
    assert all("run it again" in run for run in runs[:-1])

    final = _records(path)
    assert len(final) == tasks
    assert all(record["_done"] or record["_tries"] >= 3 for record in final.values())
    last = runs[-1].splitlines()[-1]
    prefix = "look at the result: "
    assert last.startswith(prefix)
    command = shlex.split(last[len(prefix) :])
    assert command[-2:] == ["status", str(path)]
    shown = subprocess.run(
        command, capture_output=True, encoding="utf-8", timeout=60, check=False, env=_env()
    )
    assert shown.returncode == 0, shown.stderr
    done_final = sum(1 for record in final.values() if record["_done"])
    assert _rows(shown.stdout)["done"][0] == done_final
    assert _rows(shown.stdout)["exhausted"][0] == tasks - done_final


def test_demo_says_run_it_again_only_if_a_task_can_be_retried(tmp_path: Path) -> None:
    path = tmp_path / "demo.tracker"
    with tastypy.Tracker(path, max_tries=3) as tracker:
        tracker.add_many(f"task-{i:05d}" for i in range(5))
        for i in range(1, 5):
            tracker.mark_done(f"task-{i:05d}")
        for _ in range(3):
            tracker.try_it("task-00000")  # given up on: tried 3 times, not done
    before = _records(path)
    done = tastypy_cmd("demo", str(path), "--tasks", "5", "--workers", "1", timeout=60)
    assert done.returncode == 0, done.stderr
    assert _records(path) == before  # nothing was left to try
    lines = done.stdout.splitlines()
    assert lines[0] == f"{path}: 4 of 5 tasks already done"
    assert lines[1].startswith("this run: 0 done, 0 failed attempts, 4 skipped")
    assert lines[1].endswith(", 1 given up")
    assert lines[-1].endswith(f" status {shlex.quote(str(path))}")
    assert not any("run it again" in line for line in lines), done.stdout


def test_demo_bad_options(tmp_path: Path) -> None:
    zero = tastypy_cmd("demo", str(tmp_path / "d.tracker"), "--workers", "0")
    _assert_one_line_error(zero, "--workers")
    assert tastypy_cmd("demo", str(tmp_path / "d.tracker"), "--tasks", "x").returncode == 2
