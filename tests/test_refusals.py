"""Small refusals that must be clear: odd numbers, deep values, odd paths, a full disk.

Each case is what a new user met in a trial: the value or path is either
accepted as the user meant it, or refused with an error of a type the user
would catch and a message that says what is wrong.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy.errors import NotAStoreError

from _faults import failing
from _smallfs import fill, small_filesystem

MAX_DEPTH = 254  # lists and dicts inside each other that the encoder allows


class Celsius(float):
    """A float subclass with its own repr, as numpy.float64 is one."""

    def __repr__(self) -> str:
        return f"{float(self)} °C"


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_a_float_subclass_is_stored_as_the_float(make_pod: Any, tmp_path: Path) -> None:
    pod = make_pod()
    pod["t"] = Celsius(21.5)
    pod["in"] = {"t": [Celsius(-3.25)]}
    pod[Celsius(2.5)] = "key"  # as a key: the float's JSON text, not the subclass's repr
    pod.close()
    again = tastypy.POD(tmp_path / "store", readonly=True)
    assert again["t"] == 21.5 and type(again["t"]) is float
    assert again["in"] == {"t": [-3.25]}
    assert again["2.5"] == "key"


def test_nesting_at_the_encoders_limit_is_stored(make_pod: Any, tmp_path: Path) -> None:
    pod = make_pod()
    pod["deep"] = _nested(MAX_DEPTH)
    pod.close()
    assert tastypy.POD(tmp_path / "store", readonly=True)["deep"] == _nested(MAX_DEPTH)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 200_000])
def test_nesting_deeper_than_the_encoder_allows_says_so(make_pod: Any, depth: int) -> None:
    pod = make_pod()
    pod["ok"] = 1
    with pytest.raises(TypeError) as raised:
        pod["deep"] = _nested(depth)
    message = str(raised.value)
    assert "'deep'" in message
    assert f"deeper than {MAX_DEPTH} levels" in message
    assert "deep" not in pod
    pod.close()


def test_a_nested_dict_too_deep_is_refused_the_same_way(make_pod: Any) -> None:
    value: dict[Any, Any] = {}
    inner = value
    for _ in range(MAX_DEPTH + 10):
        inner[1] = {}  # non-str keys take the converting path of the encoder
        inner = inner[1]
    pod = make_pod()
    with pytest.raises(TypeError, match=f"deeper than {MAX_DEPTH} levels"):
        pod["d"] = value
    pod["d"] = {"ok": [value]}.get("no", 1)
    holder = pod.setdefault("kept", [])
    holder.append(value)  # changed in place: found at the sync
    with pytest.raises(TypeError, match=f"'kept'.*deeper than {MAX_DEPTH} levels"):
        pod.sync()
    holder.clear()
    pod.sync()


def test_an_int_key_too_long_to_write_is_a_type_error(make_pod: Any) -> None:
    pod = make_pod()
    huge = 10**5000
    with pytest.raises(TypeError, match="digits"):
        pod[huge] = 1
    with pytest.raises(TypeError, match="digits"):
        pod["v"] = {huge: 1}
    assert "v" not in pod
    assert huge not in pod  # no such key could be stored
    with pytest.raises(TypeError, match="digits"):
        pod.get(huge)
    pod[10**30] = "long but fine"
    assert pod[str(10**30)] == "long but fine"


@pytest.mark.parametrize("readonly", [False, True])
def test_an_empty_path_is_refused(readonly: bool, tmp_path: Path) -> None:
    before = sorted(os.listdir(tmp_path))
    for kind in (tastypy.POD, tastypy.Tracker):
        with pytest.raises(NotAStoreError, match="empty path"):
            kind("", readonly=readonly)
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("readonly", [False, True])
def test_a_dangling_symlink_as_the_path_is_refused_clearly(readonly: bool, tmp_path: Path) -> None:
    link = tmp_path / "results.pod"
    link.symlink_to(tmp_path / "gone" / "results.pod")
    with pytest.raises(NotAStoreError) as raised:
        tastypy.POD(link, readonly=readonly)
    assert str(link) in str(raised.value) and "symbolic link" in str(raised.value)
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("readonly", [False, True])
def test_a_looping_symlink_as_the_path_is_refused_clearly(readonly: bool, tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(NotAStoreError) as raised:
        tastypy.Tracker(tmp_path / "a", readonly=readonly)
    assert "symbolic link" in str(raised.value) and "loop" in str(raised.value)


def test_a_symlink_to_a_store_opens_the_store(tmp_path: Path) -> None:
    with tastypy.POD(tmp_path / "real") as pod:
        pod["k"] = 1
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    with tastypy.POD(tmp_path / "alias") as pod:
        assert pod["k"] == 1
        pod["k"] = 2
    assert tastypy.POD(tmp_path / "real", readonly=True)["k"] == 2


def test_try_it_on_a_full_disk_raises_and_counts_nothing() -> None:
    """The choice documented in the README: no try is counted that is not on disk."""
    with small_filesystem(1 << 20) as root:
        tracker = tastypy.Tracker(root / "crawl", max_tries=3)
        tracker.add_many([f"t{i}" for i in range(5)])
        tracker.sync()
        assert tracker.try_it("t0")
        fill(root)
        granted = ["t0"]
        failure = None
        for i in range(100_000):  # until the log's last page is full too
            key = f"new{i}"
            try:
                assert tracker.try_it(key)
            except OSError as exc:
                failure = (key, exc)
                break
            granted.append(key)
        assert failure is not None, "the disk never filled up"
        key, exc = failure
        assert exc.errno == errno.ENOSPC
        assert "tries.jsonl" in str(exc) and repr(key) in str(exc) and "not counted" in str(exc)
        assert tracker[key].get("_tries", 0) == 0
        # What a crash now would leave: exactly the tries that returned True.
        seen = tastypy.Tracker(root / "crawl", readonly=True)
        tried = {k for k in seen if seen[k].get("_tries")}
        assert tried == set(granted)
        seen.close()
        # Once there is room again, the same task can be tried, and counts once.
        (root / "filler.bin").unlink()
        assert tracker.try_it(key)
        assert tracker[key]["_tries"] == 1
        tracker.close()
        after = tastypy.Tracker(root / "crawl", readonly=True)
        assert after[key]["_tries"] == 1
        assert {k for k in after if after[k].get("_tries")} == {*granted, key}
        after.close()


@pytest.mark.parametrize("truncate_fails", [False, True])
def test_a_try_whose_log_line_was_half_written_is_not_counted(
    tmp_path: Path, truncate_fails: bool
) -> None:
    """The disk fills mid-line: the half line must not glue onto the next one."""
    tracker = tastypy.Tracker(tmp_path / "t", max_tries=5)
    assert tracker.try_it("a")
    with failing("write", 1):
        if truncate_fails:
            with failing("ftruncate", 1), pytest.raises(OSError, match="not counted"):
                tracker.try_it("b")
        else:
            with pytest.raises(OSError, match="not counted"):
                tracker.try_it("b")
    assert tracker.try_it("c")
    assert tracker.try_it("a")
    seen = tastypy.Tracker(tmp_path / "t", readonly=True)
    assert {k: seen[k].get("_tries", 0) for k in seen} == {"a": 2, "c": 1}  # no "b"
    seen.close()
    tracker.close()
