"""A tracker's values are task records; a store of the other kind is refused or repaired."""

from __future__ import annotations

from pathlib import Path

import pytest

import tastypy
from tastypy import ProgressTracker

from _trackers import OpenTracker, assert_counts, reopen

# -- records are task records ---------------------------------------------------------


@pytest.mark.parametrize("value", [1, "x", None, [1, 2], ("_done", True), True])
def test_assigning_a_non_dict_raises_and_changes_nothing(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD], value: object
) -> None:
    tracker = open_tracker()
    tracker.add("a")
    tracker.mark_done("a")
    tracker.sync()
    before = assert_counts(tracker)
    with pytest.raises(TypeError):
        tracker["a"] = value
    with pytest.raises(TypeError):
        tracker["new"] = value
    assert list(tracker) == ["a"]
    assert tracker["a"] == {"_done": True, "_tries": 0}
    assert assert_counts(tracker) == before
    tracker = reopen(tracker, open_pods)
    assert list(tracker.items()) == [("a", {"_done": True, "_tries": 0})]


def test_assigning_an_unencodable_record_raises_and_changes_nothing(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    tracker = open_tracker()
    tracker.add("a")
    tracker.mark_done("a")
    before = assert_counts(tracker)
    with pytest.raises(TypeError):
        tracker["a"] = {"_done": False, "_tries": 3, "x": float("nan")}
    with pytest.raises(TypeError):
        tracker["new"] = {"_tries": 3, "x": object()}
    assert list(tracker) == ["a"]
    assert tracker["a"] == {"_done": True, "_tries": 0}
    assert assert_counts(tracker) == before
    tracker = reopen(tracker, open_pods)
    assert list(tracker.items()) == [("a", {"_done": True, "_tries": 0})]


def test_assigning_a_dict_missing_fields_gets_defaults(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD]
) -> None:
    tracker = open_tracker()
    tracker["a"] = {}
    tracker["b"] = {"_done": True}
    tracker["c"] = {"_tries": 2, "note": "x"}
    tracker["d"] = {"payload": [1, 2]}
    assert tracker["a"] == {"_done": False, "_tries": 0}
    assert tracker["b"] == {"_done": True, "_tries": 0}
    assert tracker["c"] == {"_done": False, "_tries": 2, "note": "x"}
    assert tracker["d"] == {"payload": [1, 2], "_done": False, "_tries": 0}
    assert tracker.tries("b") == 0
    assert assert_counts(tracker) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 0}
    tracker = reopen(tracker, open_pods)
    assert tracker["b"] == {"_done": True, "_tries": 0}
    assert tracker["d"] == {"payload": [1, 2], "_done": False, "_tries": 0}


def test_records_missing_fields_are_repaired_on_open(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD], store: Path
) -> None:
    tracker = open_tracker(max_tries=2)
    tracker.add_many(["no_tries", "no_done", "neither", "fine"])
    tracker.mark_done("no_tries")
    tracker.increment_tries("no_done")
    tracker.increment_tries("no_done")
    # Records lose their fields through the program's own changes.
    del tracker["no_tries"]["_tries"]
    del tracker["no_done"]["_done"]
    tracker["neither"].clear()
    tracker["neither"]["x"] = 1
    # Nothing breaks before the repair either.
    assert tracker.tries("no_tries") == 0
    assert tracker.check("no_done") is False
    assert assert_counts(tracker) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 1}
    tracker.close()
    assert '"no_tries",{"_done":true}' in "".join(
        p.read_text() for p in store.rglob("*.jsonl") if p.name != "tries.jsonl"
    )

    tracker = reopen(tracker, open_pods)
    assert tracker["no_tries"] == {"_done": True, "_tries": 0}
    assert tracker["no_done"] == {"_tries": 2, "_done": False}
    assert tracker["neither"] == {"x": 1, "_done": False, "_tries": 0}
    assert tracker["fine"] == {"_done": False, "_tries": 0}
    assert assert_counts(tracker) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 1}
    # And it keeps working.
    assert tracker.try_it("neither") is True
    assert tracker.try_it("no_done") is False
    tracker.mark_done("neither")
    assert list(tracker.todo_keys()) == ["fine"]
    tracker = reopen(tracker, open_pods)
    assert tracker["neither"] == {"x": 1, "_done": True, "_tries": 1}


def test_records_written_by_a_plain_pod_are_repaired(
    open_tracker: OpenTracker, open_pods: list[tastypy.POD], store: Path
) -> None:
    """A POD opened on a tracker's store can write anything; the tracker repairs it."""
    open_tracker().close()  # a tracker store, empty
    pod = tastypy.POD(store)
    pod["dict_no_fields"] = {"payload": 1}
    pod["only_done"] = {"_done": True}
    pod["only_tries"] = {"_tries": 3}
    pod["number"] = 5
    pod["text"] = "hello"
    pod.close()

    tracker = open_tracker(max_tries=3)
    assert dict(tracker.items()) == {
        "dict_no_fields": {"payload": 1, "_done": False, "_tries": 0},
        "only_done": {"_done": True, "_tries": 0},
        "only_tries": {"_tries": 3, "_done": False},
        "number": {"value": 5, "_done": False, "_tries": 0},
        "text": {"value": "hello", "_done": False, "_tries": 0},
    }
    assert assert_counts(tracker) == {"done": 1, "tried": 1, "aborted": 0, "exhausted": 1}
    assert tracker.try_it("number") is True
    assert list(tracker.todo_keys()) == ["dict_no_fields", "number", "text"]
    tracker = reopen(tracker, open_pods)
    assert tracker["number"] == {"value": 5, "_done": False, "_tries": 1}
    assert tracker["text"] == {"value": "hello", "_done": False, "_tries": 0}
    assert_counts(tracker)


def test_unusable_tries_are_refused_at_assignment(open_tracker: OpenTracker) -> None:
    tracker = open_tracker(max_tries=1)
    for bad in ("many", True, -1, 2.5):
        with pytest.raises(TypeError, match="_tries"):
            tracker["a"] = {"_tries": bad}
    assert "a" not in tracker
    tracker["a"] = {"_done": 1}  # flags count by their truth
    assert assert_counts(tracker) == {"done": 1, "tried": 0, "aborted": 0, "exhausted": 0}


def test_unusable_tries_set_through_a_held_record_are_not_synced(
    open_tracker: OpenTracker,
) -> None:
    """Like a value that cannot be encoded: the sync names it and keeps the last good one."""
    tracker = open_tracker(max_tries=3)
    tracker.add("a")
    tracker.add("b")
    tracker.sync()
    record = tracker["a"]
    record["_tries"] = "many"  # behind the tracker's back
    tracker["b"]["_done"] = True
    with pytest.raises(TypeError, match=r"'a'.*_tries"):
        tracker.sync()
    path = tracker.path
    seen = ProgressTracker(path, readonly=True)
    assert seen["a"]["_tries"] == 0 and seen["b"]["_done"] is True  # b was saved
    seen.close()
    record["_tries"] = 2
    tracker.close()
    again = ProgressTracker(path, readonly=True)
    assert again["a"]["_tries"] == 2
    again.close()


# -- stores of the other kind ---------------------------------------------------------


def test_opening_a_plain_pod_store_as_tracker_raises_settings_error(store: Path) -> None:
    pod = tastypy.POD(store)
    pod["a"] = {"_done": False, "_tries": 0}
    pod.close()
    with pytest.raises(tastypy.SettingsError):
        ProgressTracker(store)
    # The failed open left the store as it was, and unlocked.
    with tastypy.POD(store) as pod:
        assert list(pod.items()) == [("a", {"_done": False, "_tries": 0})]


def test_opening_a_plain_pod_store_read_only_as_tracker_raises_settings_error(
    store: Path,
) -> None:
    with tastypy.POD(store) as pod:
        pod["a"] = 1
    with pytest.raises(tastypy.SettingsError):
        ProgressTracker(store, readonly=True)


def test_an_empty_plain_pod_store_becomes_a_tracker(
    store: Path, open_pods: list[tastypy.POD]
) -> None:
    tastypy.POD(store).close()
    tracker = ProgressTracker(store)
    open_pods.append(tracker)
    tracker.add("a")
    tracker = reopen(tracker, open_pods)
    assert list(tracker) == ["a"]
