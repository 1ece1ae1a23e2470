"""Model-based test of the tracker's counts: after every step they equal a recount.

The model is a plain ``dict`` of task records, changed exactly as each step
says. After every step every count the tracker gives (``num_done``,
``num_tried``, ``num_aborted``, ``num_exhausted``, ``fraction_done``,
``percent_done()``, ``todo_keys()``) must equal a brute-force recount over
the model, using the definitions of the README:

- done: ``_done`` truthy;
- tried: ``_tries > 0``;
- aborted: ``_aborted`` truthy;
- exhausted: not done, ``max_tries`` set, and ``_tries >= max_tries``;
- todo: not done, not aborted, not exhausted (in order).

Records are changed through the tracker's methods, by assignment, and through
references the tracker handed out earlier (``rec = t[k]`` kept across steps
and syncs, then ``rec["_done"] = True``), also inside a loop over ``items()``
that asks for ``percent_done()`` on every iteration.

Set ``TASTYPY_HYPOTHESIS_EXAMPLES`` to run more examples (default 100).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tastypy import DuplicateKeyError, ProgressTracker

from _subproc import run

EXAMPLES = int(os.environ.get("TASTYPY_HYPOTHESIS_EXAMPLES", "100"))

KEYS = st.sampled_from(["a", "b", "c", "d", "e", "f"])
MAX_TRIES = st.sampled_from([None, 1, 2, 3])
# JSON values with every kind of truthiness; a flag counts if it is truthy.
FLAGS = st.sampled_from([True, False, 1, 0, None, "", "yes"])
TRIES = st.integers(0, 4)
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "_done": FLAGS,
        "_tries": TRIES,
        "_aborted": FLAGS,
        "result": st.integers(-2, 2) | st.text(max_size=3),
    },
)


def tries_of(record: dict[str, Any]) -> int:
    tries = record.get("_tries")
    return tries if type(tries) is int else 0


def recount(records: dict[str, dict[str, Any]], max_tries: int | None) -> dict[str, Any]:
    """Every count, from scratch, by the README's definitions."""
    done = {k for k, r in records.items() if r.get("_done")}
    tried = {k for k, r in records.items() if tries_of(r) > 0}
    aborted = {k for k, r in records.items() if r.get("_aborted")}
    exhausted = {
        k for k, r in records.items() if k not in done and max_tries and tries_of(r) >= max_tries
    }
    n = len(records)
    fraction = len(done) / n if n else 0.0
    return {
        "num_done": len(done),
        "num_tried": len(tried),
        "num_aborted": len(aborted),
        "num_exhausted": len(exhausted),
        "fraction_done": fraction,
        "percent_done": f"{fraction * 100:.2f} %",
        "todo_keys": [k for k in records if k not in done | aborted | exhausted],
    }


def counts_of(tracker: ProgressTracker) -> dict[str, Any]:
    """Every count, as the tracker gives it (reads no record through the mapping)."""
    return {
        "num_done": tracker.num_done(),
        "num_tried": tracker.num_tried(),
        "num_aborted": tracker.num_aborted(),
        "num_exhausted": tracker.num_exhausted(),
        "fraction_done": tracker.fraction_done(),
        "percent_done": tracker.percent_done(),
        "todo_keys": list(tracker.todo_keys()),
    }


def assert_counts(got: dict[str, Any], expected: dict[str, Any], records: Any, when: str) -> None:
    wrong = {name: (got[name], expected[name]) for name in expected if got[name] != expected[name]}
    assert not wrong, (
        f"counts {when} differ from a recount (name: (tracker, recount)): {wrong}; "
        f"records: {records!r}"
    )


class TrackerMachine(RuleBasedStateMachine):
    """A tracker with small ``sync_at``, driven alongside a dict of records."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="tastypy-tracker-stateful-"))
        self.path = self.tmp / "tracker"
        self.tracker: ProgressTracker | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self.max_tries: int | None = None
        self.sync_at = 2
        # key -> the record object the tracker handed out (or was given), kept
        # to change later, while it is still the record the tracker holds.
        self.refs: dict[str, dict[str, Any]] = {}

    @property
    def t(self) -> ProgressTracker:
        assert self.tracker is not None
        return self.tracker

    def open_store(self, max_tries: int | None) -> ProgressTracker:
        """Open the tracker's store, the first time and again after a close.

        The one place that says where the store is: the memory engine's
        machine (test_tracker_stateful_memory.py) overrides it.
        """
        return ProgressTracker(self.path, sync_at=self.sync_at, max_tries=max_tries)

    @initialize(sync_at=st.sampled_from([2, 3, 5, 1000]), max_tries=MAX_TRIES)
    def open_tracker(self, sync_at: int, max_tries: int | None) -> None:
        self.sync_at, self.max_tries = sync_at, max_tries
        self.tracker = self.open_store(max_tries)

    def teardown(self) -> None:
        try:
            if self.tracker is not None and not self.tracker.closed:
                self.tracker.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _present(self) -> list[str]:
        return list(self.records)

    def _new(self, key: str) -> None:
        self.records[key] = {"_done": False, "_tries": 0}
        self.refs.pop(key, None)

    # -- adding ---------------------------------------------------------------------

    @rule(key=KEYS)
    def add(self, key: str) -> None:
        if key in self.records:
            with pytest.raises(DuplicateKeyError):
                self.t.add(key)
        else:
            self.t.add(key)
            self._new(key)

    @rule(keys=st.lists(KEYS, max_size=4))
    def add_many(self, keys: list[str]) -> None:
        if len(set(keys)) != len(keys) or any(k in self.records for k in keys):
            with pytest.raises(DuplicateKeyError):
                self.t.add_many(keys)
        else:
            self.t.add_many(keys)
            for key in keys:
                self._new(key)

    @rule(key=KEYS)
    def try_it(self, key: str) -> None:
        if key not in self.records:
            self._new(key)
        record = self.records[key]
        tries = tries_of(record)
        limit = self.max_tries
        expected = not (record.get("_done") or record.get("_aborted")) and not (
            limit and tries >= limit
        )
        if expected:
            record["_tries"] = tries + 1
        got = self.t.try_it(key)
        assert got is expected, f"try_it({key!r}) returned {got}; record {record!r}"

    # -- the setters ----------------------------------------------------------------

    @precondition(lambda self: self.records)
    @rule(
        data=st.data(),
        op=st.sampled_from(["mark_done", "mark_not_done", "abort", "unabort", "reset_tries"]),
    )
    def setter(self, data: st.DataObject, op: str) -> None:
        key = data.draw(st.sampled_from(self._present()), label="key")
        getattr(self.t, op)(key)
        record = self.records[key]
        if op == "mark_done":
            record["_done"] = True
        elif op == "mark_not_done":
            record["_done"] = False
        elif op == "abort":
            record["_aborted"] = True
        elif op == "unabort":
            record.pop("_aborted", None)
        else:
            record["_tries"] = 0

    # -- the mapping ------------------------------------------------------------------

    @rule(key=KEYS, record=RECORDS)
    def assign(self, key: str, record: dict[str, Any]) -> None:
        self.t[key] = record
        expected = copy.deepcopy(record)
        expected.setdefault("_done", False)
        expected.setdefault("_tries", 0)
        self.records[key] = expected
        self.refs[key] = record  # the tracker holds this very dict

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        if key in self.records:
            del self.t[key]
            del self.records[key]
            self.refs.pop(key, None)
        else:
            with pytest.raises(KeyError):
                del self.t[key]

    @precondition(lambda self: self.records)
    @rule(data=st.data())
    def keep_a_record(self, data: st.DataObject) -> None:
        """``rec = t[k]``, kept to change in later steps."""
        key = data.draw(st.sampled_from(self._present()), label="key")
        self.refs[key] = self.t[key]

    @precondition(lambda self: self.refs)
    @rule(
        data=st.data(),
        field=st.sampled_from(["_done", "_tries", "_aborted", "del _aborted"]),
    )
    def change_a_kept_record(self, data: st.DataObject, field: str) -> None:
        """``rec["_done"] = True`` (or another field) on a record kept from earlier."""
        key = data.draw(st.sampled_from(sorted(self.refs)), label="key")
        rec, record = self.refs[key], self.records[key]
        if field == "del _aborted":
            rec.pop("_aborted", None)
            record.pop("_aborted", None)
            return
        value = data.draw(TRIES if field == "_tries" else FLAGS, label="value")
        rec[field] = value
        record[field] = value

    @rule(marks=st.lists(st.booleans(), min_size=1, max_size=6))
    def loop_over_items(self, marks: list[bool]) -> None:
        """``for k, rec in t.items(): t.percent_done(); rec["_done"] = True`` (some of them)."""
        for i, (key, rec) in enumerate(self.t.items()):
            expected = recount(self.records, self.max_tries)["percent_done"]
            got = self.t.percent_done()
            assert got == expected, (
                f"percent_done() at item {i} ({key!r}) of a loop over items() is {got}, "
                f"a recount gives {expected}; records {self.records!r}"
            )
            self.refs[key] = rec
            if marks[i % len(marks)]:
                rec["_done"] = True
                self.records[key]["_done"] = True

    @rule()
    def read_all(self) -> None:
        items = list(self.t.items())
        differ = {
            key: (dict(items).get(key), self.records.get(key))
            for key in dict(items).keys() | self.records.keys()
            if dict(items).get(key) != self.records.get(key)
        }
        assert not differ, f"records (key: (tracker, model)) differ: {differ}"
        assert [key for key, _ in items] == list(self.records)
        for key, rec in items:
            self.refs[key] = rec

    # -- syncing and reopening -----------------------------------------------------------

    @rule()
    def sync(self) -> None:
        self.t.sync()

    @rule(max_tries=st.none() | st.sampled_from([0, 1, 2, 3]))
    def close_and_reopen(self, max_tries: int | None) -> None:
        self.t.close()
        self.tracker = self.open_store(max_tries)
        if max_tries is not None:  # an explicit value replaces the stored one
            self.max_tries = max_tries or None
        self.refs.clear()
        assert list(self.t) == list(self.records)

    # -- after every step ------------------------------------------------------------

    @invariant()
    def counts_equal_a_recount(self) -> None:
        if self.tracker is None:
            return
        # The counts are asked first: reading records would re-check them.
        got = counts_of(self.t)
        assert_counts(got, recount(self.records, self.max_tries), self.records, "after this step")
        assert list(self.t) == list(self.records)


TrackerMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # One bug at a time: shrinking several at once takes longer than the run.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
TestTrackerCounts = TrackerMachine.TestCase


# -- plain examples ----------------------------------------------------------------------


def test_counts_after_a_kept_record_is_changed(tmp_path: Path) -> None:
    """``rec = t[k]``, counts asked, then ``rec["_done"] = True``: the count follows."""
    with ProgressTracker(tmp_path / "tracker", max_tries=2) as t:
        t.add_many(["a", "b", "c"])
        rec = t["a"]
        assert t.num_done() == 0
        rec["_done"] = True
        rec["_tries"] = 1
        got = counts_of(t)  # asked first: reading items() re-checks every record
        records = {k: dict(r) for k, r in t.items()}
        assert_counts(got, recount(records, 2), records, "after rec changes")


def test_percent_done_in_a_loop_over_items(tmp_path: Path) -> None:
    with ProgressTracker(tmp_path / "tracker", sync_at=3) as t:
        t.add_many([f"k{i}" for i in range(10)])
        seen = []
        for _key, rec in t.items():
            seen.append(t.percent_done())
            rec["_done"] = True
        assert seen == [f"{i * 10:.2f} %" for i in range(10)]
        assert t.percent_done() == "100.00 %"
        assert t.num_done() == 10


WRITER_KILLED_AFTER_TRIES = """
    import os, signal, sys
    import tastypy
    t = tastypy.Tracker(sys.argv[1])
    for key in ["b", "c", "c", "d", "new"]:
        t.try_it(key)
    os.kill(os.getpid(), signal.SIGKILL)  # no sync: the tries are only in tries.jsonl
"""


@pytest.mark.parametrize("max_tries", [None, 2])
def test_read_only_tracker_counts_pending_tries(tmp_path: Path, max_tries: int | None) -> None:
    """A read-only tracker over a pending tries.jsonl counts what its items() say."""
    path = tmp_path / "tracker"
    with ProgressTracker(path, max_tries=max_tries) as t:
        t.add_many(["a", "b", "c", "d", "e"])
        t.try_it("a")
        t.try_it("d")
        t.mark_done("d")
    proc = run(WRITER_KILLED_AFTER_TRIES, str(path))
    assert proc.returncode == -9, proc.stderr
    assert (path / "tries.jsonl").stat().st_size > 0, "the writer left no pending tries"
    reader = ProgressTracker(path, readonly=True)
    try:
        got = counts_of(reader)  # asked first: reading items() re-checks every record
        records = {key: dict(record) for key, record in reader.items()}
        assert_counts(got, recount(records, max_tries), records, "of a read-only tracker")
        assert got["num_tried"] == 5, f"a, b, c, d and new were tried: {records}"
        assert reader.tries("c") == 2, records
    finally:
        reader.close()
