"""Regressions from a hostile review of the library (run(), records, logging)."""

from __future__ import annotations

import collections
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
