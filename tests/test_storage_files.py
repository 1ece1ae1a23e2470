"""The file engine through the POD: damage is reported, failures change nothing."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tastypy
from tastypy import POD
from tastypy.storage.files import FileStorage

from _helpers import on_disk

MakePod = Callable[..., POD]


def _store(tmp_path: Path, **settings: object) -> Path:
    path = tmp_path / "store"
    with POD(path, file_size=3, **settings) as pod:  # type: ignore[arg-type]
        for i in range(7):
            pod[f"k{i}"] = {"i": i}
    return path


def _chunk_files(path: Path) -> list[Path]:
    manifest = json.loads((path / "manifest.json").read_text())
    return [path / "chunks" / c["file"] for c in manifest["chunks"]]


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("where", [0, 10, -2])
def test_flipped_byte_in_a_data_file_is_reported_by_name(
    tmp_path: Path, gzipped: bool, where: int
) -> None:
    path = _store(tmp_path, gzipped=gzipped)
    victim = _chunk_files(path)[1]
    data = bytearray(victim.read_bytes())
    data[where] ^= 0x20
    victim.write_bytes(bytes(data))
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(victim.name)):
        POD(path)
    with pytest.raises(ValueError, match=re.escape(victim.name)):
        POD(path, readonly=True)


def test_truncated_or_missing_data_file_is_reported(tmp_path: Path) -> None:
    path = _store(tmp_path)
    first, second = _chunk_files(path)[:2]
    first.write_bytes(first.read_bytes()[:-5])
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(first.name)):
        POD(path)
    second.unlink()
    with pytest.raises(tastypy.CorruptStoreError):
        POD(path)


def test_bad_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = _store(tmp_path)
    victim = _chunk_files(path)[0]
    lines = victim.read_bytes().split(b"\n")
    lines[1] = b'["k1", {"i": 1]'  # broken JSON; keep the manifest's checksum in step
    data = b"\n".join(lines)
    victim.write_bytes(data)
    manifest = json.loads((path / "manifest.json").read_text())
    import zlib

    manifest["chunks"][0].update(bytes=len(data), crc32=zlib.crc32(data))
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(f"{victim.name}:2:")):
        POD(path)


def test_bad_manifest_is_reported(tmp_path: Path) -> None:
    path = _store(tmp_path)
    manifest = path / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text[:-20])
    with pytest.raises(tastypy.CorruptStoreError, match=r"manifest\.json"):
        POD(path)
    doc = json.loads(text)
    doc["version"] = 99
    manifest.write_text(json.dumps(doc))
    with pytest.raises(tastypy.NotAStoreError, match="version 99"):
        POD(path)


def test_leftover_files_of_an_interrupted_sync_are_removed(tmp_path: Path) -> None:
    path = _store(tmp_path)
    leftover = path / "chunks" / "99999999-000000.jsonl"
    leftover.write_text('["zombie", 1]\n')
    (path / "manifest.json.tmp").write_text("{half a manifest")
    with POD(path) as pod:
        assert "zombie" not in pod
        assert len(pod) == 7
    assert not leftover.exists()


def test_a_read_only_pass_writes_nothing(tmp_path: Path) -> None:
    path = _store(tmp_path, sync_at=2)  # reads will trigger automatic syncs
    stamp = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in path.rglob("*") if p.is_file()}
    with POD(path) as pod:
        for key in pod:
            _ = pod[key]["i"]
        pod.sync()
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in path.rglob("*") if p.is_file()}
    assert {p: v for p, v in after.items() if p.name != "lock"} == {
        p: v for p, v in stamp.items() if p.name != "lock"
    }


def test_durable_false_still_commits_atomically(tmp_path: Path) -> None:
    with POD(tmp_path / "s", durable=False) as pod:
        pod["a"] = 1
    assert on_disk(tmp_path / "s") == [("a", 1)]


# -- the commit contract: any batch of sets and deletes, as a dict would apply it --

Batch = list[tuple[str, object]]
_DELETE = object()


def _apply(model: dict[str, object], batch: Batch) -> None:
    for key, value in batch:
        if value is _DELETE:
            model.pop(key, None)
        else:
            model[key] = value  # in place if present, else at the end


def _commit(storage: FileStorage, batch: Batch) -> None:
    storage.commit(
        (key, None if value is _DELETE else json.dumps(value).encode()) for key, value in batch
    )


def _reopened(path: Path) -> list[tuple[str, object]]:
    storage = FileStorage(path)
    try:
        return list(storage.load().items())
    finally:
        storage.close()


def _check_batches(path: Path, start: dict[str, object], batches: list[Batch]) -> None:
    """Commit *batches* on a store holding *start*; the store must match a dict throughout."""
    model = dict(start)
    storage = FileStorage(path, file_size=2)
    storage.load()
    _commit(storage, list(start.items()))
    storage.compact()  # the start is in data files; the batches go to the journal
    for batch in batches:
        _apply(model, batch)
        _commit(storage, batch)
        # The engine's memory of what is on disk must follow too: committing the
        # expected state again writes nothing.
        end = storage._journal.end  # type: ignore[union-attr]
        _commit(storage, list(model.items()))
        assert storage._journal.end == end, "a commit of the current state wrote records"  # type: ignore[union-attr]
    storage.close()
    assert _reopened(path) == list(model.items())  # replayed from the journal
    storage = FileStorage(path)
    storage.load()
    storage.compact()
    storage.close()
    assert _reopened(path) == list(model.items())  # folded into the data files
    assert on_disk(path) == list(model.items())


START = {"a": 1, "b": 2, "c": 3}


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param([("n", 1), ("n", _DELETE)], id="new key set then deleted"),
        pytest.param([("a", 9), ("a", _DELETE)], id="old key set then deleted"),
        pytest.param([("a", _DELETE), ("a", 5), ("a", _DELETE)], id="delete-set-delete"),
        pytest.param([("n", 1), ("n", _DELETE), ("n", 2)], id="new key set-delete-set"),
        pytest.param([("a", 1), ("a", _DELETE), ("a", 1)], id="same value set-delete-set"),
        pytest.param([("zzz", _DELETE)], id="delete of a missing key"),
        pytest.param([("a", _DELETE), ("a", 1)], id="re-added key moves to the end"),
        pytest.param([("b", _DELETE), ("b", _DELETE)], id="deleted twice"),
        pytest.param([], id="empty batch"),
    ],
)
def test_a_batch_commits_like_a_dict_applies_it(tmp_path: Path, batch: Batch) -> None:
    _check_batches(tmp_path / "s", START, [batch, [("a", "after")]])


def test_a_batch_set_then_deleted_stays_deleted_on_the_next_commit(tmp_path: Path) -> None:
    # The key set then deleted in one batch must not be remembered as present:
    # setting it again to the same value must be written.
    _check_batches(tmp_path / "s", START, [[("a", 9), ("a", _DELETE)], [("a", 9)]])
    _check_batches(tmp_path / "t", START, [[("n", 1), ("n", _DELETE)], [("n", 1)]])


def test_a_generator_that_raises_midway_commits_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s"
    storage = FileStorage(path)
    storage.load()
    storage.commit([("a", b"1")])

    def changes() -> Iterator[tuple[str, bytes | None]]:
        yield "a", None
        yield "b", b"2"
        raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError):
        storage.commit(changes())
    storage.commit([("a", b"1")])  # still known as on disk: nothing to write
    storage.close()
    assert _reopened(path) == [("a", 1)]


keys = st.sampled_from(["a", "b", "c", "d", "e"])
values = st.one_of(st.just(_DELETE), st.integers(0, 2))
batches = st.lists(st.lists(st.tuples(keys, values), max_size=6), max_size=5)


@settings(max_examples=60, deadline=None)
@given(start=st.dictionaries(keys, st.integers(0, 2)), batches=batches)
def test_any_batches_commit_like_a_dict(
    tmp_path_factory: pytest.TempPathFactory, start: dict[str, object], batches: list[Batch]
) -> None:
    _check_batches(tmp_path_factory.mktemp("s") / "s", start, batches)


# -- every manifest field is checked on read --------------------------------------


def _chunk0(doc: dict[str, object], field: str, value: object) -> None:
    doc["chunks"][0][field] = value  # type: ignore[index]


BAD_MANIFESTS = [
    ("file_size", lambda d: d.update(file_size=0)),
    ("file_size", lambda d: d.update(file_size=-3)),
    ("file_size", lambda d: d.update(file_size="3")),
    ("file_size", lambda d: d.update(file_size=3.0)),
    ("file_size", lambda d: d.update(file_size=True)),
    ("gzipped", lambda d: d.update(gzipped=0)),
    ("gzipped", lambda d: d.update(gzipped="false")),
    ("generation", lambda d: d.update(generation=-1)),
    ("generation", lambda d: d.update(generation="1")),
    ("generation", lambda d: d.update(generation=1.5)),
    ("journal", lambda d: d.update(journal="../journal-00000001.jsonl")),
    ("journal", lambda d: d.update(journal="journal-1.jsonl")),
    ("journal", lambda d: d.update(journal="journal-00000001.jsonl.gz")),  # not gzipped
    ("journal", lambda d: d.update(journal="manifest.json")),
    ("journal", lambda d: d.update(journal=7)),
    ("chunks", lambda d: d.update(chunks={"file": "x"})),
    ("chunks", lambda d: d["chunks"].append("00000001-000009.jsonl")),
    ("file", lambda d: _chunk0(d, "file", "../../outside.jsonl")),
    ("file", lambda d: _chunk0(d, "file", "00000001-000000.jsonl.gz")),
    ("file", lambda d: _chunk0(d, "file", "1-0.jsonl")),
    ("file", lambda d: _chunk0(d, "file", "sub/00000001-000000.jsonl")),
    ("file", lambda d: _chunk0(d, "file", None)),
    ("file", lambda d: d["chunks"].append(dict(d["chunks"][0]))),  # named twice
    ("records", lambda d: _chunk0(d, "records", -1)),
    ("records", lambda d: _chunk0(d, "records", "3")),
    ("records", lambda d: _chunk0(d, "records", 4)),  # more than file_size
    ("bytes", lambda d: _chunk0(d, "bytes", -1)),
    ("bytes", lambda d: _chunk0(d, "bytes", 2**70)),
    ("crc32", lambda d: _chunk0(d, "crc32", 2**32)),
    ("crc32", lambda d: _chunk0(d, "crc32", -5)),
    ("crc32", lambda d: _chunk0(d, "crc32", 1.0)),
    ("records", lambda d: d.update(records=6)),
    ("records", lambda d: d.update(records="7")),
    ("meta", lambda d: d.update(meta=["kind", "pod"])),
    ("meta", lambda d: d.update(meta="pod")),
    ("synced_at", lambda d: d.update(synced_at=5)),
]


@pytest.mark.parametrize(
    ("field", "damage"), BAD_MANIFESTS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_MANIFESTS)]
)
def test_a_manifest_field_out_of_range_is_refused_by_name(
    tmp_path: Path, field: str, damage: Callable[[dict[str, object]], None]
) -> None:
    path = _store(tmp_path)
    manifest = path / "manifest.json"
    doc = json.loads(manifest.read_text())
    damage(doc)
    manifest.write_text(json.dumps(doc))
    before = sorted(p.name for p in path.rglob("*"))
    expected = rf"manifest\.json.*\b{field}\b"
    with pytest.raises(tastypy.CorruptStoreError, match=expected):
        POD(path)
    with pytest.raises(tastypy.CorruptStoreError, match=expected):
        POD(path, readonly=True)
    report = tastypy.verify(path)
    assert not report.ok and re.search(expected, report.problems[0]), report
    assert sorted(p.name for p in path.rglob("*")) == before  # nothing removed or added


def test_a_valid_manifest_still_opens(tmp_path: Path) -> None:
    path = _store(tmp_path, gzipped=True)
    with POD(path) as pod:
        assert len(pod) == 7
    assert tastypy.verify(path).ok


# -- files going missing ------------------------------------------------------------


def _uncompacted(tmp_path: Path) -> Path:
    """A store whose data is all in its journal (its writer never compacted)."""
    live = tmp_path / "live"
    pod = POD(live)
    pod["a"] = 1
    pod["b"] = [2]
    pod.sync()
    frozen = tmp_path / "frozen"
    shutil.copytree(live, frozen)  # as a crash would leave it
    pod.close()
    return frozen


@pytest.mark.parametrize("compacted", [False, True])
def test_a_store_whose_manifest_is_gone_is_refused_not_wiped(
    tmp_path: Path, compacted: bool
) -> None:
    path = _store(tmp_path) if compacted else _uncompacted(tmp_path)
    (path / "manifest.json").unlink()
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file() and p.name != "lock"}
    what = "chunks" if compacted else "journal-00000000.jsonl"
    for open_it in (lambda: POD(path), lambda: POD(path, readonly=True)):
        with pytest.raises(tastypy.TastypyError, match=r"manifest\.json") as info:
            open_it()
        message = str(info.value)
        assert str(path) in message and what in message and "missing" in message
    with pytest.raises(tastypy.TastypyError, match=r"manifest\.json.*missing"):
        tastypy.verify(path)
    after = {p: p.read_bytes() for p in path.rglob("*") if p.is_file() and p.name != "lock"}
    assert after == before  # nothing deleted or truncated


def test_an_interrupted_creation_is_still_reused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    (path / "chunks").mkdir(parents=True)
    (path / "journal-00000000.jsonl").write_bytes(b"")  # created, manifest not yet
    (path / "lock").write_text("")
    with POD(path) as pod:
        pod["a"] = 1
    assert on_disk(path) == [("a", 1)]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_journal_deleted_under_the_writer_fails_the_sync_and_keeps_the_changes(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "s"
    pod = POD(path)
    pod["a"] = 1
    pod.sync()
    journal = next(path.glob("journal-*"))
    journal.unlink()
    if how == "replaced":
        journal.write_bytes(b"")
    pod["b"] = 2
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(str(journal))):
        pod.sync()
    assert pod.dirty() == {"b"}  # nothing lost: the change is still pending
    with pytest.raises(tastypy.CorruptStoreError):
        pod.sync()  # and it stays refused
    pod.copy(tmp_path / "rescued")  # what the message recommends
    assert on_disk(tmp_path / "rescued") == [("a", 1), ("b", 2)]
    pod["c"] = 3
    pod.close()
    assert on_disk(tmp_path / "rescued") == [("a", 1), ("b", 2), ("c", 3)]


# -- what a close costs ---------------------------------------------------------------


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes written through the I/O seam, one entry per call."""
    from tastypy.storage.files import _fs

    calls: list[int] = []
    real_write, real_pwrite = _fs.write, _fs.pwrite

    def write(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, data)

    def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        calls.append(len(data))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(_fs, "write", write)
    monkeypatch.setattr(_fs, "pwrite", pwrite)
    return calls


def _store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_closing_after_a_few_changes_writes_only_the_changes(
    tmp_path: Path, written: list[int]
) -> None:
    path = tmp_path / "s"
    with POD(path, file_size=500) as pod:
        pod.update({f"key{i}": {"i": i, "text": "x" * 50} for i in range(20_000)})
    size = _store_bytes(path)
    for round_ in range(3):  # closes do not pile up work for each other either
        pod = POD(path)
        for i in range(0, 20_000, 1000):
            pod[f"key{i}"]["i"] = -round_
        written.clear()
        pod.close()
        assert 0 < sum(written) < 0.01 * size, (sum(written), size)  # the commit, no rewrite
    with POD(path, readonly=True) as again:
        assert again["key1000"]["i"] == -2 and again["key1"]["i"] == 1
        assert len(again) == 20_000


def test_closing_compacts_once_the_journal_is_large(tmp_path: Path, written: list[int]) -> None:
    path = tmp_path / "s"
    with POD(path, file_size=500) as pod:
        pod.update({f"key{i}": i for i in range(2000)})
    # A new store's data is all in its journal: the close folds it in.
    manifest = json.loads((path / "manifest.json").read_text())
    assert len(manifest["chunks"]) == 4
    assert (path / manifest["journal"]).stat().st_size == 0
    with POD(path) as pod:
        for i in range(0, 2000, 2):
            pod[f"key{i}"] = -i  # half the store changes: the journal is large
    manifest = json.loads((path / "manifest.json").read_text())
    assert (path / manifest["journal"]).stat().st_size == 0
    assert on_disk(path)[:2] == [("key0", 0), ("key1", 1)]
    assert on_disk(path)[2] == ("key2", -2)


def _big_store(tmp_path: Path) -> Path:
    """A store in which a change of one key is not worth a compaction at close."""
    path = tmp_path / "store"
    with POD(path, file_size=100) as pod:
        pod.update({f"k{i}": {"i": i} for i in range(300)})
    return path


def test_a_missing_journal_is_fine_only_where_the_manifest_says_it_was_empty(
    tmp_path: Path,
) -> None:
    path = _big_store(tmp_path)  # its first close folded the journal in
    manifest = json.loads((path / "manifest.json").read_text())
    journal = path / manifest["journal"]
    assert journal.stat().st_size == 0
    journal.unlink()  # an empty file someone tidied away: nothing was lost
    assert tastypy.verify(path).ok
    with POD(path, readonly=True) as reader:
        assert len(reader) == 300
    with POD(path) as pod:
        assert list(pod.items()) == [(f"k{i}", {"i": i}) for i in range(300)]
        pod["k0"] = "changed"
    journal = path / json.loads((path / "manifest.json").read_text())["journal"]
    assert journal.stat().st_size > 0  # the change is in the journal, not folded in
    journal.unlink()  # this one held data: refused, not hidden
    for open_it in (lambda: POD(path), lambda: POD(path, readonly=True)):
        with pytest.raises(tastypy.CorruptStoreError, match=re.escape(journal.name)):
            open_it()
    assert not tastypy.verify(path).ok


def test_a_journal_emptied_by_a_cut_is_not_trusted_as_never_written(tmp_path: Path) -> None:
    path = _big_store(tmp_path)
    with POD(path) as pod:
        pod["k0"] = "changed"
    journal = path / json.loads((path / "manifest.json").read_text())["journal"]
    journal.write_bytes(journal.read_bytes()[:5])  # a torn commit, cut off at the next open
    with POD(path) as pod:
        assert pod["k0"] == {"i": 0}
    assert journal.stat().st_size == 0
    journal.unlink()  # the manifest cannot tell this from a journal that held commits
    with pytest.raises(tastypy.CorruptStoreError, match=re.escape(journal.name)):
        POD(path)
