"""A store is untrusted input: each kind of hostile line, file or number, one test each.

Every refusal is a ``CorruptStoreError`` naming the file; never a
RecursionError, MemoryError, UnicodeError, OverflowError, a bare OSError or a
hang (pytest's timeout would catch one). ``tests/test_untrusted.py`` fuzzes
the same ground and checks that nothing outside the store is written.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

import tastypy
from tastypy import POD

DEEP = b"[" * 100_000
HOSTILE_RECORDS = {
    "nested 100k deep": b'["k0",' + DEEP,
    "1e999": b'["k0",1e999]',
    "5000 digits": b'["k0",' + b"9" * 5000 + b"]",
    "not UTF-8": b'["k0","\xff\xfe"]',
    "lone surrogate": b'["k0","\\ud800"]',
    "an object": b'{"k0":1}',
    "a string": b'"k0"',
    "a number key": b"[1,2]",
    "three items": b'["k0",1,2]',
    "empty": b"[]",
    "null": b"null",
}


def _store(tmp_path: Path, cls: type[POD] = POD) -> Path:
    path = tmp_path / "store"
    with cls(path, file_size=2) as pod:
        for i in range(5):
            pod[f"k{i}"] = {"i": i}
        pod.compact()
        pod["later"] = {"i": 1}
    return path


def _openers(path: Path, cls: type[POD] = POD) -> list[Callable[[], object]]:
    return [lambda: cls(path, readonly=True).close(), lambda: cls(path).close()]


def _refused_everywhere(path: Path, named: Path | str, cls: type[POD] = POD) -> None:
    """Both opens raise CorruptStoreError naming *named*, and verify reports it."""
    for opener in _openers(path, cls):
        with pytest.raises(tastypy.CorruptStoreError) as caught:
            opener()
        assert str(named) in str(caught.value)
    report = tastypy.verify(path)
    assert not report.ok and any(str(named) in p for p in report.problems), report


def _first_chunk(path: Path) -> Path:
    return sorted((path / "chunks").iterdir())[0]


def _journal(path: Path) -> Path:
    return next(path.glob("journal-*"))


def _rewrite_chunk(path: Path, chunk: Path, data: bytes) -> None:
    """Give *chunk* new bytes and the manifest entry that matches them."""
    chunk.write_bytes(data)
    manifest = json.loads((path / "manifest.json").read_text())
    for entry in manifest["chunks"]:
        if entry["file"] == chunk.name:
            entry.update(bytes=len(data), crc32=zlib.crc32(data), records=data.count(b"\n"))
    manifest["records"] = sum(e["records"] for e in manifest["chunks"])
    (path / "manifest.json").write_text(json.dumps(manifest))


def _commit(lines: list[bytes]) -> bytes:
    """One journal commit of *lines* with a valid count and checksum."""
    body = b"".join(line + b"\n" for line in lines)
    trailer = {"commit": 1, "records": len(lines), "crc32": zlib.crc32(body)}
    return body + json.dumps(trailer, separators=(",", ":")).encode() + b"\n"


# -- hostile lines --------------------------------------------------------------------


@pytest.mark.parametrize("line", list(HOSTILE_RECORDS.values()), ids=list(HOSTILE_RECORDS))
def test_a_hostile_line_in_a_data_file_is_refused_naming_the_file_and_line(
    tmp_path: Path, line: bytes
) -> None:
    path = _store(tmp_path)
    chunk = _first_chunk(path)
    lines = chunk.read_bytes().split(b"\n")
    _rewrite_chunk(path, chunk, b"\n".join([line, *lines[1:]]))
    _refused_everywhere(path, f"{chunk}:1")


HOSTILE_JOURNAL_LINES = {
    **HOSTILE_RECORDS,
    "not the form tastypy writes": b'[ "k0", 1]',
    "a delete with a trailing space": b'["k0"] ',
    "a delete of a number": b"[5]",
}


@pytest.mark.parametrize(
    "line", list(HOSTILE_JOURNAL_LINES.values()), ids=list(HOSTILE_JOURNAL_LINES)
)
def test_a_hostile_record_in_a_checksummed_commit_is_refused_naming_the_journal(
    tmp_path: Path, line: bytes
) -> None:
    path = _store(tmp_path)
    journal = _journal(path)
    journal.write_bytes(_commit([b'["a",1]', line]))
    if line.startswith(b"{"):  # read as the commit line: a commit that fails its count
        _refused_everywhere(path, f"{journal}:1")
    else:
        _refused_everywhere(path, journal)


@pytest.mark.parametrize(
    "trailer",
    [
        b'{"commit":1e999,"records":1,"crc32":1}',
        b'{"commit":[1],"records":{},"crc32":"x"}',
        b'{"commit":1,"records":99999999999999999999999,"crc32":1}',
        b'{"commit":1,"records":1,"crc32":1,"crc32":2}',
        b"{" + DEEP,
    ],
)
def test_a_hostile_commit_line_is_damage_naming_the_journal(
    tmp_path: Path, trailer: bytes
) -> None:
    path = _store(tmp_path)
    journal = _journal(path)
    journal.write_bytes(b'["a",1]\n' + trailer + b"\n" + _commit([b'["b",2]']))
    _refused_everywhere(path, f"{journal}:1")


def test_commit_lines_claiming_huge_counts_after_garbage_cost_time_linear_in_the_file(
    tmp_path: Path,
) -> None:
    """Telling a torn append from damage looks back through a commit's claimed lines.

    A journal of 100,000 commit lines, each claiming more records than the file
    holds, after a torn commit (a NUL byte): the search once took time
    quadratic in the file (hours); the test's timeout guards it.
    """
    path = _store(tmp_path)
    journal = _journal(path)
    good = _commit([b'["a",1]'])
    claims = b'["a",\x00]\n' + b'{"commit":2,"records":999999999999,"crc32":1}\n' * 100_000
    starts = b'\x00["a",' + b'["x"],' * 200_000 + b'1]\n{"commit":2,"records":1,"crc32":7}\n'
    for tail in (claims, starts):
        journal.write_bytes(good + tail)
        with POD(path, readonly=True) as pod:  # a torn last append: discarded
            assert pod["a"] == 1 and pod["k4"] == {"i": 4}
        assert tastypy.verify(path).ok


# -- files that are not files -----------------------------------------------------------


def _make_fifo(target: Path) -> None:
    os.mkfifo(target)


def _make_dir(target: Path) -> None:
    target.mkdir()


def _make_zero_device(target: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero: endless


MAKERS = {"a FIFO": _make_fifo, "a directory": _make_dir, "a device": _make_zero_device}
WHERE: dict[str, Callable[[Path], Path]] = {
    "data file": _first_chunk,
    "journal": _journal,
    "manifest": lambda path: path / "manifest.json",
}


@pytest.mark.parametrize("which", list(WHERE))
@pytest.mark.parametrize("kind", list(MAKERS))
def test_a_store_file_that_is_not_a_regular_file_is_refused_without_hanging(
    tmp_path: Path, which: str, kind: str
) -> None:
    path = _store(tmp_path)
    target = WHERE[which](path)
    target.unlink()
    MAKERS[kind](target)
    for opener in _openers(path):
        with pytest.raises(tastypy.CorruptStoreError) as caught:
            opener()
        assert str(target) in str(caught.value)
        assert "not a regular file" in str(caught.value)
    if which != "manifest":  # verify calls a store without a manifest file no store
        report = tastypy.verify(path)
        assert any(str(target) in p for p in report.problems), report


@pytest.mark.parametrize("kind", list(MAKERS))
def test_a_tries_log_or_lock_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, kind: str
) -> None:
    path = _store(tmp_path, tastypy.Tracker)
    for name in ("tries.jsonl", "lock"):
        target = path / name
        target.unlink(missing_ok=True)
        MAKERS[kind](target)
        openers = _openers(path, tastypy.Tracker)
        for opener in openers if name == "tries.jsonl" else openers[1:]:
            with pytest.raises(tastypy.CorruptStoreError, match="not a regular file") as caught:
                opener()
            assert str(target) in str(caught.value)
        (target.rmdir if target.is_dir() else target.unlink)()
        with tastypy.Tracker(path):  # the refused open let go of the store at once
            pass  # (`caught` still holds its traceback, and so the refused tracker)
    with tastypy.Tracker(path) as tracker:  # what the message asks for: remove it
        assert tracker["k4"]["i"] == 4


@pytest.mark.parametrize(
    "entry", ["chunks/stray", "chunks/00000009-000000.jsonl", "journal-00000009.jsonl"]
)
@pytest.mark.parametrize("kind", list(MAKERS))
def test_a_stray_entry_that_is_not_a_file_is_refused_not_deleted(
    tmp_path: Path, entry: str, kind: str
) -> None:
    path = _store(tmp_path)
    MAKERS[kind](path / entry)
    with pytest.raises(tastypy.CorruptStoreError, match="not a regular file") as caught:
        POD(path)
    assert str(path / entry) in str(caught.value)
    assert os.path.lexists(path / entry)
    with POD(path, readonly=True) as pod:  # reading never minds it
        assert pod["k4"] == {"i": 4}
    report = tastypy.verify(path)  # the writable open refuses it: so does verify
    assert not report.ok and any(str(path / entry) in p for p in report.problems)


@pytest.mark.parametrize("kind", ["a file", "a FIFO"])
def test_a_chunks_that_is_not_a_directory_is_refused(tmp_path: Path, kind: str) -> None:
    path = _store(tmp_path)
    for name in os.listdir(path / "chunks"):
        (path / "chunks" / name).unlink()
    (path / "chunks").rmdir()
    if kind == "a file":
        (path / "chunks").write_text("x")
    else:
        os.mkfifo(path / "chunks")
    for opener in _openers(path):
        with pytest.raises(tastypy.CorruptStoreError, match="not a directory") as caught:
            opener()
        assert str(path / "chunks") in str(caught.value)


def test_a_new_store_never_writes_through_a_chunks_link_planted_in_its_directory(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = tmp_path / "new"
    path.mkdir()
    (path / "chunks").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(tastypy.NotAStoreError, match="chunks"), POD(path) as pod:
        pod["a"] = 1
        pod.compact()
    assert os.listdir(elsewhere) == []
    assert (path / "chunks").is_symlink()


# -- numbers the files claim ----------------------------------------------------------


def test_counts_and_sizes_a_manifest_claims_never_drive_an_allocation(tmp_path: Path) -> None:
    path = _store(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["file_size"] = 2**40
    for entry in manifest["chunks"]:
        entry.update(records=2**40, bytes=2**50)
    manifest["records"] = 2**40 * len(manifest["chunks"])
    (path / "manifest.json").write_text(json.dumps(manifest))
    tracemalloc.start()
    try:
        _refused_everywhere(path, _first_chunk(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, peak


def test_a_huge_line_costs_memory_proportional_to_the_file_not_more(tmp_path: Path) -> None:
    """A 20 MB value keeps working; a 20 MB line without a newline is a torn tail."""
    path = tmp_path / "store"
    big = "x" * (20 << 20)
    with POD(path) as pod:
        pod["big"] = big
        pod.compact()
    journal = _journal(path)
    journal.write_bytes(b'["torn","' + b"y" * (20 << 20))  # no newline, no commit line
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    tracemalloc.start()
    try:
        with POD(path, readonly=True) as pod:
            assert pod["big"] == big and "torn" not in pod
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # orjson's parse of one long string peaks at about 13 times its size (measured).
    assert peak < 20 * size, (peak, size)


def test_a_manifest_at_the_last_generation_refuses_to_compact_and_stays_readable(
    tmp_path: Path,
) -> None:
    path = _store(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["generation"] = 99_999_999
    (path / "manifest.json").write_text(json.dumps(manifest))
    with POD(path) as pod:
        pod["new"] = 1
        with pytest.raises(tastypy.CorruptStoreError, match="8 digits"):
            pod.compact()
    with POD(path, readonly=True) as pod:
        assert pod["new"] == 1 and pod["k4"] == {"i": 4}


# -- the tracker's tries.jsonl and task records ---------------------------------------


def test_hostile_lines_in_the_tries_log_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _store(tmp_path, tastypy.Tracker)
    bad = [DEEP, b'["k0",1e999]', b'["k1",true]', b'["k1",2.5]', b'["new",-4]', b'["k2","3"]']
    bad += [b"[1,2]", b"5", b'["k0",1,2]', b"\xff\xfe", b'{"k0":1}']
    good = [b'["k3",2]', b'["k4",3]', b'["k4",null]']
    (path / "tries.jsonl").write_bytes(b"\n".join([*bad, *good]) + b"\n")
    for readonly in (True, False):
        caplog.clear()
        with caplog.at_level(logging.WARNING), tastypy.Tracker(path, readonly=readonly) as t:
            assert [t.tries(k) for k in ("k0", "k1", "k2", "k3", "k4")] == [0, 0, 0, 2, 0]
            assert "new" not in t
        warned = [r.getMessage() for r in caplog.records if "tries.jsonl" in r.getMessage()]
        assert len(warned) == 1 and f"{len(bad)} lines" in warned[0], warned
        assert "line 1" in warned[0]


BAD_TRIES: list[object] = ["3", -1, 2.5, True, None, [1], {"n": 1}]


@pytest.mark.parametrize("tries", BAD_TRIES, ids=repr)
def test_a_task_record_with_unusable_tries_is_refused_by_name(
    tmp_path: Path, tries: object
) -> None:
    path = _store(tmp_path, tastypy.Tracker)
    record = json.dumps(["k0", {"_done": False, "_tries": tries}], separators=(",", ":"))
    _journal(path).write_bytes(_commit([record.encode()]))
    for opener in _openers(path, tastypy.Tracker):
        with pytest.raises(tastypy.CorruptStoreError, match="_tries") as caught:
            opener()
        assert "'k0'" in str(caught.value)


@pytest.mark.parametrize("tries", BAD_TRIES, ids=repr)
def test_a_task_record_with_unusable_tries_is_refused_at_assignment(
    tmp_path: Path, tries: object
) -> None:
    with tastypy.Tracker(tmp_path / "t") as tracker:
        with pytest.raises(TypeError, match="_tries"):
            tracker["a"] = {"_done": False, "_tries": tries}
        assert "a" not in tracker


def _tracker_with_a_bad_record(tmp_path: Path) -> Path:
    """A tracker store whose files are whole but whose task 'a' has ``_tries: "x"``.

    A plain POD writes it, as a script or a hand edit through one would.
    """
    path = tmp_path / "t.tracker"
    with tastypy.Tracker(path) as tracker:
        tracker.add_many(["a", "b"])
    with tastypy.POD(path) as pod:
        pod["a"] = {"_done": False, "_tries": "x"}
    return path


def test_a_bad_record_is_named_by_verify_and_fixed_by_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tastypy.cli import main

    path = _tracker_with_a_bad_record(tmp_path)
    report = tastypy.verify(path)
    assert not report.ok and any("'a'" in p and "_tries" in p for p in report.problems)
    assert main(["export", str(path)]) == 0  # shown as stored, with a warning
    out, err = capsys.readouterr()
    assert json.loads(out)["a"] == {"_done": False, "_tries": "x"}
    assert "tastypy set" in err and err.count("\n") == 1
    assert main(["status", str(path)]) == 2
    assert "tastypy set" in capsys.readouterr().err
    assert main(["set", str(path), "a", '{"_done": false, "_tries": 1}']) == 0
    assert tastypy.verify(path).ok
    with tastypy.Tracker(path) as tracker:
        assert tracker.tries("a") == 1 and tracker.num_tried() == 1


def test_a_bad_record_can_be_deleted(tmp_path: Path) -> None:
    from tastypy.cli import main

    path = _tracker_with_a_bad_record(tmp_path)
    assert main(["del", str(path), "a"]) == 0
    with tastypy.Tracker(path) as tracker:
        assert list(tracker) == ["b"]
