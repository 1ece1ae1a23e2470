"""``tastypy.repair`` and ``tastypy repair``: save what is intact, say what is not.

Each test damages a real store the way a disk or a person would, then checks
what ``verify`` counts and names, what ``repair`` saves (the new store must
open and hold exactly the salvage), what it reports lost, and that the
damaged original is unchanged unless ``--in-place`` was asked for.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy import POD
from tastypy.cli import main
from tastypy.cli._errors import EXIT_OS


def _build(tmp_path: Path, *, gzipped: bool = False) -> tuple[Path, dict[str, Any]]:
    """Data files of 4 records plus a journal of 3 commits; the store's contents."""
    live = tmp_path / "live"
    with POD(live, file_size=4, gzipped=gzipped) as pod:
        for i in range(10):
            pod[f"k{i}"] = {"i": i}
    pod = POD(live)
    for n in range(3):
        pod[f"k{n}"]["i"] = -n
        pod[f"new{n}"] = [n] * 3
        del pod[f"k{9 - n}"]
        pod.sync()
    frozen = tmp_path / "store"
    shutil.copytree(live, frozen)  # as a crash would leave it: journal not folded in
    contents = dict(pod.items())
    pod.close()
    (frozen / "lock").unlink()
    return frozen, contents


def _files(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _items(path: Path) -> list[tuple[str, Any]]:
    with POD(path, readonly=True) as pod:
        return list(pod.items())


def _journal(path: Path) -> Path:
    return next(path.glob("journal-*"))


def _chunk(path: Path, index: int) -> Path:
    return sorted((path / "chunks").iterdir())[index]


def test_a_healthy_store_has_nothing_to_repair(tmp_path: Path, capsys: Any) -> None:
    path, contents = _build(tmp_path)
    before = _files(path)
    report = tastypy.repair(path)
    assert report.output is None and report.complete and report.records == len(contents)
    assert main(["repair", str(path)]) == 0
    assert "nothing to repair" in capsys.readouterr().out
    assert not (tmp_path / "store.repaired").exists()
    assert _files(path) == before


def test_a_damaged_data_file_costs_only_its_own_records(tmp_path: Path) -> None:
    path, contents = _build(tmp_path)
    victim = _chunk(path, 1)  # k4 k5 k6 k7; k7 is deleted by commit 3
    victim.write_bytes(victim.read_bytes().replace(b'{"i":5}', b'{"i":"five"}'))
    before = _files(path)

    report = tastypy.verify(path)
    assert not report.ok
    assert report.records == len(contents) - 3  # k4, k5, k6 cannot be checked
    assert [(d.file.name, d.line, d.key) for d in report.damaged] == [
        (victim.name, 1, "k4"),
        (victim.name, 2, "k5"),
        (victim.name, 3, "k6"),
    ]
    assert f"{victim.name}:2 'k5': unchecked" in str(report)

    repaired = tastypy.repair(path)
    assert repaired.output == tmp_path / "store.repaired"
    assert not repaired.complete
    assert {d.key for d in repaired.lost} == {"k4", "k5", "k6"}
    expected = [(k, v) for k, v in contents.items() if k not in {"k4", "k5", "k6"}]
    assert _items(repaired.output) == expected
    assert tastypy.verify(repaired.output).ok
    assert _files(path) == before  # the damaged original is untouched


def test_accept_edits_keeps_a_hand_edited_line_as_it_reads(tmp_path: Path) -> None:
    path, contents = _build(tmp_path)
    victim = _chunk(path, 1)
    victim.write_bytes(victim.read_bytes().replace(b'{"i":5}', b'{"i":"five"}'))
    report = tastypy.repair(path, tmp_path / "kept", accept_edits=True)
    assert report.complete, report
    assert [(d.line, d.key) for d in report.accepted] == [
        (1, "k4"),
        (2, "k5"),
        (3, "k6"),
        (4, "k7"),
    ]
    assert _items(tmp_path / "kept") == [
        (k, {"i": "five"} if k == "k5" else v) for k, v in contents.items()
    ]


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_damaged_commit_is_skipped_and_later_commits_applied(
    tmp_path: Path, gzipped: bool
) -> None:
    path, contents = _build(tmp_path, gzipped=gzipped)
    journal = _journal(path)
    raw = journal.read_bytes()
    if gzipped:  # flip a byte inside the second member's compressed data
        second = [m.start() for m in re.finditer(b"\x1f\x8b\x08", raw)][1]
        damaged = bytearray(raw)
        damaged[second + 14] ^= 0x55
        journal.write_bytes(bytes(damaged))
    else:  # a hand edit of commit 2: valid JSON, wrong checksum
        journal.write_bytes(raw.replace(b'["new1",[1,1,1]]', b'["new1",[7]]'))
    assert not tastypy.verify(path).ok

    report = tastypy.repair(path)
    assert report.output is not None
    # Commit 2 set k1 and new1 and deleted k8; commits 1 and 3 are applied.
    expected = {k: v for k, v in contents.items() if k not in {"k1", "new1"}}
    expected["k1"], expected["k8"] = {"i": 1}, {"i": 8}
    assert dict(_items(report.output)) == expected
    assert [k for k, _ in _items(report.output)] == [
        "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k8", "new0", "new2"
    ]  # fmt: skip
    assert any("commit 3" in c for c in report.caveats), report
    if not gzipped:  # the member did not decompress: its keys cannot be read
        assert {(d.line, d.key) for d in report.lost} == {(4, "k1"), (5, "new1"), (6, "k8")}
        assert "delete" in next(d.reason for d in report.lost if d.key == "k8")
    else:
        assert report.lost and all(d.file == journal for d in report.lost)


def test_damage_later_set_again_costs_nothing(tmp_path: Path) -> None:
    path, contents = _build(tmp_path)
    victim = _chunk(path, 0)  # k0 k1 k2 k3: commits 2 and 3 set k1 and k2 again
    victim.write_bytes(victim.read_bytes().replace(b'["k3",{"i":3}]', b'["k3",{"i":33}]'))
    report = tastypy.repair(path)
    assert [d.key for d in report.lost] == ["k0", "k3"]  # k0 = -0 changed nothing
    assert any("2 damaged record(s) were set or deleted again" in n for n in report.notes)
    # k1 and k2 are set where the commits that set them again put them.
    order = ["k4", "k5", "k6", "new0", "k1", "new1", "k2", "new2"]
    assert _items(report.output) == [(k, contents[k]) for k in order]


def test_unreadable_lines_and_missing_files_are_named(tmp_path: Path) -> None:
    path, contents = _build(tmp_path)
    first = _chunk(path, 0)
    lines = first.read_bytes().split(b"\n")
    lines[3] = b'["k3",{"i":3'  # cut short; its key can still be read
    first.write_bytes(b"\n".join(lines))
    _chunk(path, 2).unlink()  # k8 k9: commits delete both
    report = tastypy.verify(path)
    shown = [str(d) for d in report.damaged]
    assert any(f"{first.name}:4 'k3': unreadable line" in s for s in shown), shown
    assert any("missing: its 2 records" in s for s in shown), shown

    repaired = tastypy.repair(path)
    lost = {"k0", "k3"}  # the whole file is unchecked; k1 and k2 are set again later
    assert dict(_items(repaired.output)) == {k: v for k, v in contents.items() if k not in lost}


def test_many_damaged_lines_are_listed_briefly(tmp_path: Path) -> None:
    path = tmp_path / "big"
    with POD(path, file_size=1000) as pod:
        for i in range(500):
            pod[f"key{i}"] = i
    chunk = _chunk(path, 0)
    chunk.write_bytes(chunk.read_bytes().replace(b'["key7",7]', b'["key7",8]'))
    report = tastypy.verify(path)
    assert report.records == 0 and len(report.damaged) == 500
    text = str(report)
    assert "0 records intact, 500 records lost" in text
    assert "... and 490 more damaged" in text
    assert len(text.splitlines()) < 20


def test_repair_never_overwrites(tmp_path: Path) -> None:
    path, _ = _build(tmp_path)
    _chunk(path, 1).write_bytes(b"garbage\n")
    taken = tmp_path / "store.repaired"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    with pytest.raises(tastypy.PathExistsError, match=re.escape(str(taken))):
        tastypy.repair(path)
    assert main(["repair", str(path)]) == 2
    assert (taken / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in taken.iterdir()) == ["mine.txt"]


def test_in_place_keeps_the_original_as_damaged(tmp_path: Path, capsys: Any) -> None:
    path, contents = _build(tmp_path)
    _chunk(path, 1).write_bytes(b"garbage\n")
    before = _tree(path)
    assert main(["repair", str(path), "--in-place"]) == 1
    out = capsys.readouterr().out
    assert "NOT saved" in out and "store.damaged" in out
    kept = _tree(tmp_path / "store.damaged")
    assert {k: v for k, v in kept.items() if k.name != "lock"} == before  # byte for byte
    assert dict(_items(path)) == {k: v for k, v in contents.items() if k not in {"k4", "k5", "k6"}}
    assert tastypy.verify(path).ok
    assert not (tmp_path / "store.repaired").exists()
    _chunk(path, 0).write_bytes(b"garbage\n")
    with pytest.raises(tastypy.PathExistsError, match=r"store\.damaged"):
        tastypy.repair(path, in_place=True)  # never over the first original


def test_in_place_refuses_a_store_open_for_writing(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "busy"
    with POD(path) as pod:
        pod["a"] = 1
        pod.sync()
        assert main(["repair", str(path), "--in-place"]) == 2
        assert "open for writing" in capsys.readouterr().err


def test_a_tracker_stays_a_tracker_with_its_logged_tries(tmp_path: Path) -> None:
    path = tmp_path / "jobs"
    with tastypy.Tracker(path, max_tries=5, file_size=2) as tracker:
        tracker.add_many(["a", "b", "c", "d"])
    code = (
        "import os, sys, tastypy\n"
        "t = tastypy.Tracker(sys.argv[1])\n"
        "t.try_it('a'); t.try_it('a'); t.try_it('d')\n"
        "os._exit(0)\n"  # the tries are only in tries.jsonl
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    chunk = _chunk(path, 1)  # c, d
    chunk.write_bytes(chunk.read_bytes().replace(b'"_tries":0', b'"_tries":9', 1))
    report = tastypy.repair(path)
    # d's record is lost with its file, but its logged tries bring it back as a task.
    assert [d.key for d in report.lost] == ["c", "d"]
    with tastypy.Tracker(report.output, readonly=True) as repaired:
        assert repaired.max_tries == 5
        assert repaired.tries("a") == 2 and repaired.tries("b") == 0
        assert repaired.tries("d") == 1 and "c" not in repaired


def test_a_torn_tail_alone_needs_no_repair(tmp_path: Path) -> None:
    path, _ = _build(tmp_path)
    journal = _journal(path)
    journal.write_bytes(journal.read_bytes()[:-5])
    report = tastypy.repair(path)
    assert report.output is None and report.complete
    assert any("torn" in n for n in report.notes)


KILLED_REPAIR = """
import os, signal, sys
import tastypy
calls, kill_at = 0, int(sys.argv[2])
def counting(real):
    def call(*args, **kwargs):
        global calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call
for name in ("write", "fsync", "fdatasync", "ftruncate", "replace", "rename", "unlink",
             "open", "mkdir", "rmdir"):
    setattr(os, name, counting(getattr(os, name)))
tastypy.repair(sys.argv[1], in_place=True)
os._exit(0)
"""


def _tree(path: Path) -> dict[Path, bytes]:
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_an_in_place_repair_killed_at_any_os_call_keeps_the_original(tmp_path: Path) -> None:
    """SIGKILL before each OS call of an in-place repair: the original is never lost."""
    template, contents = _build(tmp_path)
    _chunk(template, 1).write_bytes(b"garbage\n")
    original = _tree(template)
    salvage = {k: v for k, v in contents.items() if k not in {"k4", "k5", "k6"}}
    between = 0  # kills that fell between the two renames
    for kill_at in range(1, 400):
        work = tmp_path / f"run{kill_at}"
        path = work / "store"
        shutil.copytree(template, path)
        done = subprocess.run(
            [sys.executable, "-c", KILLED_REPAIR, str(path), str(kill_at)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode in (0, -9), done.stderr
        kept = [p for p in (path, work / "store.damaged") if p.is_dir()]
        survivors = [
            p
            for p in kept
            if {k: v for k, v in _tree(p).items() if k.name != "lock"}
            == {k: v for k, v in original.items() if k.name != "lock"}
        ]
        assert survivors, f"killed at call {kill_at}: the damaged original is gone"
        if done.returncode == 0:
            assert dict(_items(path)) == salvage
            assert not (work / "store.repaired").exists()
            break
        if not path.exists():  # killed between the renames: both are there by name
            assert dict(_items(work / "store.repaired")) == salvage
            between += 1
        shutil.rmtree(work)
    else:
        pytest.fail("the repair never finished: raise the range")
    assert kill_at > 20 and between >= 1, (kill_at, between)


def test_gzip_data_file_damage(tmp_path: Path) -> None:
    path, _ = _build(tmp_path, gzipped=True)
    victim = _chunk(path, 1)
    text = gzip.decompress(victim.read_bytes()).replace(b'{"i":5}', b'{"i":50}')
    victim.write_bytes(gzip.compress(text))
    report = tastypy.repair(path, accept_edits=True)
    assert report.complete
    assert dict(_items(report.output))["k5"] == {"i": 50}


def test_damage_over_a_commit_line_costs_only_that_commit(tmp_path: Path) -> None:
    path, contents = _build(tmp_path)
    journal = _journal(path)
    raw = journal.read_bytes()
    journal.write_bytes(raw.replace(b'{"commit":1,', b'#"commit":1,'))  # merges commits 1 and 2
    report = tastypy.repair(path)
    # Commit 1 (set new0, delete k9) is lost; commits 2 and 3 are applied.
    assert [(d.line, d.key) for d in report.lost] == [(1, "new0"), (2, "k9"), (3, None)]
    expected = {k: v for k, v in contents.items() if k != "new0"}
    expected["k9"] = {"i": 9}
    assert dict(_items(report.output)) == expected


def test_a_commit_with_a_valid_checksum_but_no_records_loses_only_those_lines(
    tmp_path: Path,
) -> None:
    import zlib

    path, contents = _build(tmp_path)
    journal = _journal(path)
    body = b'["late",1]\n42\n"a string"\n'
    trailer = f'{{"commit":4,"records":3,"crc32":{zlib.crc32(body)}}}\n'.encode()
    journal.write_bytes(journal.read_bytes() + body + trailer)  # hostile, not a hand edit
    assert not tastypy.verify(path).ok
    report = tastypy.repair(path)
    assert [d.line for d in report.lost] == [13, 14]
    assert dict(_items(report.output)) == {**contents, "late": 1}


def test_an_unreadable_manifest_cannot_be_repaired(tmp_path: Path, capsys: Any) -> None:
    path, _ = _build(tmp_path)
    (path / "manifest.json").write_text("{ not json")
    assert main(["repair", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot repair" in err and "backup" in err
    assert not (tmp_path / "store.repaired").exists()


def test_a_bad_setting_is_dropped_and_reported(tmp_path: Path) -> None:
    path, contents = _build(tmp_path)
    manifest = path / "manifest.json"
    manifest.write_text(re.sub(r'"sync_at": \d+', '"sync_at": "often"', manifest.read_text()))
    report = tastypy.repair(path)
    assert [str(d) for d in report.lost] == [
        f"{manifest}: setting meta.sync_at is 'often', not a whole number >= 1; the default "
        "applies"
    ]
    assert dict(_items(report.output)) == contents


def test_a_full_disk_leaves_no_half_repaired_store(capsys: Any) -> None:
    from _smallfs import fill, small_filesystem

    with small_filesystem(1 << 20) as root:
        path, _ = _build(root)
        _chunk(path, 1).write_bytes(b"garbage\n")
        before = _tree(path)
        filler = fill(root)
        assert main(["repair", str(path)]) == EXIT_OS
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "No space left on device" in err, err
        assert not (root / "store.repaired").exists()
        assert _tree(path) == before
        filler.unlink()
        assert main(["repair", str(path)]) == 1  # once there is room, it works
        assert tastypy.verify(root / "store.repaired").ok
