"""What ``verify`` and ``repair`` add for a tracker: its records, its tries log, its settings.

The file engine checks the files; the tracker's share (task records it
cannot count by, tries logged in ``tries.jsonl``, ``max_tries``) is composed
into ``tastypy.verify`` and ``tastypy.repair`` from above. These pin what
that share reports, line by line, and what the repaired store holds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import tastypy


def _tracker_with_logged_tries(tmp_path: Path) -> Path:
    """Six tasks in data files of 3, synced; then tries logged but not synced."""
    live = tmp_path / "live"
    with tastypy.Tracker(live, max_tries=5, file_size=3) as tracker:
        tracker.add_many([f"k{i}" for i in range(6)])
    tracker = tastypy.Tracker(live, sync_at=10**6)
    for key in ("k0", "k0", "k4"):
        assert tracker.try_it(key)
    path = tmp_path / "jobs"
    shutil.copytree(live, path)  # as a killed writer leaves it: tries in tries.jsonl only
    tracker.close()
    (path / "lock").unlink()
    return path


def _chunks(path: Path) -> list[Path]:
    return sorted((path / "chunks").iterdir())


def test_logged_tries_rebuild_lost_tasks_and_bad_lines_are_named(tmp_path: Path) -> None:
    path = _tracker_with_logged_tries(tmp_path)
    _chunks(path)[1].write_bytes(b"")  # k3, k4, k5: gone
    with (path / "tries.jsonl").open("ab") as log:
        log.write(b'["k1", "x"]\nnot json\n["k2", 3]\n')
    report = tastypy.repair(path)
    assert [d.shown(path) for d in report.lost] == [
        "chunks/00000001-000001.jsonl: 3 of its 3 records are gone",
        "tries.jsonl:4 'k1': unreadable try count",
        "tries.jsonl:5: unreadable try count",
        "tries.jsonl 'k4': rebuilt from tries.jsonl with its try count (1) only; its other "
        "fields are lost",
    ]
    # k4 is one of the three that are gone: the stretch now costs two records.
    assert [d.records for d in report.lost] == [2, 0, 0, 0] and report.records == 4
    with tastypy.Tracker(report.output, readonly=True) as repaired:
        assert dict(repaired.items()) == {
            "k0": {"_done": False, "_tries": 2},
            "k1": {"_done": False, "_tries": 0},
            "k2": {"_done": False, "_tries": 3},
            "k4": {"_done": False, "_tries": 1},
        }
        assert repaired.max_tries == 5


def test_a_tries_log_that_is_a_link_is_not_followed_and_is_named(tmp_path: Path) -> None:
    path = _tracker_with_logged_tries(tmp_path)
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(b'["k1", 4]\n')
    (path / "tries.jsonl").unlink()
    (path / "tries.jsonl").symlink_to(outside)
    report = tastypy.verify(path)
    assert not report.ok
    assert any("tries.jsonl" in problem for problem in report.problems)
    repaired = tastypy.repair(path)
    assert [d.key for d in repaired.lost] == [None]
    assert repaired.lost[0].reason.startswith("not read (") and repaired.lost[0].records == 0
    with tastypy.Tracker(repaired.output, readonly=True) as tracker:
        assert tracker.tries("k1") == 0 and tracker.tries("k0") == 0  # the link is not read


def test_whole_files_with_a_record_the_tracker_cannot_count_by(tmp_path: Path) -> None:
    path = _tracker_with_logged_tries(tmp_path)
    with tastypy.POD(path) as pod:  # a plain POD writes what a tracker would refuse
        pod["k5"] = {"_done": False, "_tries": -3}
    report = tastypy.verify(path)
    expected = "field _tries is -3; expected a whole number from 0 to 4611686018427387903"
    assert report.problems == [f"{path}: task 'k5': {expected}"]
    assert report.records == 6 and report.lost == 0
    repaired = tastypy.repair(path)
    assert [d.shown(path) for d in repaired.lost] == [
        f". 'k5': {expected}; set to 0 (the default: tried again up to max_tries)"
    ]
    with tastypy.Tracker(repaired.output, readonly=True) as tracker:
        assert tracker.tries("k5") == 0 and tracker.tries("k0") == 2


def test_a_bad_max_tries_is_damage_and_the_default_applies_after_repair(tmp_path: Path) -> None:
    path = _tracker_with_logged_tries(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["meta"]["max_tries"] = -1
    (path / "manifest.json").write_text(json.dumps(manifest))
    report = tastypy.verify(path)
    assert report.problems == [
        f"{path / 'manifest.json'}: field meta.max_tries must be a whole number >= 0, not -1"
    ]
    repaired = tastypy.repair(path)
    assert [d.shown(path) for d in repaired.lost] == [
        "manifest.json: setting meta.max_tries is -1, not a whole number >= 0; the default applies"
    ]
    with tastypy.Tracker(repaired.output, readonly=True) as tracker:
        assert tracker.tries("k0") == 2 and tracker.tries("k4") == 1


def test_a_plain_pod_is_not_read_as_a_tracker(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    with tastypy.POD(path, file_size=2) as pod:
        for i in range(4):
            pod[f"k{i}"] = {"_tries": "not a count"}
    (path / "tries.jsonl").write_bytes(b'["k9", 3]\n')  # no tracker logged this
    assert tastypy.verify(path).ok
    _chunks(path)[0].write_bytes(b"garbage\n")
    repaired = tastypy.repair(path)
    assert [d.shown(path) for d in repaired.lost] == [
        "chunks/00000001-000000.jsonl:1: unreadable line",
        "chunks/00000001-000000.jsonl: 1 of its 2 records are gone",
    ]
    with tastypy.POD(repaired.output, readonly=True) as pod:
        assert dict(pod) == {"k2": {"_tries": "not a count"}, "k3": {"_tries": "not a count"}}
