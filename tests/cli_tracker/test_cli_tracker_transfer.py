"""``tastypy export`` and ``tastypy import``: round trips, order, and all-or-nothing imports.

The command runs as a real subprocess (``python -m tastypy``): see _tracker_commands.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tastypy

from _tracker_commands import (
    KEYS,
    _assert_one_line_error,
    _exact,
    _files,
    _items,
    _records,
    tastypy_cmd,
)

# -- export and import ------------------------------------------------------------------------

DATA: list[tuple[str, Any]] = [
    ("zeta", 1),
    ("alpha", 1.0),
    ("", "empty key"),
    ("ünï cödé ✓", {"nested": {"list": [1, 2.5, None, True, False, "x"]}}),
    ('quote " and \\ and\nnewline', ["a", {"b": []}]),
    ("big", 2**63 - 1),
    ("negative", -(2**63)),
    ("float", 0.1),
    ("tiny", 1e-300),
    ("none", None),
    ("false", False),
    ("text", "line1\nline2\ttab \u2028 😀"),
    ("empty", {}),
    ("1", 1),
]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
@pytest.mark.parametrize("to", ["file", "stdout"])
def test_export_import_round_trip(tmp_path: Path, fmt: str, to: str) -> None:
    source = tmp_path / "source.pod"
    with tastypy.POD(source) as pod:
        pod.update(DATA)
    before = _files(source)
    out = tmp_path / f"out.{fmt}"
    if to == "file":
        done = tastypy_cmd("export", str(source), "-o", str(out), "--format", fmt)
        assert done.stdout == ""
    else:
        done = tastypy_cmd("export", str(source), "--format", fmt)
        out.write_text(done.stdout, encoding="utf-8")
    assert done.returncode == 0, done.stderr
    assert _files(source) == before
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        assert list(json.loads(text).items()) == DATA
    else:
        # split at "\n" only: "\u2028" in a value is written as is, and is no line break
        assert text.endswith("\n")
        assert [tuple(json.loads(line)) for line in text.split("\n")[:-1]] == DATA
    target = tmp_path / "fresh" / "target.pod"
    loaded = tastypy_cmd("import", str(target), str(out))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == f"{target}: imported {len(DATA)} keys\n"
    assert _exact(_items(target)) == _exact(DATA)


def test_export_a_tracker_and_import_it_into_another(tracker_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "jobs.jsonl"
    done = tastypy_cmd("export", str(tracker_store), "--format", "jsonl", "-o", str(out))
    assert done.returncode == 0, done.stderr
    target = tmp_path / "copy.tracker"
    tastypy.Tracker(target, max_tries=2).close()
    loaded = tastypy_cmd("import", str(target), str(out))
    assert loaded.returncode == 0, loaded.stderr
    assert _exact(list(_records(target).items())) == _exact(list(_records(tracker_store).items()))
    assert json.loads(tastypy_cmd("status", str(target), "--json").stdout) == json.loads(
        tastypy_cmd("status", str(tracker_store), "--json").stdout
    )


def test_export_of_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.pod"
    tastypy.POD(path).close()
    assert json.loads(tastypy_cmd("export", str(path)).stdout) == {}
    assert tastypy_cmd("export", str(path), "--format", "jsonl").stdout == ""
    (tmp_path / "empty.jsonl").write_text("")
    assert (
        tastypy_cmd("import", str(tmp_path / "new.pod"), str(tmp_path / "empty.jsonl")).returncode
        == 0
    )
    assert _items(tmp_path / "new.pod") == []


def test_import_into_an_existing_store_in_order(pod_store: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('["c", 3]\n\n["a", 10]\n["d", {"e": [4]}]\n')
    done = tastypy_cmd("import", str(pod_store), str(source))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{pod_store}: imported 3 keys\n"
    assert _items(pod_store) == [("a", 10), ("b", [1, 2]), ("c", 3), ("d", {"e": [4]})]


def test_import_into_a_tracker_takes_records(tmp_path: Path) -> None:
    path = tmp_path / "t.tracker"
    tastypy.Tracker(path).close()
    source = tmp_path / "in.json"
    source.write_text('{"x": {"url": "u1"}, "y": {"_done": true, "_tries": 1}}')
    done = tastypy_cmd("import", str(path), str(source))
    assert done.returncode == 0, done.stderr
    assert _records(path) == {
        "x": {"url": "u1", "_done": False, "_tries": 0},
        "y": {"_done": True, "_tries": 1},
    }
    frame = json.loads(tastypy_cmd("status", str(path), "--json").stdout)
    assert (frame["total"], frame["done"], frame["untried"]) == (2, 1, 1)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
@pytest.mark.parametrize("size", [3, 1500])  # 1500: more than a sync's worth (sync_at 1000)
def test_import_of_non_records_into_a_tracker_imports_nothing(
    tracker_store: Path, tmp_path: Path, fmt: str, size: int
) -> None:
    items: list[tuple[str, Any]] = [(f"new-{i}", {"n": i}) for i in range(size)]
    items.append(("new-bad", 42))
    source = tmp_path / f"in.{fmt}"
    if fmt == "json":
        source.write_text(json.dumps(dict(items), indent=1))
    else:
        source.write_text("".join(json.dumps(item) + "\n" for item in items))
    before = _files(tracker_store)
    done = tastypy_cmd("import", str(tracker_store), str(source))
    _assert_one_line_error(done, str(source))
    assert _files(tracker_store) == before
    assert list(_records(tracker_store)) == KEYS


MALFORMED = {
    "jsonl, bad JSON on line 3": (b'["a", 1]\n["b", 2]\n["c", 3\n["d", 4]\n', 3),
    "jsonl, not a pair on line 2": (b'["a", 1]\n["b", 2, 3]\n', 2),
    "jsonl, key not a string on line 4": (b'["a", 1]\n\n["b", 2]\n[3, 3]\n', 4),
    "jsonl, an object on line 2": (b'["a", 1]\n{"b": 2}\n', 2),
    "jsonl, not UTF-8 on line 3": (b'["a", 1]\n["b", 2]\n["c", "caf\xe9"]\n', 3),
    "json, bad JSON on line 3": (b'{\n  "a": 1,\n  "b" 2\n}\n', 3),
    "json, cut short": (b'{\n  "a": 1,\n  "b": [2,', 3),
    "json, not UTF-8 on line 3": (b'{\n  "a": 1,\n  "b": "caf\xe9"\n}\n', 3),
    "json, a list": (b'[["a", 1]]\n', 1),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_import_names_the_line_and_imports_nothing(
    pod_store: Path, tmp_path: Path, case: str
) -> None:
    content, line = MALFORMED[case]
    source = tmp_path / "in.data"
    source.write_bytes(content)
    before = _files(pod_store)
    done = tastypy_cmd("import", str(pod_store), str(source))
    _assert_one_line_error(done, f"{source}:{line}:")
    assert _files(pod_store) == before
    fresh = tmp_path / "fresh.pod"
    again = tastypy_cmd("import", str(fresh), str(source))
    _assert_one_line_error(again, f"{source}:{line}:")
    assert not fresh.exists() or _items(fresh) == []


@pytest.mark.parametrize(
    "content",
    [b'{"a": 1, "b": NaN}', b'{"a": 1, "b": 1e999}', b'{"a": 1, "\\ud800": 2}'],
    ids=["NaN", "infinity", "lone surrogate key"],
)
def test_import_of_what_json_cannot_hold_imports_nothing(
    pod_store: Path, tmp_path: Path, content: bytes
) -> None:
    source = tmp_path / "in.json"
    source.write_bytes(content)
    before = _files(pod_store)
    done = tastypy_cmd("import", str(pod_store), str(source))
    _assert_one_line_error(done, str(source))
    assert _files(pod_store) == before


def test_import_bad_file_and_bad_store(pod_store: Path, tmp_path: Path) -> None:
    target = tmp_path / "new.pod"
    missing = tastypy_cmd("import", str(target), str(tmp_path / "missing.json"))
    _assert_one_line_error(missing, "missing.json")
    assert not target.exists()
    folder = tastypy_cmd("import", str(target), str(tmp_path))
    _assert_one_line_error(folder, str(tmp_path))
    assert not target.exists()
    source = tmp_path / "in.jsonl"
    source.write_text('["a", 1]\n')
    a_file = tastypy_cmd("import", str(source), str(source))
    _assert_one_line_error(a_file, str(source))
    assert source.read_text() == '["a", 1]\n'
    with tastypy.POD(pod_store):
        locked = tastypy_cmd("import", str(pod_store), str(source))
        _assert_one_line_error(locked, str(pod_store))


def test_export_to_a_file_that_cannot_be_written(pod_store: Path, tmp_path: Path) -> None:
    before = _files(pod_store)
    done = tastypy_cmd("export", str(pod_store), "-o", str(tmp_path / "no" / "such" / "x.json"))
    _assert_one_line_error(done, "x.json")
    assert _files(pod_store) == before
