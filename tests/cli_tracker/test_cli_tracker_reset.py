"""``tastypy reset``: which tasks it resets, and what it refuses.

The command runs as a real subprocess (``python -m tastypy``): see _tracker_commands.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tastypy

from _tracker_commands import (
    KEYS,
    STATES,
    _assert_one_line_error,
    _files,
    _records,
    tastypy_cmd,
)

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
