"""Regressions from a hostile review of the library (run(), records, logging)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tastypy


def test_a_tries_log_warning_reaches_stderr_without_logging_configured(tmp_path: Path) -> None:
    path = tmp_path / "lg.tracker"
    with tastypy.Tracker(path) as tracker:
        tracker.add("a")
    (path / "tries.jsonl").write_text("garbage\n")
    done = subprocess.run(
        [sys.executable, "-c", f"import tastypy; tastypy.Tracker({str(path)!r}).close()"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "tries.jsonl" in done.stderr and "ignored" in done.stderr


@pytest.mark.parametrize("tries", [2**63, 2**70, 2**64 - 1])
def test_tries_too_large_to_count_on_are_refused(tmp_path: Path, tries: int) -> None:
    with tastypy.Tracker(tmp_path / "t") as tracker:
        with pytest.raises(TypeError, match="_tries"):
            tracker["a"] = {"_tries": tries}
        tracker.add_many(["a", "good"])
        tracker.sync()
        assert tracker.try_it("a")
        tracker["a"]["_tries"] = tries  # behind the tracker's back
        tracker["good"]["result"] = "keep me"
        with pytest.raises(TypeError, match=r"'a'.*_tries"):
            tracker.sync()  # names the bad task, writes the good one
        tracker["a"]["_tries"] = 1
    with tastypy.Tracker(tmp_path / "t", readonly=True) as seen:
        assert seen["good"]["result"] == "keep me" and seen.tries("a") == 1


def test_a_dict_subclass_as_a_record_is_checked_too(tmp_path: Path) -> None:
    with tastypy.Tracker(tmp_path / "t") as tracker:
        with pytest.raises(TypeError, match="_tries"):
            tracker["od"] = collections.OrderedDict(_tries="3")
        assert "od" not in tracker


def test_outcomes_of_a_run_whose_process_dies_are_kept(tmp_path: Path) -> None:
    """A task that kills the run's own process (workers=1) must not exhaust the others.

    Each outcome is logged with the try (one write, no fsync) before the next
    task starts, so crashing runs leave the finished tasks done, not tried
    again until exhausted, and only the crashing task exhausted.
    """
    script = textwrap.dedent(
        """
        import os, sys, time
        import tastypy

        def task(key):
            if key == "boom":
                os._exit(3)  # the run's own process dies
            return "ok"

        tracker = tastypy.Tracker(sys.argv[1], max_tries=2)
        tracker.run(task, ["a", "b", "c", "boom"], workers=1, progress=False)
        """
    )
    path = tmp_path / "c.tracker"
    for expected in (3, 3, 0):  # the third run finds "boom" exhausted and skips it
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=False
        )
        assert done.returncode == expected, done.stderr
    with tastypy.Tracker(path, readonly=True) as seen:
        assert [k for k in ("a", "b", "c") if not seen.check(k)] == []
        assert seen.tries("boom") == 2 and seen.num_exhausted() == 1


def test_a_logged_outcome_gives_way_to_what_a_later_sync_of_the_task_wrote(
    tmp_path: Path,
) -> None:
    tracker = tastypy.Tracker(tmp_path / "t", max_tries=3)
    tracker.run(lambda key: key.upper(), ["a", "b"], workers=1, progress=False)
    seen = tastypy.Tracker(tmp_path / "t", readonly=True)  # unsynced: from the log
    assert seen.check("a") and seen["a"]["result"] == "A"
    seen.close()
    tracker.mark_not_done("a")
    tracker["a"]["result"] = "redo"
    tracker.sync_key("a")  # only a: the log stays, and must not bring the old "a" back
    again = tastypy.Tracker(tmp_path / "t", readonly=True)
    assert not again.check("a") and again["a"]["result"] == "redo"
    assert again.check("b") and again["b"]["result"] == "B"
    again.close()
    tracker.close()


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "s.pod"
    with tastypy.POD(path) as pod:
        for i in range(5):
            pod[f"k{i}"] = i
    return path


def test_a_journal_link_in_a_directory_without_manifest_is_refused_by_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    path.mkdir()
    (path / "journal-00000001.jsonl").symlink_to("journal-00000001.jsonl")  # loops
    for opener in (
        lambda: tastypy.POD(path),
        lambda: tastypy.POD(path, readonly=True),
        lambda: tastypy.verify(path),
    ):
        with pytest.raises(tastypy.CorruptStoreError, match="symbolic link"):
            opener()


def test_a_directory_where_the_manifest_is_written_is_refused_not_a_late_failure(
    tmp_path: Path,
) -> None:
    path = _store(tmp_path)
    (path / "manifest.json.tmp").mkdir()
    assert not tastypy.verify(path).ok
    with pytest.raises(tastypy.CorruptStoreError, match=r"manifest\.json\.tmp"):
        tastypy.POD(path)
    (path / "manifest.json.tmp").rmdir()
    (path / "manifest.json.tmp").write_text("debris of a crash")
    with tastypy.POD(path, sync_at=3) as pod:  # a file there is debris: removed
        pod["k9"] = 9
    assert not (path / "manifest.json.tmp").exists()


def test_meta_that_cannot_be_written_back_is_refused_on_open(tmp_path: Path) -> None:
    import json

    path = _store(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    manifest["meta"]["note"] = deep
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(tastypy.CorruptStoreError, match="meta"):
        tastypy.POD(path)


def test_an_enum_member_whose_value_is_not_finite_is_refused(tmp_path: Path) -> None:
    import enum

    class Odd(enum.Enum):
        NAN = float("nan")
        INF = (float("inf"),)

    with tastypy.POD(tmp_path / "e") as pod:
        for member in Odd:
            with pytest.raises(TypeError, match="NaN or infinity"):
                pod["x"] = member
        assert "x" not in pod


@pytest.mark.parametrize("name", ["lock", "tries.jsonl", "journal"])
def test_a_store_file_hard_linked_from_outside_is_never_written(tmp_path: Path, name: str) -> None:
    path = tmp_path / "t"
    with tastypy.Tracker(path) as tracker:
        tracker.add("a")
        tracker.try_it("a")
        tracker.sync_key("a")  # keeps tries.jsonl
    outside = tmp_path / "precious.txt"
    outside.write_text("do not touch\n")
    target = path / (next(p.name for p in path.glob("journal-*")) if name == "journal" else name)
    target.unlink(missing_ok=True)
    os.link(outside, target)
    assert not tastypy.verify(path).ok
    with pytest.raises(tastypy.CorruptStoreError, match="hard links"), tastypy.Tracker(path) as t:
        t.try_it("a")
    assert outside.read_text() == "do not touch\n"


def test_a_lock_that_is_not_a_file_is_a_problem_for_verify(tmp_path: Path) -> None:
    path = _store(tmp_path)
    (path / "lock").unlink()
    (path / "lock").mkdir()
    report = tastypy.verify(path)
    assert not report.ok and any("lock" in p for p in report.problems)


def test_run_leaves_an_ignored_sigint_ignored(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys
        import tastypy
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup or in a background job

        def task(key):
            os.kill(os.getpid(), signal.SIGINT)  # ignored: the run goes on
            return key

        tracker = tastypy.Tracker(sys.argv[1])
        summary = tracker.run(task, ["a", "b"], workers=1, progress=False)
        print(summary.done, summary.interrupted)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "t")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["2", "False"]


def test_a_path_through_a_file_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(tastypy.NotAStoreError, match="is a file, not a directory"):
        tastypy.POD(tmp_path / "afile" / "x.pod")
    with pytest.raises(tastypy.NotAStoreError, match="empty path"):
        tastypy.verify("")


def test_an_exit_sync_that_fails_says_so_once(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import errno, sys
        import tastypy

        pod = tastypy.POD(sys.argv[1])
        pod["a"] = 1

        def full(changes):
            raise OSError(errno.ENOSPC, "No space left on device")

        pod._storage.commit = full  # the disk fills up before the program ends
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "p")],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if "could not sync" in line]
    assert len(lines) == 1, done.stderr
    assert "No space left" in lines[0] and "1 changed key was not saved" in lines[0]


def test_show_counts_only_the_stores_own_files_and_follows_no_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tastypy.cli import main

    path = _store(tmp_path)
    assert main(["show", str(path), "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1_000_000)
    (path / "chunks" / "planted").symlink_to(big)
    assert main(["show", str(path), "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["bytes_on_disk"] == before["bytes_on_disk"] < 1_000_000
    assert after["files"] == before["files"] and after["format_version"] == 1
    assert after["kind"] == "pod" and after["file_size"] == 1000 and after["gzipped"] is False
