"""The tracker's counts equal a recount after every kind of change, also on a read-only open."""

from __future__ import annotations

from pathlib import Path

import pytest

import tastypy
from tastypy import ProgressTracker

from _trackers import OpenTracker, assert_counts, reopen, store_files

# -- counts stay right ----------------------------------------------------------------


def test_counts_right_after_direct_record_changes(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    tracker = open_tracker(max_tries=3)
    tracker.add_many([f"k{i}" for i in range(10)])
    assert assert_counts(tracker) == {"done": 0, "tried": 0, "aborted": 0, "exhausted": 0}

    tracker["k0"]["_done"] = True
    assert assert_counts(tracker)["done"] == 1
    tracker["k1"]["_tries"] = 5
    assert assert_counts(tracker) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 1}
    tracker["k2"]["_tries"] = 1
    tracker["k3"]["_aborted"] = True
    tracker["k4"] = {"_done": True, "_tries": 2}
    tracker["k5"]["_done"] = True
    tracker["k5"]["_tries"] = 3  # done: not exhausted
    assert assert_counts(tracker) == {"done": 3, "tried": 4, "aborted": 1, "exhausted": 1}

    del tracker["k0"]
    del tracker["k1"]
    assert assert_counts(tracker) == {"done": 2, "tried": 3, "aborted": 1, "exhausted": 0}
    assert tracker.pop("k4") == {"_done": True, "_tries": 2}
    assert assert_counts(tracker) == {"done": 1, "tried": 2, "aborted": 1, "exhausted": 0}

    # Re-adding a deleted key starts it fresh.
    tracker.add("k0")
    tracker.add_many(["k1"])
    assert assert_counts(tracker) == {"done": 1, "tried": 2, "aborted": 1, "exhausted": 0}

    # A reference held across a count: mark_dirty makes the change count.
    record = tracker["k6"]
    tracker.num_done()
    record["_done"] = True
    tracker.mark_dirty("k6")
    assert assert_counts(tracker)["done"] == 2

    tracker.update({"k7": {"_done": True}, "k8": {"_tries": 9}})
    assert assert_counts(tracker) == {"done": 3, "tried": 3, "aborted": 1, "exhausted": 1}
    tracker.setdefault("new", {"_tries": 1})
    assert assert_counts(tracker)["tried"] == 4

    before_reopen = assert_counts(tracker)
    tracker = reopen(tracker, open_pods)
    assert assert_counts(tracker) == before_reopen

    tracker.clear()
    assert assert_counts(tracker) == {"done": 0, "tried": 0, "aborted": 0, "exhausted": 0}


def test_counts_right_after_revert(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=2)
    tracker.add_many(["a", "b", "c", "d"])
    tracker.mark_done("a")
    tracker.try_it("b")
    tracker.sync()
    synced = assert_counts(tracker)
    assert synced == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 0}

    tracker["c"]["_done"] = True
    tracker["d"]["_tries"] = 7
    del tracker["a"]
    tracker.abort("b")
    tracker.add("e")
    tracker.mark_done("e")
    assert assert_counts(tracker) == {"done": 2, "tried": 2, "aborted": 1, "exhausted": 1}
    tracker.revert()
    assert list(tracker) == ["a", "b", "c", "d"]
    assert assert_counts(tracker) == synced

    # Tries counted by try_it since the sync are kept by revert (they are logged).
    tracker.try_it("c")
    tracker.try_it("c")
    tracker.revert()
    assert tracker.tries("c") == 2
    assert assert_counts(tracker) == {"done": 1, "tried": 2, "aborted": 0, "exhausted": 1}


def test_counts_right_after_reopen_with_other_max_tries(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    tracker = open_tracker(max_tries=3)
    tracker.add_many(["t0", "t1", "t2", "t3", "t4", "done"])
    for key, tries in [("t1", 1), ("t2", 2), ("t3", 3), ("t4", 5), ("done", 4)]:
        tracker[key]["_tries"] = tries
    tracker.mark_done("done")
    assert assert_counts(tracker)["exhausted"] == 2  # t3, t4

    tracker = reopen(tracker, open_pods)
    assert tracker.max_tries == 3
    assert assert_counts(tracker)["exhausted"] == 2

    tracker = reopen(tracker, open_pods, max_tries=2)
    assert tracker.max_tries == 2
    assert assert_counts(tracker)["exhausted"] == 3  # t2, t3, t4
    assert list(tracker.todo_keys()) == ["t0", "t1"]

    tracker = reopen(tracker, open_pods, max_tries=5)
    assert assert_counts(tracker)["exhausted"] == 1  # t4
    assert tracker.try_it("t3") is True

    tracker = reopen(tracker, open_pods)  # None keeps the stored value
    assert tracker.max_tries == 5
    assert assert_counts(tracker)["exhausted"] == 1  # t4; t3 has 4 tries now
    tracker = reopen(tracker, open_pods, max_tries=0)  # 0: no limit
    assert tracker.max_tries is None
    assert assert_counts(tracker)["exhausted"] == 0
    assert list(tracker.todo_keys()) == ["t0", "t1", "t2", "t3", "t4"]
    tracker = reopen(tracker, open_pods)
    assert tracker.max_tries is None
    assert assert_counts(tracker)["exhausted"] == 0

    # Opening the open path again with a new max_tries changes it in place.
    assert ProgressTracker(tracker.path, max_tries=1) is tracker
    assert tracker.max_tries == 1
    assert assert_counts(tracker)["exhausted"] == 4  # t1, t2, t3, t4
    assert tracker.try_it("t1") is False
    assert tracker.try_it("t0") is True


# -- read-only trackers ---------------------------------------------------------------


def test_read_only_tracker_counts_and_never_writes(
    store: Path, open_pods: list[tastypy.POD]
) -> None:
    tracker = ProgressTracker(store, max_tries=3)
    tracker.add_many([f"k{i}" for i in range(10)])
    tracker.mark_done("k0")
    tracker.mark_done("k1")
    tracker["k2"]["_tries"] = 3
    tracker["k3"]["_tries"] = 1
    tracker.abort("k4")
    tracker.try_it("k5")
    tracker.close()
    before = store_files(store)

    reader = ProgressTracker(store, readonly=True)
    assert reader.readonly
    assert reader.max_tries == 3
    expected = {"done": 2, "tried": 3, "aborted": 1, "exhausted": 1}
    assert assert_counts(reader) == expected
    assert reader.percent_done() == "20.00 %"
    assert reader.percent_not_done() == "80.00 %"
    assert reader.percent_tried() == "30.00 %"
    assert reader.percent_aborted() == "10.00 %"
    assert list(reader.todo_keys()) == ["k3", "k5", "k6", "k7", "k8", "k9"]
    assert reader.tries("k5") == 1
    assert reader.should_do("k2") is False
    with pytest.raises(tastypy.ReadOnlyError):
        reader.add("new")
    with pytest.raises(tastypy.ReadOnlyError):
        reader.add_many(["new"])
    with pytest.raises(tastypy.ReadOnlyError):
        reader["new"] = {}
    with pytest.raises(tastypy.ReadOnlyError):
        del reader["k0"]
    assert "new" not in reader
    reader.close()
    assert store_files(store) == before

    # A different max_tries on a read-only open counts with it but is not stored.
    reader = ProgressTracker(store, readonly=True, max_tries=1)
    assert reader.max_tries == 1
    assert assert_counts(reader) == {**expected, "exhausted": 3}  # k2, k3, k5
    reader.close()
    assert store_files(store) == before
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    assert tracker.max_tries == 3


def test_read_only_tracker_follows_a_writer(store: Path, open_pods: list[tastypy.POD]) -> None:
    writer = ProgressTracker(store, max_tries=2)
    open_pods.append(writer)
    writer.add_many(["a", "b", "c"])
    writer.sync()
    reader = ProgressTracker(store, readonly=True)
    open_pods.append(reader)
    assert reader is not writer
    assert assert_counts(reader) == {"done": 0, "tried": 0, "aborted": 0, "exhausted": 0}

    writer.mark_done("a")
    writer.try_it("b")
    writer.try_it("b")
    writer.sync()
    before = store_files(store)
    reader.revert()
    assert assert_counts(reader) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 1}
    assert assert_counts(reader) == assert_counts(writer)
    assert list(reader.todo_keys()) == ["c"]
    assert store_files(store) == before


def test_read_only_tracker_refuses_to_count_tries_or_mark(tmp_path: Path) -> None:
    with tastypy.Tracker(tmp_path / "t") as tracker:
        tracker.add("a")
    with tastypy.Tracker(tmp_path / "t", readonly=True) as reader:
        for change in (reader.try_it, reader.mark_done, reader.increment_tries, reader.abort):
            with pytest.raises(tastypy.ReadOnlyError):
                change("a")
        assert reader.tries("a") == 0
