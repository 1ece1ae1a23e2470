"""Changing a store by hand: ``tastypy set`` / ``tastypy del``, and what an editor does.

``set`` and ``del`` are the supported way: one atomic sync each, through the
POD's own checks. Editing a file in a text editor (even to valid JSON)
breaks its checksum: ``verify`` must then say which file and lines, and
``repair`` must keep the rest (and, when asked, the edit).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy import POD
from tastypy.cli import main
from tastypy.cli._errors import EXIT_OS

from _smallfs import fill, remount_readonly, small_filesystem
from _subproc import Child


def _files(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _items(path: Path) -> list[tuple[str, Any]]:
    with POD(path, readonly=True) as pod:
        return list(pod.items())


def _chunk_with(path: Path, key: str) -> Path:
    """The data file holding *key*."""
    mark = f'["{key}",'.encode()
    return next(p for p in (path / "chunks").iterdir() if mark in p.read_bytes())


def _commits(path: Path) -> int:
    journal = next(path.glob("journal-*"))
    return journal.read_bytes().count(b'{"commit":')


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "my.pod"
    with POD(path, file_size=2) as pod:
        for i in range(5):
            pod[f"k{i}"] = {"i": i}
    with POD(path) as pod:  # leave a journal with one commit on top of the data files
        pod["k0"] = "zero"
    return path


def _one_line_error(capsys: Any) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tastypy: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


# -- set ------------------------------------------------------------------------------


def test_set_changes_one_value_in_one_sync(store: Path, capsys: Any) -> None:
    commits = _commits(store)
    assert main(["set", str(store), "k3", '{"i": 33, "tags": ["x"]}']) == 0
    assert "set 'k3'" in capsys.readouterr().out
    assert dict(_items(store))["k3"] == {"i": 33, "tags": ["x"]}
    assert [k for k, _ in _items(store)] == ["k0", "k1", "k2", "k3", "k4"]  # kept its place
    assert _commits(store) in (commits + 1, 0)  # one commit (or folded in at close)
    assert tastypy.verify(store).ok
    assert main(["set", str(store), "new", '"text"']) == 0
    assert _items(store)[-1] == ("new", "text")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("{not json", "not valid JSON"),
        ("text", "not valid JSON"),  # a string needs its quotes
        ("NaN", "NaN"),
        ("[1e400]", "infinity"),
        ("18446744073709551616", "64"),  # JSON allows it; tastypy cannot store it exactly
    ],
)
def test_set_refuses_what_the_pod_would_refuse(
    store: Path, capsys: Any, value: str, why: str
) -> None:
    before = _files(store)
    assert main(["set", str(store), "k1", value]) == 2
    assert why in _one_line_error(capsys)
    assert {k: v for k, v in _files(store).items() if not k.endswith("lock")} == {
        k: v for k, v in before.items() if not k.endswith("lock")
    }


def test_set_on_a_missing_store_creates_nothing(tmp_path: Path, capsys: Any) -> None:
    assert main(["set", str(tmp_path / "typo.pod"), "k", "1"]) == 2
    assert "no such file or directory" in _one_line_error(capsys)
    assert not (tmp_path / "typo.pod").exists()


def test_set_on_a_tracker_takes_only_task_records(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "jobs.tracker"
    with tastypy.Tracker(path, max_tries=3) as tracker:
        tracker.add_many(["a", "b"])
    assert main(["set", str(path), "a", "5"]) == 2
    assert "tastypy reset" in _one_line_error(capsys)
    assert main(["set", str(path), "a", '{"_done": "yes"}']) == 2
    assert "_done must be true or false" in _one_line_error(capsys)
    assert main(["set", str(path), "a", '{"_tries": -1}']) == 2
    assert "_tries must be a whole number" in _one_line_error(capsys)
    assert main(["set", str(path), "a", '{"_done": true, "note": "by hand"}']) == 0
    assert main(["set", str(path), "c", '{"note": "new"}']) == 0
    with tastypy.Tracker(path, readonly=True) as tracker:
        assert tracker["a"] == {"_done": True, "_tries": 0, "note": "by hand"}
        assert tracker["c"] == {"_done": False, "_tries": 0, "note": "new"}
        assert tracker.num_done() == 1 and tracker.max_tries == 3
    assert main(["del", str(path), "a"]) == 0
    with tastypy.Tracker(path, readonly=True) as tracker:
        assert list(tracker) == ["b", "c"] and tracker.num_done() == 0


# -- del ------------------------------------------------------------------------------


def test_del_removes_every_key_in_one_sync(store: Path, capsys: Any) -> None:
    commits = _commits(store)
    assert main(["del", str(store), "k1", "k3"]) == 0
    assert "deleted 2 keys" in capsys.readouterr().out
    assert [k for k, _ in _items(store)] == ["k0", "k2", "k4"]
    assert _commits(store) in (commits + 1, 0)


def test_del_of_a_missing_key_deletes_nothing(store: Path, capsys: Any) -> None:
    before = _items(store)
    assert main(["del", str(store), "k1", "nope", "k3"]) == 2
    error = _one_line_error(capsys)
    assert "'nope'" in error and "nothing was deleted" in error
    assert _items(store) == before


# -- errors: locked, damaged, full disk, read-only -----------------------------------


def test_a_locked_store_is_one_line(store: Path) -> None:
    holder = """
        import sys, tastypy
        pod = tastypy.POD(sys.argv[1])
        print("ready", flush=True)
        sys.stdin.readline()
    """
    with Child(holder, str(store)) as child:
        child.expect("ready")
        for command in (["set", str(store), "k1", "1"], ["del", str(store), "k1"]):
            done = subprocess.run(
                [sys.executable, "-m", "tastypy", *command, "--timeout", "0.2"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 2
            assert done.stderr.count("\n") == 1 and "open for writing by" in done.stderr
            assert "after waiting 0.2s" in done.stderr
    assert dict(_items(store))["k1"] == {"i": 1}


def test_a_damaged_store_points_to_repair(store: Path, capsys: Any) -> None:
    chunk = _chunk_with(store, "k1")
    chunk.write_bytes(chunk.read_bytes().replace(b'{"i":1}', b'{"i":2}'))
    assert main(["set", str(store), "k1", "1"]) == 2
    assert "tastypy repair" in _one_line_error(capsys)


def test_full_disk_and_read_only_are_one_line(capsys: Any) -> None:
    with small_filesystem(1 << 20) as root:
        path = root / "s.pod"
        with POD(path) as pod:
            pod["a"] = 1
        before = _items(path)
        filler = fill(root)
        assert main(["set", str(path), "a", '"' + "x" * 20000 + '"']) == EXIT_OS
        error = _one_line_error(capsys)
        assert str(path) in error and "No space left on device" in error
        assert _items(path) == before
        filler.unlink()
        remount_readonly(root)
        assert main(["del", str(path), "a"]) == EXIT_OS
        error = _one_line_error(capsys)
        assert str(path) in error and "Read-only file system" in error
        assert _items(path) == before


# -- edits in a text editor ----------------------------------------------------------


def test_a_hand_edit_is_named_and_repair_can_keep_it(store: Path) -> None:
    chunk = _chunk_with(store, "k3")  # k2, k3
    chunk.write_text(chunk.read_text().replace('{"i":3}', '{"i":3,"fixed":true}'))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tastypy", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    checked = run("verify", str(store))
    assert checked.returncode == 1
    assert "3 records intact, 2 records lost" in checked.stdout
    assert f"chunks/{chunk.name}:2 " in checked.stdout  # named relative to the store
    assert f"{chunk.name}:2 'k3'" in checked.stdout

    plain = run("repair", str(store))
    assert plain.returncode == 1  # k2 and k3 cannot be checked: not saved
    assert "--accept-edits" in plain.stdout
    assert f"{chunk.name}:1 'k2'" in plain.stdout

    kept = run("repair", str(store), "-o", str(store.with_name("kept.pod")), "--accept-edits")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "accepted unchecked" in kept.stdout
    assert dict(_items(store.with_name("kept.pod")))["k3"] == {"i": 3, "fixed": True}
    assert len(_items(store.with_name("kept.pod"))) == 5
