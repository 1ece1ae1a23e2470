"""A store is untrusted input: its files never lead outside its directory.

Symbolic links planted in a store received from someone else, and a fuzz
test that mangles the manifest's fields (and flips a byte).
``tests/test_untrusted_fuzz.py`` replaces whole lines and files;
``tests/test_untrusted_lines.py`` has one test per kind of hostility.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tastypy
from _write_guard import WriteGuard, open_write_compact
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


# -- a fuzzed store never makes tastypy write outside it -----------------------------


HOSTILE_NAMES = [
    "../outside.jsonl",
    "/tmp/tastypy-fuzz-outside.jsonl",
    "chunks/../../outside.jsonl",
    "journal-00000000.jsonl/../../x",
    "",
    "a/b",
    ".",
    "..",
    "journal-00000001.jsonl\x00",
    "x" * 5000,
]
HOSTILE_VALUES: list[object] = [
    *HOSTILE_NAMES,
    -1,
    0,
    2**63,
    10**30,
    1.5,
    None,
    True,
    [],
    {},
    "1",
]
FIELDS = ["journal", "file_size", "generation", "gzipped", "meta", "records", "version"]
CHUNK_FIELDS = ["file", "records", "bytes", "crc32"]


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tastypy-untrusted-"))
    path = root / "store"
    with POD(path, file_size=2) as pod:
        for i in range(5):
            pod[f"k{i}"] = {"i": i}
        pod.compact()
        pod["later"] = 1
        pod.sync()
    yield path
    shutil.rmtree(root, ignore_errors=True)


@settings(
    max_examples=int(os.environ.get("TASTYPY_HYPOTHESIS_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    field=st.sampled_from(FIELDS + [f"chunks.{f}" for f in CHUNK_FIELDS]),
    value=st.sampled_from(HOSTILE_VALUES),
    flip=st.none() | st.tuples(st.sampled_from(["journal", "chunk"]), st.integers(0, 10**6)),
)
def test_a_mangled_store_never_makes_tastypy_write_outside_it(
    template: Path, monkeypatch: pytest.MonkeyPatch, field: str, value: object, flip: object
) -> None:
    root = Path(tempfile.mkdtemp(prefix="tastypy-fuzz-"))
    try:
        path = root / "store"
        shutil.copytree(template, path)
        manifest = json.loads((path / "manifest.json").read_text())
        if field.startswith("chunks."):
            manifest["chunks"][0][field.split(".", 1)[1]] = value
        else:
            manifest[field] = value
        (path / "manifest.json").write_text(json.dumps(manifest))
        if flip is not None:
            which, at = flip  # type: ignore[misc]
            target = (
                next(path.glob("journal-*"))
                if which == "journal"
                else next((path / "chunks").iterdir())
            )
            data = bytearray(target.read_bytes())
            if data:
                data[at % len(data)] ^= 0x21
                target.write_bytes(bytes(data))
        guard = WriteGuard()
        with monkeypatch.context() as patch:
            guard.install(patch)
            for attempt in (
                lambda: POD(path, readonly=True).close(),
                lambda: tastypy.verify(path),
                lambda: open_write_compact(path),
            ):
                # Refused is fine, as long as nothing outside was touched.
                with contextlib.suppress(tastypy.TastypyError):
                    attempt()
        inside = os.path.realpath(path)
        escaped = [p for p in guard.paths if p != inside and not p.startswith(inside + os.sep)]
        assert not escaped, f"{field}={value!r} made tastypy write {escaped[:3]}"
        assert not guard.specials, guard.specials
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- found by a new user's trial ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"), [("sync_at", "abc"), ("sync_at", -1), ("max_tries", 2.5)]
)
def test_a_hand_edited_setting_in_the_manifest_is_refused_by_name(
    tmp_path: Path, name: str, value: object
) -> None:
    path = tmp_path / "t"
    with tastypy.Tracker(path) as tracker:
        tracker.add("a")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["meta"][name] = value
    (path / "manifest.json").write_text(json.dumps(manifest))
    for opener in (lambda: tastypy.Tracker(path), lambda: tastypy.Tracker(path, readonly=True)):
        with pytest.raises(tastypy.CorruptStoreError, match=f"meta.{name}"):
            opener()
    report = tastypy.verify(path)
    assert not report.ok and any(f"meta.{name}" in p for p in report.problems)
    with tastypy.Tracker(path, **{name: 5}):  # an explicit setting replaces it
        pass  # (and the refused opens released the lock)
    assert tastypy.verify(path).ok


def test_the_command_calls_a_store_without_its_manifest_damaged_not_a_stranger(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    path = _store(tmp_path)
    (path / "manifest.json").unlink()

    def tastypy_cmd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tastypy", *args], capture_output=True, text=True, check=False
        )

    checked = tastypy_cmd("verify", str(path))
    assert checked.returncode == 1, checked
    shown = tastypy_cmd("show", str(path))
    assert shown.returncode == 2, shown
    for done in (checked, shown):
        assert len(done.stderr.splitlines()) == 1 and "manifest" in done.stderr
        assert "not a tastypy store" not in done.stderr
