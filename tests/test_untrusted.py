"""A store is untrusted input: its files never lead outside its directory.

(The start of the issue "Untrusted stores": symbolic links planted in a
store received from someone else.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tastypy
from tastypy import POD


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    with POD(path, file_size=2) as pod:
        for i in range(5):
            pod[f"k{i}"] = i
        pod.compact()
        pod["later"] = 1  # a journal with a commit in it
    return path


def _outside(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n" * 100)
    return victim


def _replace_with_link(target: Path, victim: Path) -> None:
    target.unlink()
    target.symlink_to(victim)


@pytest.mark.parametrize("which", ["journal", "chunk", "manifest"])
def test_a_file_of_the_store_that_is_a_symlink_is_refused_and_its_target_untouched(
    tmp_path: Path, which: str
) -> None:
    path = _store(tmp_path)
    victim = _outside(tmp_path)
    if which == "journal":
        target = next(path.glob("journal-*"))
    elif which == "chunk":
        target = next((path / "chunks").iterdir())
    else:
        target = path / "manifest.json"
    _replace_with_link(target, victim)
    for opener in (lambda: POD(path), lambda: POD(path, readonly=True)):
        with pytest.raises(tastypy.TastypyError, match="symbolic link"):
            opener()
    assert not tastypy.verify(path).ok
    assert victim.read_bytes() == b"precious\n" * 100
    assert target.is_symlink()


def test_a_chunks_directory_that_is_a_symlink_is_refused_and_nothing_outside_deleted(
    tmp_path: Path,
) -> None:
    path = _store(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep-me.txt").write_text("mine")
    for name in os.listdir(path / "chunks"):
        os.rename(path / "chunks" / name, elsewhere / name)
    (path / "chunks").rmdir()
    (path / "chunks").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(tastypy.TastypyError, match="symbolic link"):
        POD(path)
    assert (elsewhere / "keep-me.txt").read_text() == "mine"
