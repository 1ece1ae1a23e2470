"""The POD's public API, in-process. Exit paths and locks: test_exit_paths/test_locking."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy import POD, PersistentOrderedDict
from tastypy._pending import Pending

from _helpers import on_disk, reopen

MakePod = Callable[..., POD]


def test_pod_is_the_same_class() -> None:
    assert tastypy.POD is tastypy.PersistentOrderedDict
    assert issubclass(POD, MutableMapping)


def test_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "my.pod"
    with POD(path) as pod:
        pod["k"] = 1
    assert (path / "manifest.json").is_file()
    assert on_disk(path) == [("k", 1)]


# -- seed examples (the original tastypy documentation) ----------------------


def test_seed_data_survives_the_program(make_pod: MakePod) -> None:
    my_pod = make_pod()
    my_pod["foo"] = "bar"
    my_pod = reopen(my_pod)
    assert my_pod["foo"] == "bar"
    my_pod.close()


def test_seed_json_gotchas(make_pod: MakePod) -> None:
    my_pod = make_pod()
    my_pod["integer-key"] = {1: "bar"}
    my_pod["tuple"] = ("baz", 42)
    my_pod = reopen(my_pod)
    assert my_pod["integer-key"] == {"1": "bar"}
    assert my_pod["tuple"] == ["baz", 42]
    my_pod.close()


def test_seed_sync_then_revert_shows_json_round_trip(make_pod: MakePod) -> None:
    my_pod = make_pod()
    my_pod[1] = {1: 1}
    my_pod.sync()
    my_pod.revert()
    assert my_pod[1] == {"1": 1}


def test_seed_nested_mutation_through_the_pod_is_synced(make_pod: MakePod) -> None:
    my_pod = make_pod()
    my_pod["key"] = {}
    my_pod["key"]["subkey1"] = 1
    my_pod["key"]["subkey2"] = []
    my_pod["key"]["subkey2"].append(1)
    my_pod = reopen(my_pod)
    assert my_pod["key"] == {"subkey1": 1, "subkey2": [1]}
    my_pod.close()


def test_seed_outside_reference_is_seen_by_sync(make_pod: MakePod) -> None:
    # The seed needed mark_dirty here; an explicit sync now finds the change itself.
    my_pod = make_pod()
    value: dict[str, object] = {}
    my_pod["key"] = value
    value["subkey2"] = "baz"  # the POD's name is not on this line
    my_pod.sync()
    assert on_disk(my_pod.path) == [("key", {"subkey2": "baz"})]
    value["subkey3"] = 1
    my_pod.mark_dirty("key")  # still works, and is what an automatic sync needs
    my_pod.sync()
    assert on_disk(my_pod.path) == [("key", {"subkey2": "baz", "subkey3": 1})]


def test_seed_update_with_a_key_syncs_that_key(make_pod: MakePod) -> None:
    my_pod = make_pod()
    my_pod["mutable"] = [1, 2, 3]
    my_pod["other"] = "x"
    my_pod.sync()
    outside = my_pod["mutable"]
    my_pod.sync()  # the read above is synced; later changes via `outside` are not seen
    outside.append(4)
    my_pod["other"] = "y"
    my_pod.update("mutable")
    assert on_disk(my_pod.path) == [("mutable", [1, 2, 3, 4]), ("other", "x")]


def test_seed_hold_sync_unhold(make_pod: MakePod) -> None:
    my_pod = make_pod(sync_at=2)
    my_pod.hold()
    for i in range(5):
        my_pod[i] = i
    assert on_disk(my_pod.path) == []
    my_pod.sync()
    assert len(on_disk(my_pod.path)) == 5
    my_pod[5] = 5
    my_pod[6] = 6
    assert len(on_disk(my_pod.path)) == 5  # still held
    my_pod.unhold()
    assert len(on_disk(my_pod.path)) == 7
    my_pod[7] = 7
    my_pod[8] = 8  # auto-sync is back
    assert len(on_disk(my_pod.path)) == 9


# -- the mapping ----------------------------------------------------------------


def test_order_updates_keep_position_readds_go_last(make_pod: MakePod) -> None:
    pod = make_pod(file_size=2)
    for key in "abcde":
        pod[key] = key
    pod["b"] = "B"
    del pod["c"]
    pod["c"] = "C"
    expected = [("a", "a"), ("b", "B"), ("d", "d"), ("e", "e"), ("c", "C")]
    assert list(pod.items()) == expected
    assert list(pod.keys()) == [k for k, _ in expected]
    assert list(pod.values()) == [v for _, v in expected]
    assert list(pod.iteritems()) == expected
    pod = reopen(pod)
    assert list(pod.items()) == expected
    pod.close()


def test_delete_and_readd_across_syncs_moves_key_last_on_disk(make_pod: MakePod) -> None:
    pod = make_pod(file_size=2)
    pod.update({"a": 1, "b": 2, "c": 3})
    pod.sync()
    del pod["a"]
    pod.sync()
    pod["a"] = 10
    pod["b"] = 20
    pod.sync()
    assert on_disk(pod.path) == [("b", 20), ("c", 3), ("a", 10)]


def test_int_and_str_keys_are_one_key(make_pod: MakePod) -> None:
    pod = make_pod()
    pod[1] = "one"
    assert pod["1"] == "one"
    assert 1 in pod and "1" in pod
    pod["1"] = "uno"
    assert pod[1] == "uno"
    assert len(pod) == 1
    pod[None] = 0
    pod[True] = 0
    pod[2.5] = 0
    assert list(pod) == ["1", "null", "true", "2.5"]
    del pod[2.5]
    assert "2.5" not in pod


def test_bad_keys_raise_type_error_and_change_nothing(make_pod: MakePod) -> None:
    pod = make_pod()
    for key in [(1, 2), b"k", object()]:
        with pytest.raises(TypeError, match="keys must be"):
            pod[key] = 1
        with pytest.raises(TypeError):
            _ = pod[key]
        assert key not in pod
    with pytest.raises(TypeError):
        pod[[1]] = 1  # type: ignore[index]
    with pytest.raises(TypeError, match="surrogate"):
        pod["bad\udc80"] = 1
    assert len(pod) == 0
    pod.sync()
    assert on_disk(pod.path) == []


def test_bad_values_raise_type_error_and_change_nothing(make_pod: MakePod) -> None:
    pod = make_pod()
    pod["k"] = "old"
    for value in [{1, 2}, object(), b"bytes", float("nan"), 2**70]:
        with pytest.raises(TypeError):
            pod["k"] = value
        with pytest.raises(TypeError):
            pod["new"] = value
    assert dict(pod) == {"k": "old"}
    pod.sync()
    assert on_disk(pod.path) == [("k", "old")]


def test_mapping_methods(make_pod: MakePod) -> None:
    pod = make_pod()
    pod.update({"a": 1}, b=2)
    pod.update([("c", 3)])
    assert pod.get("a") == 1
    assert pod.get("zz") is None
    assert pod.get("zz", 5) == 5
    assert pod.setdefault("a", 100) == 1
    assert pod.setdefault("d", [4]) == [4]
    assert pod.pop("b") == 2
    assert pod.pop("b", "gone") == "gone"
    with pytest.raises(KeyError):
        pod.pop("b")
    assert pod.popitem() == ("d", [4])  # last in, like dict
    assert pod == {"a": 1, "c": 3}
    assert pod != {"a": 1}
    assert len(pod) == 2
    with pytest.raises(KeyError):
        _ = pod["missing"]
    with pytest.raises(KeyError):
        del pod["missing"]
    pod.clear()
    assert len(pod) == 0
    with pytest.raises(KeyError, match="empty"):
        pod.popitem()
    pod = reopen(pod)
    assert dict(pod) == {}
    pod.close()


def test_values_are_held_by_reference(make_pod: MakePod) -> None:
    pod = make_pod()
    value: dict[str, int] = {}
    pod["k"] = value
    assert pod["k"] is value
    pod["k"]["sub"] = 1
    assert value == {"sub": 1}


def test_repr_is_useful(make_pod: MakePod) -> None:
    pod = make_pod()
    pod["a"] = 1
    text = repr(pod)
    assert "PersistentOrderedDict" in text and str(pod.path) in text
    assert "1 keys" in text and "1 unsynced" in text and "'a': 1" in text
    pod.close()
    assert "closed" in repr(pod)


def test_update_with_missing_key_name_raises_key_error(make_pod: MakePod) -> None:
    pod = make_pod()
    with pytest.raises(KeyError):
        pod.update("nope")
    pod["7"] = 1
    with pytest.raises(TypeError):  # as dict.update(7): an int is not the seed's key name
        pod.update(7)


# -- dirtiness and syncing ---------------------------------------------------------


def test_reads_mark_dirty_and_trigger_sync_without_rewriting(make_pod: MakePod) -> None:
    pod = make_pod(sync_at=3, file_size=2)
    pod.update({"a": 1, "b": 2, "c": 3, "d": 4})
    pod.sync()

    def files() -> dict[str, bytes]:
        return {
            str(p): p.read_bytes() for p in pod.path.rglob("*") if p.is_file() and p.name != "lock"
        }

    before = files()
    for key in ("a", "b", "c", "d"):
        _ = pod[key]  # reaching sync_at syncs the keys read before: nothing changed
    assert list(pod._dirty) == ["c", "d"]  # the reads that triggered syncs stay dirty
    pod.sync()
    assert files() == before


def test_a_read_that_triggers_a_sync_stays_dirty(make_pod: MakePod) -> None:
    pod = make_pod(sync_at=2)
    pod.update({"a": [], "b": []})
    pod.sync()
    _ = pod["a"]
    pod["b"].append(1)  # this read reaches sync_at: "a" is synced, "b" stays dirty
    pod.sync()
    assert on_disk(pod.path) == [("a", []), ("b", [1])]


def test_auto_sync_at_sync_at_dirty_keys(make_pod: MakePod) -> None:
    pod = make_pod(sync_at=3)
    pod["a"] = 1
    pod["b"] = 2
    assert on_disk(pod.path) == []
    pod["c"] = 3
    assert on_disk(pod.path) == [("a", 1), ("b", 2), ("c", 3)]


def test_nested_bad_value_makes_sync_raise_and_keeps_disk(make_pod: MakePod) -> None:
    pod = make_pod()
    pod["good"] = 1
    pod["bad"] = []
    pod.sync()
    pod["good"] = 2
    pod["bad"].append({1, 2})  # smuggled in past the assignment check
    with pytest.raises(TypeError, match="'bad'"):
        pod.sync()
    # The good key was written all the same; the bad one keeps its last good value.
    assert on_disk(pod.path) == [("good", 2), ("bad", [])]
    assert "bad" in pod.dirty()
    pod["bad"].pop()
    pod["bad"].append(3)
    pod.sync()
    assert on_disk(pod.path) == [("good", 2), ("bad", [3])]


def test_sync_key_keeps_order_of_new_keys(make_pod: MakePod) -> None:
    pod = make_pod()
    pod["old"] = 0
    pod.sync()
    pod["x"] = 1
    pod["y"] = 2
    pod["old"] = 5
    pod.sync_key("y")  # must not put y before x on disk
    assert on_disk(pod.path) == [("old", 0), ("x", 1), ("y", 2)]
    pod.sync_key("old")
    assert on_disk(pod.path) == [("old", 5), ("x", 1), ("y", 2)]
    with pytest.raises(KeyError):
        pod.sync_key("missing")


def test_sync_key_writes_a_deleted_key(make_pod: MakePod) -> None:
    pod = make_pod()
    pod.update({"a": 1, "b": 2})
    pod.sync()
    del pod["a"]
    pod.sync_key("a")
    assert on_disk(pod.path) == [("b", 2)]


def test_mark_dirty_missing_key_raises(make_pod: MakePod) -> None:
    pod = make_pod()
    with pytest.raises(KeyError):
        pod.mark_dirty("nope")


def test_revert_discards_unsynced_changes(make_pod: MakePod) -> None:
    pod = make_pod()
    pod.update({"a": [1], "b": 2})
    pod.sync()
    pod["a"].append(2)
    pod["c"] = 3
    del pod["b"]
    pod.revert()
    assert len(pod._dirty) == 0
    assert list(pod.items()) == [("a", [1]), ("b", 2)]
    pod.close()
    assert on_disk(pod.path) == [("a", [1]), ("b", 2)]


def test_copy_moves_future_syncs_and_leaves_old_store(make_pod: MakePod, tmp_path: Path) -> None:
    pod = make_pod(sync_at=100)
    pod.update({"a": 1, "b": 2})
    pod.sync()
    pod["c"] = 3
    pod.hold()
    pod.copy(tmp_path / "copy", file_size=1, gzipped=True)
    assert pod.path == tmp_path / "copy"
    assert pod.file_size == 1 and pod.gzipped
    assert on_disk(tmp_path / "copy") == [("a", 1), ("b", 2), ("c", 3)]
    assert on_disk(tmp_path / "store") == [("a", 1), ("b", 2)]
    pod["d"] = 4
    pod.sync()
    assert on_disk(tmp_path / "copy")[-1] == ("d", 4)
    assert on_disk(tmp_path / "store") == [("a", 1), ("b", 2)]
    # the old store is no longer locked by us
    with POD(tmp_path / "store") as old:
        assert dict(old) == {"a": 1, "b": 2}


def test_copy_refuses_an_existing_store_and_bad_values(make_pod: MakePod, tmp_path: Path) -> None:
    other = make_pod("other")
    other["x"] = 1
    other.close()
    pod = make_pod()
    pod["a"] = []
    with pytest.raises(FileExistsError):
        pod.copy(tmp_path / "other")
    pod["a"].append({1})
    with pytest.raises(TypeError, match="'a'"):
        pod.copy(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert pod.path == tmp_path / "store"
    pod["a"].pop()  # let teardown's close() sync


# -- settings --------------------------------------------------------------------------


def test_settings_are_stored_and_conflicts_raise(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with POD(path, gzipped=True, file_size=7, sync_at=9) as pod:
        pod["a"] = 1
    with POD(path) as pod:
        assert (pod.gzipped, pod.file_size, pod.sync_at) == (True, 7, 9)
        assert pod["a"] == 1
    with pytest.raises(tastypy.SettingsError, match="file_size=7"):
        POD(path, file_size=8)
    with pytest.raises(tastypy.SettingsError, match="gzipped"):
        POD(path, gzipped=False)
    with POD(path, sync_at=50) as pod:  # sync_at is a policy: explicit value wins
        assert pod.sync_at == 50
    with POD(path) as pod:
        assert pod.sync_at == 50


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"file_size": 0}, ValueError),
        ({"file_size": 1.5}, ValueError),
        ({"sync_at": -1}, ValueError),
        ({"sync_at": True}, ValueError),
        ({"gzipped": "yes"}, TypeError),
        ({"timeout": -1}, ValueError),
    ],
)
def test_bad_settings_are_refused(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        POD(tmp_path / "s", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "s").exists()


def test_gzipped_files_are_gzip_and_hold_file_size_values(make_pod: MakePod) -> None:
    import gzip

    pod = make_pod(gzipped=True, file_size=3)
    for i in range(10):
        pod[f"k{i}"] = i
    pod.close()  # folds the journal into the data files
    files = sorted((pod.path / "chunks").iterdir())
    assert len(files) == 4
    lines = [json.loads(line) for f in files for line in gzip.decompress(f.read_bytes()).split()]
    assert lines == [[f"k{i}", i] for i in range(10)]


def test_plain_files_are_readable_json_lines(make_pod: MakePod) -> None:
    pod = make_pod(file_size=2)
    pod.update({"a": {"x": [1, None]}, "b": "text", "c": 1.5})
    pod.close()  # folds the journal into the data files
    manifest = json.loads((pod.path / "manifest.json").read_text())
    assert manifest["format"] == "tastypy-store" and manifest["records"] == 3
    records = []
    for entry in manifest["chunks"]:
        text = (pod.path / "chunks" / entry["file"]).read_text()
        records += [json.loads(line) for line in text.splitlines()]
    assert records == [["a", {"x": [1, None]}], ["b", "text"], ["c", 1.5]]


def test_not_a_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(tastypy.NotAStoreError, match=r"notes\.txt"):
        POD(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["lock", "notes.txt"] or sorted(
        os.listdir(tmp_path)
    ) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(tastypy.NotAStoreError):
        POD(tmp_path / "file")


# -- read-only, closing -------------------------------------------------------------------


def test_readonly_never_writes(make_pod: MakePod, tmp_path: Path) -> None:
    pod = make_pod()
    pod.update({"a": [1], "b": 2})
    pod.close()
    before = {p: p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file()}
    with POD(tmp_path / "store", readonly=True) as reader:
        assert reader["a"] == [1]
        reader["a"].append(2)  # in memory only
        for method, args in [
            (reader.__setitem__, ("c", 3)),
            (reader.__delitem__, ("a",)),
            (reader.clear, ()),
            (reader.sync, ()),
            (reader.popitem, ()),
        ]:
            with pytest.raises(tastypy.ReadOnlyError):
                method(*args)
        with pytest.raises(PermissionError):
            reader["c"] = 3
    after = {p: p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file()}
    assert after == before
    with pytest.raises(tastypy.NotAStoreError):
        POD(tmp_path / "missing", readonly=True)
    assert not (tmp_path / "missing").exists()


def test_use_after_close_raises(make_pod: MakePod) -> None:
    pod = make_pod()
    pod["a"] = 1
    pod.close()
    pod.close()  # idempotent
    assert pod.closed
    attempts: list[Callable[[], object]] = [
        lambda: pod["a"],
        lambda: pod.__setitem__("a", 2),
        lambda: pod.__delitem__("a"),
        lambda: len(pod),
        lambda: list(pod),
        lambda: "a" in pod,
        lambda: pod.get("a"),
        pod.sync,
        pod.revert,
        lambda: pod.sync_key("a"),
        lambda: pod.mark_dirty("a"),
        pod.items,  # views are lazy; materialized below
    ]
    for attempt in attempts:
        with pytest.raises(tastypy.StoreClosedError):
            result = attempt()
            list(result)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="closed"):
        pod["b"] = 1
    assert on_disk(pod.path) == [("a", 1)]


def test_context_manager_syncs_on_exception(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), POD(tmp_path / "s") as pod:
        pod["a"] = 1
        raise RuntimeError("boom")
    assert pod.closed
    assert on_disk(tmp_path / "s") == [("a", 1)]


def test_same_path_twice_in_one_process_is_one_object(make_pod: MakePod, tmp_path: Path) -> None:
    pod = make_pod()
    again = POD(tmp_path / "store")
    assert again is pod
    assert POD(str(tmp_path / "." / "store")) is pod
    pod["a"] = 1
    assert again["a"] == 1
    again.close()  # each open is closed on its own; the last one releases the store
    assert not pod.closed
    pod.close()
    assert not pod.closed
    pod.close()
    assert pod.closed
    fresh = POD(tmp_path / "store")
    assert fresh is not pod and fresh["a"] == 1
    fresh.close()


def test_garbage_collection_syncs_and_unlocks(tmp_path: Path) -> None:
    import gc

    pod = POD(tmp_path / "s")
    pod["a"] = 1
    del pod
    gc.collect()
    assert on_disk(tmp_path / "s") == [("a", 1)]
    with POD(tmp_path / "s") as pod:  # the lock was released
        assert pod["a"] == 1


def test_subclass_instances(tmp_path: Path) -> None:
    class Mine(PersistentOrderedDict):
        pass

    with Mine(tmp_path / "m") as mine:
        mine["a"] = 1
        with pytest.raises(tastypy.LockedError, match="Mine"):
            POD(tmp_path / "m")
    assert on_disk(tmp_path / "m") == [("a", 1)]


@pytest.mark.parametrize("bad", [float("nan"), float("-inf"), 2**70, {1, 2}])
def test_bad_nested_values_are_caught_at_sync(make_pod: MakePod, bad: object) -> None:
    pod = make_pod()
    pod["k"] = {"ok": None}
    pod.sync()
    pod["k"]["x"] = bad
    with pytest.raises(TypeError, match="'k'"):
        pod.sync()
    assert on_disk(pod.path) == [("k", {"ok": None})]
    del pod["k"]["x"]
    pod["k"]["non-str keys"] = {1: None}  # converted like json does, not refused
    pod.sync()
    assert on_disk(pod.path) == [("k", {"ok": None, "non-str keys": {"1": None}})]


def test_dirty_lists_the_keys_the_next_sync_looks_at(make_pod: MakePod) -> None:
    pod = make_pod()
    pod.update({"a": 1, "b": 2})
    assert pod.dirty() == {"a", "b"}
    pod.sync()
    assert pod.dirty() == set()
    _ = pod["a"]
    del pod["b"]
    assert pod.dirty() == {"a", "b"}
    pod.dirty().clear()  # a copy: clearing it changes nothing
    assert pod.dirty() == {"a", "b"}


@pytest.mark.parametrize("kind", ["pod", "tracker"])
def test_a_sync_from_inside_a_sync_is_refused_and_loses_nothing(tmp_path: Path, kind: str) -> None:
    # As a signal handler or finalizer that syncs would, in the same thread:
    # here a trace function, called as the commit starts encoding the changes.
    store = tmp_path / kind
    pod: PersistentOrderedDict = POD(store) if kind == "pod" else tastypy.Tracker(store)
    pod["a"] = {"n": 1}
    changes_code = Pending.changes.__code__
    seen: list[str] = []

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code is changes_code and not seen:
            pod["b"] = {"n": 2}  # written meanwhile: it stays pending
            try:
                pod.sync()
            except RuntimeError as exc:
                seen.append(str(exc))
        return None

    sys.settrace(trace)
    try:
        pod.sync()
    finally:
        sys.settrace(None)
    assert seen and "cannot sync from inside its own sync" in seen[0]
    pod.close()
    with POD(store, readonly=True) as again:
        assert again["a"]["n"] == 1
        assert again["b"]["n"] == 2
