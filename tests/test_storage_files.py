"""The file engine through the POD: damage is reported, failures change nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import tastypy
from tastypy import POD

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
