"""Choosing an engine: a path, an engine object (storage=), copies between engines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tastypy
from tastypy import LockedError, SettingsError
from tastypy.storage import Storage
from tastypy.storage.files import FileStorage
from tastypy.storage.memory import MemoryStorage, MemoryStore

from _smallfs import fill, small_filesystem


def test_a_pod_on_the_memory_engine_keeps_what_it_commits() -> None:
    store = MemoryStore("results")
    pod = tastypy.POD(storage=MemoryStorage(store), sync_at=2)
    pod["a"] = {"n": [1]}
    pod["a"]["n"].append(2)
    pod["b"] = 2
    assert pod.path is None and "memory:results" in repr(pod)
    with pytest.raises(LockedError):
        tastypy.POD(storage=MemoryStorage(store))
    pod.close()
    again = tastypy.POD(storage=MemoryStorage(store, readonly=True))
    assert dict(again) == {"a": {"n": [1, 2]}, "b": 2} and again.readonly
    with pytest.raises(AttributeError, match="file_size"):
        _ = again.file_size


def test_settings_of_the_engine_are_refused_beside_storage() -> None:
    with pytest.raises(TypeError, match="path"):
        tastypy.POD()
    with pytest.raises(TypeError, match="not both"):
        tastypy.POD("x", storage=MemoryStorage())
    for settings in ({"gzipped": True}, {"file_size": 3}, {"durable": False}, {"timeout": 1}):
        with pytest.raises(SettingsError, match="engine"):
            tastypy.POD(storage=MemoryStorage(), **settings)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="read-only"):
        tastypy.POD(storage=MemoryStorage(), readonly=True)


def test_a_postgresql_url_never_makes_a_directory_nor_shows_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("postgresql://user:secret@127.0.0.1:1/crawl", "postgres://127.0.0.1:1/crawl"):
        with pytest.raises(tastypy.ConnectionFailedError, match="cannot connect") as raised:
            tastypy.Tracker(url, name="crawl")
        assert "secret" not in str(raised.value)
    assert os.listdir(tmp_path) == []


def test_copies_go_between_engines_and_the_tracker_keeps_its_tries(tmp_path: Path) -> None:
    tracker = tastypy.Tracker(tmp_path / "on-disk", max_tries=3)
    tracker.add_many(["a", "b"])
    assert tracker.try_it("a")
    memory = MemoryStore("copy")
    tracker.copy(MemoryStorage(memory))
    assert tracker.path is None
    assert tracker.try_it("a")  # counted in the memory store's own tries log
    seen = tastypy.Tracker(storage=MemoryStorage(memory, readonly=True))
    assert seen.tries("a") == 2 and seen.max_tries == 3
    seen.close()
    tracker.copy(tmp_path / "back")
    tracker.mark_done("a")
    tracker.close()
    back = tastypy.Tracker(tmp_path / "back", readonly=True)
    assert back.tries("a") == 2 and back.check("a") and back.max_tries == 3
    old = tastypy.Tracker(tmp_path / "on-disk", readonly=True)
    assert old.tries("a") == 1  # left as of the copy
    back.close()
    old.close()


def test_a_copy_refuses_an_engine_that_holds_a_store(tmp_path: Path) -> None:
    full = MemoryStorage()
    full.commit([("x", b"1")])
    with tastypy.POD(tmp_path / "p") as pod:
        pod["k"] = 1
        with pytest.raises(FileExistsError, match="empty"):
            pod.copy(full)
        with pytest.raises(SettingsError, match="engine"):
            pod.copy(MemoryStorage(), file_size=3)
        assert pod.path == tmp_path / "p"
        pod["k"] = 2  # still syncing to its own store
    assert tastypy.POD(tmp_path / "p", readonly=True)["k"] == 2


def test_a_tracker_on_the_memory_engine_logs_each_try_before_it_returns() -> None:
    store = MemoryStore("crawl")
    tracker = tastypy.Tracker(storage=MemoryStorage(store), max_tries=2)
    tracker.add_many(["a", "b"])
    tracker.sync()
    assert tracker.try_it("a") and tracker.try_it("a") and not tracker.try_it("a")
    # Unsynced, the tries are in the store's side log: a reader counts them.
    seen = tastypy.Tracker(storage=MemoryStorage(store, readonly=True))
    assert seen.tries("a") == 2 and seen.num_exhausted() == 1
    seen.close()
    tracker.close()


def test_a_copy_to_a_full_disk_leaves_nothing_behind(tmp_path: Path) -> None:
    with small_filesystem(256 << 10) as root, tastypy.POD(tmp_path / "p") as pod:
        (root / "kept").mkdir()
        pod["k"] = "x" * 100_000
        fill(root)
        with pytest.raises(OSError, match="No space left"):
            pod.copy(root / "new" / "deep")
        assert pod.path == tmp_path / "p"
        assert sorted(os.listdir(root)) == ["filler.bin", "kept"]
        pod["k"] = "still syncing here"
    assert tastypy.POD(tmp_path / "p", readonly=True)["k"] == "still syncing here"


@pytest.mark.parametrize("kind", ["files", "memory"])
def test_a_failed_copy_into_an_empty_store_given_as_an_engine_keeps_it(
    tmp_path: Path, kind: str
) -> None:
    """An empty tracker store, given to copy() as an engine object: a failed copy leaves it be."""
    memory = MemoryStore("target")
    path = tmp_path / "target"

    def target(readonly: bool = False) -> Storage:
        if kind == "files":
            return FileStorage(path, readonly=readonly)
        return MemoryStorage(memory, readonly=readonly)

    with tastypy.Tracker(storage=target(), max_tries=3) as tracker:
        tracker.add("a")
        del tracker["a"]  # empty again, but a tracker's store still
    given = target()
    pod = tastypy.POD(tmp_path / "source")
    pod["a"] = {"x": 1}
    pod["a"]["x"] = object()  # smuggled in: the copy cannot encode it
    try:
        with pytest.raises(TypeError, match="'a'"):
            pod.copy(given)
    finally:
        pod["a"]["x"] = 1
        pod.close()
        given.close()
    with tastypy.Tracker(storage=target(readonly=True)) as seen:
        assert seen.max_tries == 3 and len(seen) == 0
