"""The ``tastypy`` command, run as a real subprocess (``python -m tastypy``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tastypy


def tastypy_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tastypy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _files(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def tracker_store(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.tracker"
    with tastypy.Tracker(path, max_tries=3) as tracker:
        tracker.add_many(f"task-{i}" for i in range(5))
        tracker.try_it("task-1")
        tracker.mark_done("task-1")
        tracker["task-1"]["result"] = {"pages": [1, 2], "title": "ünï"}
    return path


def test_show_describes_the_store_and_changes_nothing(tracker_store: Path) -> None:
    before = _files(tracker_store)
    done = tastypy_cmd("show", str(tracker_store))
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert lines["kind"].strip() == "tracker"
    assert lines["keys"].strip() == "5"
    assert lines["max_tries"].strip() == "3"
    assert lines["format_version"].strip() == "1"
    assert "UTC" in lines["last_sync"]
    # 80 columns, but for the path itself, which is as long as it is
    assert all(len(line) <= 80 for line in done.stdout.splitlines()[1:])
    as_json = json.loads(tastypy_cmd("show", str(tracker_store), "--json").stdout)
    assert as_json["keys"] == 5
    assert as_json["gzipped"] is False
    assert _files(tracker_store) == before


def test_show_key_pretty_prints_the_value(tracker_store: Path) -> None:
    done = tastypy_cmd("show", str(tracker_store), "task-1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "_done": True,
        "_tries": 1,
        "result": {"pages": [1, 2], "title": "ünï"},
    }
    assert "\n  " in done.stdout  # indented for a person
    compact = tastypy_cmd("show", str(tracker_store), "task-1", "--json")
    assert "\n" not in compact.stdout.strip()


def test_keys_in_order_with_a_limit(tracker_store: Path) -> None:
    assert tastypy_cmd("keys", str(tracker_store)).stdout.split() == [
        f"task-{i}" for i in range(5)
    ]
    assert tastypy_cmd("keys", str(tracker_store), "--limit", "2").stdout.split() == [
        "task-0",
        "task-1",
    ]


def test_read_commands_work_while_a_writer_holds_the_store(tracker_store: Path) -> None:
    with tastypy.Tracker(tracker_store) as writer:
        writer["task-0"]["note"] = "unsynced"
        assert tastypy_cmd("keys", str(tracker_store)).returncode == 0
        shown = json.loads(tastypy_cmd("show", str(tracker_store), "task-0").stdout)
        assert "note" not in shown  # the last sync, not the writer's memory
        assert tastypy_cmd("verify", str(tracker_store)).returncode == 0
        locked = tastypy_cmd("compact", str(tracker_store))
        assert locked.returncode == 2
        assert str(tracker_store) in locked.stderr
        assert "process" in locked.stderr
        assert "Traceback" not in locked.stderr


def test_verify_reports_damage_with_exit_1(tracker_store: Path) -> None:
    assert tastypy_cmd("verify", str(tracker_store)).returncode == 0
    chunk = next((tracker_store / "chunks").iterdir())
    data = bytearray(chunk.read_bytes())
    data[5] ^= 1
    chunk.write_bytes(bytes(data))
    done = tastypy_cmd("verify", str(tracker_store))
    assert done.returncode == 1
    assert chunk.name in done.stdout
    assert "DAMAGED" in done.stdout


def test_compact_folds_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "s.pod"
    with tastypy.POD(path) as pod:
        pod["a"] = 1
    pod = tastypy.POD(path)
    pod["b"] = 2
    pod.sync()
    journal = next(path.glob("journal-*"))
    assert journal.stat().st_size > 0
    pod._storage.close()  # type: ignore[union-attr]  # let go without compacting
    pod._closed = True
    done = tastypy_cmd("compact", str(path))
    assert done.returncode == 0, done.stderr
    assert all(p.stat().st_size == 0 for p in path.glob("journal-*"))
    with tastypy.POD(path, readonly=True) as again:
        assert list(again.items()) == [("a", 1), ("b", 2)]


@pytest.mark.parametrize("command", ["show", "keys", "verify", "compact"])
def test_bad_paths_get_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    missing = tastypy_cmd(command, str(tmp_path / "missing"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1
    assert "no such file" in missing.stderr
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("mine")
    stranger = tastypy_cmd(command, str(tmp_path / "plain"))
    assert stranger.returncode == 2
    assert "not a tastypy store" in stranger.stderr
    assert stranger.stderr.count("\n") == 1
    assert (tmp_path / "plain" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["notes.txt"]


def test_unknown_key_and_bad_options(tracker_store: Path) -> None:
    unknown = tastypy_cmd("show", str(tracker_store), "nope")
    assert unknown.returncode == 2
    assert "no key 'nope'" in unknown.stderr
    assert tastypy_cmd("keys", str(tracker_store), "--limit", "-3").returncode == 2
    assert tastypy_cmd("frobnicate").returncode == 2


@pytest.mark.parametrize("command", [[], ["show"], ["keys"], ["verify"], ["compact"]])
def test_help_for_every_command(command: list[str]) -> None:
    done = tastypy_cmd(*command, "--help")
    assert done.returncode == 0
    assert "usage: tastypy" in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines())
