"""Damage is reported, not swallowed; a torn tail is recovered.

A store with data files and a journal of three commits is damaged in each
kind of file at several places (truncation, flipped bytes). A torn last
commit must be discarded (the store opens at the commit before); anything
else must raise CorruptStoreError naming the file, and verify() must report
the same without changing a byte.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy import POD


def _build(tmp_path: Path, gzipped: bool) -> tuple[Path, list[list[tuple[str, Any]]]]:
    """A store of chunks plus a journal of 3 commits; the state after each commit."""
    live = tmp_path / "live"
    with POD(live, file_size=4, gzipped=gzipped) as pod:
        for i in range(10):
            pod[f"k{i}"] = {"i": i, "text": "abc" * i}
    states = []
    pod = POD(live)
    for n in range(3):
        pod[f"k{n}"]["i"] = -n
        pod[f"new{n}"] = [n] * 5
        del pod[f"k{9 - n}"]
        pod.sync()
        states.append(copy.deepcopy(list(pod.items())))
    frozen = tmp_path / "frozen"
    shutil.copytree(live, frozen)  # files as a crash would leave them: journal not folded
    pod.close()
    (frozen / "lock").unlink()
    return frozen, states


def _journal(path: Path) -> Path:
    return next(path.glob("journal-*"))


def _commit_ends(data: bytes, gzipped: bool) -> list[int]:
    """Byte offsets just past each commit."""
    if gzipped:
        starts = [m.start() for m in re.finditer(b"\x1f\x8b\x08", data)]
        return [*starts[1:], len(data)]
    return [m.end() for m in re.finditer(rb"\{\"commit\"[^\n]*\n", data)]


def _files(path: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock file (which a refused writable open creates)."""
    return {str(p): p.read_bytes() for p in path.rglob("*") if p.is_file() and p.name != "lock"}


def _contents(path: Path) -> list[tuple[str, Any]]:
    with POD(path, readonly=True) as pod:
        return list(pod.items())


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("cut", [1, 5, 0.5, -1])
def test_torn_last_commit_is_discarded(tmp_path: Path, gzipped: bool, cut: float) -> None:
    path, states = _build(tmp_path, gzipped)
    journal = _journal(path)
    data = journal.read_bytes()
    ends = _commit_ends(data, gzipped)
    assert len(ends) == 3
    last_start = ends[1]
    length = ends[2] - last_start
    keep = last_start + (int(length * cut) if isinstance(cut, float) else cut % length)
    journal.write_bytes(data[:keep])
    before = _files(path)
    report = tastypy.verify(path)
    assert report.ok, report
    assert any("torn" in note for note in report.notes)
    assert _files(path) == before  # verify and read-only opens change nothing
    assert _contents(path) == states[1]
    with POD(path) as pod:  # a writable open cuts the tail off, and carries on
        assert list(pod.items()) == states[1]
        pod["after"] = 1
    assert _contents(path) == [*states[1], ("after", 1)]
    assert tastypy.verify(path).notes == []


@pytest.mark.parametrize("gzipped", [False, True])
def test_truncation_inside_an_earlier_commit_is_a_torn_tail(tmp_path: Path, gzipped: bool) -> None:
    path, states = _build(tmp_path, gzipped)
    journal = _journal(path)
    data = journal.read_bytes()
    ends = _commit_ends(data, gzipped)
    journal.write_bytes(data[: ends[0] + 3])  # commits 2 and 3 lost to the crash
    assert _contents(path) == states[0]


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("commit", [0, 1])
@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_damage_before_the_last_commit_is_reported(
    tmp_path: Path, gzipped: bool, commit: int, where: float
) -> None:
    path, _ = _build(tmp_path, gzipped)
    journal = _journal(path)
    data = bytearray(journal.read_bytes())
    ends = [0, *_commit_ends(bytes(data), gzipped)]
    # In a gzip member, skip the 10-byte header: gzip readers ignore its
    # timestamp and OS bytes, so a flip there changes no data.
    start = ends[commit] + (10 if gzipped else 0)
    at = start + int((ends[commit + 1] - start) * where)
    data[at] ^= 0x04
    journal.write_bytes(bytes(data))
    before = _files(path)
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(journal.name)):
        POD(path)
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(journal.name)):
        POD(path, readonly=True)
    report = tastypy.verify(path)
    assert not report.ok
    assert any(journal.name in p for p in report.problems), report
    assert _files(path) == before  # nothing was "repaired" away


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("where", [0, 7, 0.5, -1, "truncate", "delete"])
def test_damaged_data_file_is_reported(tmp_path: Path, gzipped: bool, where: object) -> None:
    path, _ = _build(tmp_path, gzipped)
    victim = sorted((path / "chunks").iterdir())[1]
    data = bytearray(victim.read_bytes())
    if where == "truncate":
        victim.write_bytes(bytes(data[: len(data) // 2]))
    elif where == "delete":
        victim.unlink()
    else:
        at = int(len(data) * where) if isinstance(where, float) else int(where)  # type: ignore[call-overload]
        data[at] ^= 0x01
        victim.write_bytes(bytes(data))
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(victim.name)):
        POD(path)
    report = tastypy.verify(path)
    assert any(victim.name in p for p in report.problems), report


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip-crc", "drop-chunk"])
def test_damaged_manifest_is_reported(tmp_path: Path, damage: str) -> None:
    path, _ = _build(tmp_path, False)
    manifest = path / "manifest.json"
    text = manifest.read_text()
    if damage == "truncate":
        manifest.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        manifest.write_bytes(b"\x00" * 40)
    elif damage == "flip-crc":
        manifest.write_text(
            re.sub(r'"crc32":(\d)', lambda m: f'"crc32":{(int(m[1]) + 1) % 10}', text, count=1)
        )
    else:
        manifest.write_text(re.sub(r"\n    \{[^\n]*\},", "", text, count=1))
    with pytest.raises(tastypy.TastypyError, match=r"manifest\.json|chunks/"):
        POD(path)
    report = tastypy.verify(path)
    assert not report.ok, report


def test_verify_of_a_healthy_store(tmp_path: Path) -> None:
    path, states = _build(tmp_path, False)
    report = tastypy.verify(path)
    assert report.ok
    assert report.problems == [] and report.notes == []
    assert report.records == len(states[-1])
    assert "OK" in str(report)
    with pytest.raises(tastypy.NotAStoreError):
        tastypy.verify(tmp_path / "nothing-here")


def test_leftovers_are_noted_and_removed(tmp_path: Path) -> None:
    path, states = _build(tmp_path, False)
    (path / "chunks" / "99999999-000000.jsonl").write_text("[]\n")
    (path / "journal-99999999.jsonl").write_text("")
    report = tastypy.verify(path)
    assert report.ok
    assert len(report.notes) == 2
    with POD(path) as pod:
        assert list(pod.items()) == states[-1]
    assert tastypy.verify(path).notes == []


def _last_commit(path: Path, gzipped: bool) -> tuple[Path, bytes, int]:
    journal = _journal(path)
    data = journal.read_bytes()
    return journal, data, _commit_ends(data, gzipped)[1]


def _assert_damage(path: Path, journal: Path, line: int | None = None) -> None:
    before = _files(path)
    where = re.escape(journal.name) + (f":{line}:" if line else "")
    with pytest.raises(tastypy.CorruptStoreError, match=where):
        POD(path)
    with pytest.raises(tastypy.CorruptStoreError, match=where):
        POD(path, readonly=True)
    report = tastypy.verify(path)
    assert not report.ok
    assert any(re.search(where, p) for p in report.problems), report
    assert not any("torn" in n for n in report.notes), report
    assert _files(path) == before  # the good records of the last commit are kept on disk


@pytest.mark.parametrize("where", [0.0, 0.3, 0.8])
def test_a_damaged_last_commit_with_an_intact_commit_line_is_damage(
    tmp_path: Path, where: float
) -> None:
    path, _ = _build(tmp_path, False)
    journal, data, last = _last_commit(path, False)
    body_end = data.rindex(b"\n{") + 1
    at = last + int((body_end - last) * where)
    damaged = bytearray(data)
    damaged[at] = ord("#") if damaged[at] != ord("#") else ord("%")
    journal.write_bytes(bytes(damaged))
    first_line = data[:last].count(b"\n") + 1
    _assert_damage(path, journal, first_line)


def test_a_last_commit_with_a_wrong_record_count_is_damage(tmp_path: Path) -> None:
    path, _ = _build(tmp_path, False)
    journal, data, _ = _last_commit(path, False)
    head, _, trailer = data[:-1].rpartition(b"\n")
    count = re.search(rb'"records":(\d+)', trailer)
    assert count
    trailer = trailer.replace(count[0], b'"records":' + str(int(count[1]) + 1).encode())
    journal.write_bytes(head + b"\n" + trailer + b"\n")
    _assert_damage(path, journal)


def test_a_hand_edited_last_commit_is_damage(tmp_path: Path) -> None:
    path, _ = _build(tmp_path, False)
    journal, data, _ = _last_commit(path, False)
    journal.write_bytes(data.replace(b"[2,2,2,2,2]", b"[2,2,2,2,3]"))
    _assert_damage(path, journal)


def test_a_valid_last_gzip_member_whose_commit_fails_its_checksum_is_damage(
    tmp_path: Path,
) -> None:
    import gzip

    path, _ = _build(tmp_path, True)
    journal, data, last = _last_commit(path, True)
    text = gzip.decompress(data[last:]).replace(b"[2,2,2,2,2]", b"[2,2,2,2,3]")
    journal.write_bytes(data[:last] + gzip.compress(text))
    _assert_damage(path, journal)


def _assert_torn(path: Path, states: list[list[tuple[str, Any]]]) -> None:
    report = tastypy.verify(path)
    assert report.ok, report
    assert any("torn" in note for note in report.notes), report
    assert _contents(path) == states[1]
    with POD(path) as pod:  # a writable open cuts the tail off, and carries on
        assert list(pod.items()) == states[1]
        pod["after"] = 1
    assert _contents(path) == [*states[1], ("after", 1)]


@pytest.mark.parametrize("fill", ["zeros", "garbage"])
def test_a_last_commit_with_sectors_lost_to_a_power_cut_is_a_torn_tail(
    tmp_path: Path, fill: str
) -> None:
    # A power cut during an append that was never synced can keep the commit
    # line and lose a sector before it, which reads back as zeros or garbage.
    path, states = _build(tmp_path, False)
    journal, data, last = _last_commit(path, False)
    body_end = data.rindex(b"\n{") + 1
    lost = bytes(body_end - last) if fill == "zeros" else b"\xff\xfe" * ((body_end - last) // 2)
    journal.write_bytes(data[:last] + lost.ljust(body_end - last, b"\xff") + data[body_end:])
    _assert_torn(path, states)


def test_a_last_gzip_member_that_does_not_decompress_is_a_torn_tail(tmp_path: Path) -> None:
    # Compressed bytes garbled by a power cut cannot be told from a flipped
    # bit there; as the last append, it is the one a crash can have torn.
    path, states = _build(tmp_path, True)
    journal, data, last = _last_commit(path, True)
    damaged = bytearray(data)
    damaged[last + 12] ^= 0x10
    journal.write_bytes(bytes(damaged))
    _assert_torn(path, states)


@pytest.mark.parametrize("gzipped", [False, True])
def test_garbled_bytes_followed_by_an_intact_commit_are_damage(
    tmp_path: Path, gzipped: bool
) -> None:
    path, _ = _build(tmp_path, gzipped)
    journal, data, _ = _last_commit(path, gzipped)
    first = _commit_ends(data, gzipped)[0]  # garble the middle commit, keep the last
    damaged = bytearray(data)
    damaged[first + 12 : first + 20] = b"\x00\xff" * 4
    journal.write_bytes(bytes(damaged))
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(journal.name)):
        POD(path)
    assert not tastypy.verify(path).ok


@pytest.mark.parametrize("gzipped", [False, True])
def test_the_torn_tail_warning_reaches_stderr_without_logging_config(
    tmp_path: Path, gzipped: bool
) -> None:
    import subprocess
    import sys

    path, states = _build(tmp_path, gzipped)
    journal, data, last = _last_commit(path, gzipped)
    journal.write_bytes(data[: last + (len(data) - last) // 2])
    code = "import sys, tastypy; p = tastypy.POD(sys.argv[1]); print(len(p)); p.close()"
    child = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == str(len(states[1]))
    lines = child.stderr.splitlines()
    assert len(lines) == 1, child.stderr
    assert str(journal) in lines[0]
    assert "torn" in lines[0] and f"({(len(data) - last) // 2} bytes)" in lines[0]


def test_damage_over_a_commit_line_before_an_intact_commit_is_damage(tmp_path: Path) -> None:
    # Zeros over commit 2's commit line merge it with commit 3 into one bad
    # piece; commit 3 is intact inside it, so no crash can have left this.
    path, _ = _build(tmp_path, False)
    journal, data, last = _last_commit(path, False)
    line_start = data.rindex(b"\n{", 0, last - 1) + 1
    damaged = data[:line_start] + bytes(last - line_start) + data[last:]
    journal.write_bytes(damaged)
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(journal.name)):
        POD(path)
    assert not tastypy.verify(path).ok


def test_compaction_refuses_a_journal_that_no_longer_reads_back_whole(tmp_path: Path) -> None:
    pod = POD(tmp_path / "s")
    for i in range(3):
        pod[f"k{i}"] = i
        pod.sync()
    journal = next((tmp_path / "s").glob("journal-*"))
    data = journal.read_bytes()
    journal.write_bytes(data[: len(data) - 30] + bytes(30))  # the last commit overwritten
    with pytest.raises(tastypy.CorruptStoreError, match="not compacting"):
        pod.compact()
    assert journal.read_bytes()[: len(data) - 30] == data[: len(data) - 30]


def test_damage_from_an_earlier_commit_into_the_last_one_is_damage(tmp_path: Path) -> None:
    # Zeros from inside commit 2's commit line into commit 3: commit 2 had been
    # synced, so no crash during commit 3's append can have done this.
    path, _ = _build(tmp_path, False)
    journal, data, last = _last_commit(path, False)
    line_start = data.rindex(b"\n{", 0, last - 1) + 1
    damaged = bytearray(data)
    damaged[line_start + 5 : last + 20] = bytes(last + 15 - line_start)
    journal.write_bytes(bytes(damaged))
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(journal.name)):
        POD(path)
