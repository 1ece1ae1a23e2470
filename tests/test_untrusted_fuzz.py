"""Fuzz: hostile lines and files in a store never make tastypy write outside it.

Whole lines of data files, the journal and ``tries.jsonl`` replaced by hostile
JSON (with or without counts and checksums made to match), files renamed to
hostile names, and files replaced by directories, FIFOs, devices and links
out of the store. A read-only open and ``verify`` must write nothing; a
writable open with a commit and a compaction must write only inside the
store; no FIFO or device is ever opened; anything but a ``TastypyError``
fails the test, and so does a hang (the test's timeout).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tastypy
from _write_guard import WriteGuard, open_write_compact

HOSTILE_LINES = [
    b"[" * 100_000,
    b'["k0",1e999]',
    b'["k0",' + b"9" * 5000 + b"]",
    b'["k0","' + b"x" * (1 << 20) + b'"]',
    b'"k0"',
    b'{"k0":1}',
    b"[1,2]",
    b'["k0",1,2]',
    b'["k0",{"a":1,"a":2}]',
    b'["k0",{"file":"../../outside.jsonl"}]',
    b'["../outside.jsonl",1]',
    b'["/tmp/tastypy-fuzz-outside"]',
    b'{"commit":1,"records":1e999,"crc32":-1}',
    b'{"commit":1,"records":99999999999,"crc32":1}',
    b'["k0",\x00]',
    b"\xff\xfe",
    b"",
    b'["k0",{"_done":"no","_tries":-5}]',
    b'["k0",{"_tries":true}]',
    b'["k0",-3]',
]
FILE_NAMES = [
    "../outside.jsonl",
    "chunks/../00000000-000009.jsonl",
    "00000000-000000.jsonl\n",
    "journal-00000000.jsonl ",
    "x" * 200,
    "journal-00000001.jsonl",
]
KIND_TARGETS = ["chunk", "journal", "tries", "lock", "manifest", "chunks/stray"]
KIND_TARGETS += ["chunks/99999999-000000.jsonl", "journal-00000099.jsonl"]
MUTATIONS = st.one_of(
    st.tuples(  # a whole line replaced; True: counts and checksums made to match
        st.just("line"),
        st.sampled_from(["chunk", "journal", "tries"]),
        st.integers(0, 20),
        st.sampled_from(HOSTILE_LINES) | st.binary(max_size=40),
        st.booleans(),
    ),
    st.tuples(  # a file renamed; True: the manifest names the new name
        st.just("rename"),
        st.sampled_from(["chunk", "journal"]),
        st.sampled_from(FILE_NAMES),
        st.booleans(),
    ),
    st.tuples(  # a file replaced by (or a new entry made as) something that is no file
        st.just("kind"),
        st.sampled_from(KIND_TARGETS),
        st.sampled_from(["dir", "fifo", "device", "link-out", "link-dir-out"]),
    ),
)


@pytest.fixture(scope="module")
def tracker_template() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tastypy-untrusted-"))
    path = root / "store"
    with tastypy.Tracker(path, file_size=2) as tracker:
        for i in range(5):
            tracker[f"k{i}"] = {"i": i}
        tracker.compact()
        tracker["later"] = {"i": 5}
        tracker.sync()
        tracker["later2"] = {"i": 6}
    (path / "tries.jsonl").write_bytes(b'["k0",1]\n["k1",2]\n')
    yield path
    shutil.rmtree(root, ignore_errors=True)


@settings(
    max_examples=int(os.environ.get("TASTYPY_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3))
def test_hostile_lines_and_files_never_make_tastypy_write_outside_the_store(
    tracker_template: Path, monkeypatch: pytest.MonkeyPatch, mutations: list[tuple[object, ...]]
) -> None:
    root = Path(tempfile.mkdtemp(prefix="tastypy-fuzz-"))
    try:
        path = root / "store"
        shutil.copytree(tracker_template, path)
        precious = root / "outside.txt"
        precious.write_bytes(b"precious\n")
        (root / "outside-dir").mkdir()
        (root / "outside-dir" / "keep.txt").write_bytes(b"keep\n")
        for mutation in mutations:
            _mutate(path, mutation)
        guard = WriteGuard()
        with monkeypatch.context() as patch:
            guard.install(patch)
            for phase, attempt in (
                ("read-only", lambda: tastypy.Tracker(path, readonly=True).close()),
                ("verify", lambda: tastypy.verify(path)),
                ("write", lambda: open_write_compact(path, tastypy.Tracker)),
            ):
                # Refused is fine (anything but a TastypyError fails the test),
                # as long as nothing outside was touched.
                with contextlib.suppress(tastypy.TastypyError):
                    attempt()
                if phase != "write":
                    assert not guard.paths, f"{phase} wrote {guard.paths[:3]}"
        inside = os.path.realpath(path)
        escaped = [p for p in guard.paths if p != inside and not p.startswith(inside + os.sep)]
        assert not escaped, f"{mutations!r} made tastypy write {escaped[:3]}"
        assert not guard.specials, f"{mutations!r} made tastypy open {guard.specials[:3]}"
        assert precious.read_bytes() == b"precious\n"
        assert (root / "outside-dir" / "keep.txt").read_bytes() == b"keep\n"
        assert os.listdir(root / "outside-dir") == ["keep.txt"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _target(path: Path, which: object) -> Path:
    if which == "chunk":
        return (
            path / "chunks" / json.loads((path / "manifest.json").read_text())["chunks"][0]["file"]
        )
    if which == "journal":
        return path / json.loads((path / "manifest.json").read_text())["journal"]
    if which == "tries":
        return path / "tries.jsonl"
    if which == "manifest":
        return path / "manifest.json"
    return path / str(which)


def _mutate(path: Path, mutation: tuple[object, ...]) -> None:
    """Apply one mutation; one that no longer applies (its file is gone) does nothing."""
    try:
        if not _is_file(path / "manifest.json"):  # reading a FIFO would hang the test
            return
        manifest = json.loads((path / "manifest.json").read_bytes())
        target = _target(path, mutation[1])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return
    if mutation[0] == "line":
        _, which, index, line, fix = mutation
        if not _is_file(target):
            return
        lines = target.read_bytes().split(b"\n")
        lines[int(index) % len(lines)] = line  # type: ignore[call-overload]
        data = b"\n".join(lines)
        if fix and which == "journal":
            data = _recommitted(data)
        target.write_bytes(data)
        if fix and which == "chunk":
            entry = manifest["chunks"][0]
            entry.update(bytes=len(data), crc32=zlib.crc32(data), records=data.count(b"\n"))
            manifest["records"] = sum(e["records"] for e in manifest["chunks"])
    elif mutation[0] == "rename":
        _, which, name, named = mutation
        new = (target.parent / str(name)).resolve().parent / Path(str(name)).name
        with contextlib.suppress(OSError):
            target.rename(new)
        if named and which == "chunk":
            manifest["chunks"][0]["file"] = name
        elif named:
            manifest["journal"] = name
    else:
        _, _which, kind = mutation
        with contextlib.suppress(OSError):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
            _make(target, str(kind), path.parent)
        return
    (path / "manifest.json").write_text(json.dumps(manifest))


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _make(target: Path, kind: str, root: Path) -> None:
    if kind == "dir":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "device" and os.geteuid() == 0:
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null
    elif kind == "link-out":
        target.symlink_to(root / "outside.txt")
    elif kind == "link-dir-out":
        target.symlink_to(root / "outside-dir", target_is_directory=True)


def _recommitted(data: bytes) -> bytes:
    """*data* with every commit line rewritten to match the lines before it."""
    out, body, number = [], b"", 0
    for line in data.split(b"\n")[:-1]:
        if line.startswith(b"{"):
            number += 1
            trailer = {"commit": number, "records": body.count(b"\n"), "crc32": zlib.crc32(body)}
            out.append(body + json.dumps(trailer, separators=(",", ":")).encode() + b"\n")
            body = b""
        else:
            body += line + b"\n"
    return b"".join(out) + body
