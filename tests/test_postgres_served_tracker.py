"""A tracker on PostgreSQL served on demand: the same answers as one loaded whole.

A tracker on a store of layout 4 loads nothing: its counts are the store's
tallies with its own changes on top, its tasks to do are pages of the
store, its records are read as needed (``tracker/_served.py``). Here random
sequences of the tracker's API run on two stores at once, one tracker served
on demand (with a tiny window and tiny pages, so that values leave memory
and iterations span pages) and one loaded whole, and every answer is
compared after every step.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy._window import Window
from tastypy.storage.postgres import PostgresStorage
from tastypy.tracker import _run, _served
from tastypy.tracker._served import ServedCounts
from tastypy.tracker._tracker import ProgressTracker

from _postgres import Server


@pytest.fixture
def url(pg_server: Server) -> str:
    return pg_server.url()


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Window, "capacity", 4)
    monkeypatch.setattr(Window, "page_size", 2)
    monkeypatch.setattr(_served, "_PAGE", 3)


class Loaded(ProgressTracker):
    """A tracker that is never served on demand: the reference."""

    _ON_DEMAND_NEEDS = frozenset({"never"})


def answers(tracker: ProgressTracker, *, ordered: bool) -> dict[str, Any]:
    """What the tracker says; the order of keys only if *ordered* (see below)."""
    now = time.time()
    keys, todo = list(tracker), list(tracker.todo_keys())
    return {
        "len": len(tracker),
        "keys": keys if ordered else sorted(keys),
        "done": tracker.num_done(),
        "tried": tracker.num_tried(),
        "aborted": tracker.num_aborted(),
        "exhausted": tracker.num_exhausted(),
        "percent": tracker.percent_done(),
        "todo": todo if ordered else sorted(todo),
        "waiting": sorted(k for k, at in tracker.waiting_keys().items() if at > now + 1),
        "records": {key: dict(record) for key, record in tracker.items()},
    }


def step(  # noqa: PLR0912  # a branch per operation
    rng: random.Random, tracker: ProgressTracker, held: dict[str, Any], n: int
) -> None:
    """Apply the *n*-th random operation (its choices made by *rng*, the same for both)."""
    key = f"k{rng.randrange(12)}"
    op = rng.randrange(16)
    there = key in tracker
    if op == 0:
        tracker.add_many_if_absent([f"k{rng.randrange(12)}" for _ in range(3)])
    elif op == 1:
        tracker.try_it(key)
    elif op == 2 and there:
        tracker.mark_done(key)
    elif op == 3 and there:
        tracker.abort(key)
    elif op == 4 and there:
        tracker.unabort(key)
    elif op == 5 and there:
        tracker.reset_tries(key)
    elif op == 6 and there:
        tracker.mark_not_done(key)
    elif op == 7 and there:
        del tracker[key]
    elif op == 8:
        later = rng.choice([4e9, 1e9])  # a retry not due (in 2096), or due
        tracker[key] = {"_done": False, "_tries": rng.randrange(3), "_retry_at": later}
    elif op == 9 and there:
        tracker[key]["note"] = n  # nested, through the tracker
    elif op == 10 and there:
        held[key] = tracker[key]  # the program keeps the record
    elif op == 11 and held:
        name = rng.choice(sorted(held))
        field = rng.choice(["_done", "_aborted", "_tries"])
        held[name][field] = rng.randrange(3) if field == "_tries" else rng.random() < 0.5
    elif op == 12:
        tracker.sync()
    elif op == 13 and held and rng.random() < 0.5:
        held.pop(rng.choice(sorted(held)))  # let go of it
    elif op == 14:
        tracker[key] = {"_done": rng.random() < 0.3, "_tries": rng.randrange(4)}
    elif op == 15 and rng.random() < 0.1:
        tracker.clear()
        held.clear()


@pytest.mark.parametrize("seed", range(6))
def test_a_served_tracker_answers_as_a_loaded_one(
    url: str, pg_name: str, tiny: None, seed: int
) -> None:
    served = tastypy.Tracker(url, name=pg_name + "-s", max_tries=2, sync_at=5)
    loaded = Loaded(url, name=pg_name + "-l", max_tries=2, sync_at=5)
    assert isinstance(served._tally, ServedCounts)
    assert not isinstance(loaded._tally, ServedCounts)
    held: list[dict[str, Any]] = [{}, {}]
    try:
        for n in range(120):
            for tracker, mine in zip((served, loaded), held, strict=True):
                step(random.Random(seed * 1_000 + n), tracker, mine, n)
            mine, theirs = answers(served, ordered=False), answers(loaded, ordered=False)
            assert mine == theirs, f"seed {seed}, after step {n}"
            if n % 10 == 9:  # the order, as each store has it once synced
                served.sync()
                loaded.sync()
                with tastypy.Tracker(url, name=pg_name + "-s", readonly=True) as reader:
                    assert isinstance(reader._tally, ServedCounts)
                    mine = answers(reader, ordered=True)
                with Loaded(url, name=pg_name + "-l", readonly=True) as reader:
                    theirs = answers(reader, ordered=True)
                # (A loaded tracker shows a key added and not yet synced where it
                # was added, though a task committed at once by another call,
                # add_many_if_absent, goes before it in the store; served, a
                # tracker shows the store's order.)
            assert mine == theirs, f"seed {seed}, after step {n}"
    finally:
        served.close()
        loaded.close()
    with (
        tastypy.Tracker(url, name=pg_name + "-s", readonly=True) as again,
        Loaded(url, name=pg_name + "-l", readonly=True) as reference,
    ):
        assert answers(again, ordered=True) == answers(reference, ordered=True)


def make_store(url: str, name: str, count: int) -> None:
    with tastypy.Tracker(url, name=name, max_tries=3) as tracker:
        tracker.add_many(f"t{i:05d}" for i in range(count))
        for i in range(0, count, 3):
            tracker.mark_done(f"t{i:05d}")


def test_opening_a_served_tracker_reads_no_record(
    url: str, pg_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_store(url, pg_name, 3_000)
    reads: list[int] = []
    real = Window._fetch

    def counted(self: Window, key: str) -> Any:
        reads.append(1)
        return real(self, key)

    monkeypatch.setattr(Window, "_fetch", counted)
    with tastypy.Tracker(url, name=pg_name) as tracker:
        assert isinstance(tracker._tally, ServedCounts)
        assert len(tracker._window.resident()) == 0  # type: ignore[union-attr]
        assert tracker.num_done() == 1_000
        assert tracker.percent_done() == "33.33 %"
        assert next(tracker.todo_keys()) == "t00001"
        assert reads == []  # neither opening nor counting read a record


def test_add_many_asks_the_store_once_for_all_keys(
    url: str, pg_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_store(url, pg_name, 3_000)
    with tastypy.Tracker(url, name=pg_name) as tracker:
        calls: list[int] = []
        real = tracker._storage.present  # type: ignore[union-attr]

        def present(keys: list[str]) -> set[str]:
            calls.append(len(keys))
            found: set[str] = real(keys)
            return found

        monkeypatch.setattr(tracker._storage, "present", present)
        with pytest.raises(tastypy.DuplicateKeyError, match="t02999"):
            tracker.add_many(["new1", "t02999"])
        tracker.add_many(f"n{i}" for i in range(2_500))
        assert len(tracker) == 5_500
        # One lookup of both keys (after the COPY of them failed), no query
        # per key; the new tasks went in one COPY, with no lookup at all.
        assert calls == [2]


def test_a_record_missing_fields_or_not_a_dict_reads_with_the_defaults(
    url: str, pg_name: str
) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(["a", "b", "c"])
    with tastypy.POD(url, name=pg_name) as pod:  # as a hand edit would leave them
        pod["a"] = {"result": 1}
        pod["b"] = [1, 2]
    with tastypy.Tracker(url, name=pg_name) as tracker:
        assert isinstance(tracker._tally, ServedCounts)
        assert dict(tracker["a"]) == {"result": 1, "_done": False, "_tries": 0}
        assert dict(tracker["b"]) == {"value": [1, 2], "_done": False, "_tries": 0}
        assert list(tracker.todo_keys()) == ["a", "b", "c"]
        assert tracker.try_it("b")
        tracker.mark_done("b")
    with tastypy.Tracker(url, name=pg_name, readonly=True) as reader:
        assert dict(reader["b"]) == {"value": [1, 2], "_done": True, "_tries": 1}


def test_a_record_whose_tries_are_unusable_is_refused_at_open_naming_it(
    url: str, pg_name: str
) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many(["a", "b"])
    with tastypy.POD(url, name=pg_name) as pod:
        pod["b"] = {"_done": False, "_tries": "3"}
    with pytest.raises(tastypy.CorruptStoreError, match=r"task 'b': field _tries is '3'"):
        tastypy.Tracker(url, name=pg_name)


def test_counts_follow_a_record_the_program_changes_in_place(
    url: str, pg_name: str, tiny: None
) -> None:
    make_store(url, pg_name, 30)
    with tastypy.Tracker(url, name=pg_name) as tracker:
        record = tracker["t00001"]
        assert tracker.num_done() == 10
        record["_done"] = True  # no setter sees it
        assert tracker.num_done() == 11
        for key in list(tracker)[:20]:  # the window lets other values go meanwhile
            tracker[key]
        record["_aborted"] = 1
        assert tracker.num_aborted() == 1
        assert tracker.num_done() == 11
    with tastypy.Tracker(url, name=pg_name, readonly=True) as reader:
        assert reader.num_done() == 11
        assert reader.num_aborted() == 1


def test_todo_keys_see_another_writers_commits_and_skip_exhausted_tasks(
    url: str, pg_name: str
) -> None:
    make_store(url, pg_name, 9)
    with tastypy.Tracker(url, name=pg_name, max_tries=1) as tracker:
        first = list(tracker.todo_keys())
        assert first == [f"t{i:05d}" for i in range(9) if i % 3]
        with tastypy.Tracker(storage=PostgresStorage(url, pg_name)) as other:
            assert other.try_it("t00001")
            other.mark_done("t00002")
        assert tracker.try_it("t00004")  # tried once: exhausted (max_tries=1) once it ends
        tracker.sync()
        assert list(tracker.todo_keys()) == ["t00005", "t00007", "t00008"]


def test_a_served_tracker_copied_to_files_counts_its_records_there(
    url: str, pg_name: str, tmp_path: Path
) -> None:
    make_store(url, pg_name, 30)
    with tastypy.Tracker(url, name=pg_name) as tracker:
        assert tracker.try_it("t00001")
        tracker.mark_done("t00001")
        tracker.copy(tmp_path / "copy")
        assert not isinstance(tracker._tally, ServedCounts)
        assert tracker.num_done() == 11
        tracker.mark_done("t00002")
        assert tracker.num_done() == 12
    with tastypy.Tracker(tmp_path / "copy", readonly=True) as copied:
        assert copied.num_done() == 12
        assert list(copied.todo_keys())[:2] == ["t00004", "t00005"]
    with tastypy.Tracker(tmp_path / "copy") as back:
        back.copy(url, name=pg_name + "-back")
    with tastypy.Tracker(url, name=pg_name + "-back") as again:
        assert isinstance(again._tally, ServedCounts)
        assert again.num_done() == 12
        assert list(again) == [f"t{i:05d}" for i in range(30)]


# -- found by an adversarial review: each failed before its fix -------------------


def test_a_record_changed_in_place_after_its_sync_and_let_go_still_counts(
    url: str, pg_name: str
) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many([f"t{i:02d}" for i in range(10)])
        seen = []
        for i in range(10):
            record = tracker[f"t{i:02d}"]
            tracker.sync()  # while the program holds it
            record["_done"] = True  # then the work ends
            seen.append(tracker.num_done())
        del record
        assert seen == list(range(1, 11))
        assert tracker.num_done() == 10
        tracker.sync()
        assert tracker.num_done() == 10
        assert list(tracker.todo_keys()) == []
    with tastypy.Tracker(url, name=pg_name, readonly=True) as reader:
        assert reader.num_done() == 10


def test_todo_keys_show_keys_added_here_though_a_sync_in_the_loop_let_them_go(
    url: str, pg_name: str, tiny: None
) -> None:
    with tastypy.Tracker(url, name=pg_name) as tracker:
        tracker.add_many([f"o{i:02d}" for i in range(20)])
        for i in range(20):
            tracker.mark_done(f"o{i:02d}")
        tracker.add_many([f"a{i}" for i in range(7)])
        tracker.sync()
        for i in range(6):
            tracker[f"n{i}"] = {"_done": False, "_tries": 0}  # not synced: at the end
        seen = []
        for key in tracker.todo_keys():
            seen.append(key)
            tracker.sync()  # sync_at reached in the job's loop
            for i in range(20):  # other reads: the window lets values go
                tracker.check(f"o{i:02d}")
    assert seen == [f"a{i}" for i in range(7)] + [f"n{i}" for i in range(6)]


def test_todo_keys_list_a_record_that_is_not_a_dict_unread(url: str, pg_name: str) -> None:
    with tastypy.Tracker(url, name=pg_name, max_tries=2) as tracker:
        tracker.add_many(["a", "b", "c", "d"])
    with tastypy.POD(url, name=pg_name) as pod:  # as a hand edit would leave them
        pod["b"] = [1, 2]
        pod["c"] = "hello"
        pod["d"] = {"_done": False, "_tries": 5}  # exhausted (max_tries=2)
    with tastypy.Tracker(url, name=pg_name) as tracker:
        assert list(tracker.todo_keys()) == ["a", "b", "c"]


def fill(tracker: ProgressTracker) -> None:
    """Tasks in every state: done, aborted, done and aborted, exhausted, waiting, to do."""
    tracker.add_many([f"t{i}" for i in range(12)])
    tracker["t0"] = {"_done": True, "_tries": 1}
    tracker["t1"] = {"_done": False, "_tries": 1, "_aborted": True}
    tracker["t2"] = {"_done": True, "_tries": 1, "_aborted": True}
    tracker["t3"] = {"_done": False, "_tries": 2}  # exhausted (max_tries=2)
    tracker["t4"] = {"_done": False, "_tries": 2, "_aborted": True}  # both: aborted
    tracker["t5"] = {"_done": False, "_tries": 1, "_retry_at": 4e9}  # waiting
    tracker["t6"] = {"_done": False, "_tries": 1}  # failed once


def flaky(key: str) -> None:
    if key in ("t7", "t6"):
        raise ValueError(key)


@pytest.mark.parametrize("keys", [None, ["t0", "t3", "t6", "t7", "t8", "new"]])
def test_run_on_a_served_tracker_sums_up_as_on_a_loaded_one(
    url: str, pg_name: str, tiny: None, keys: list[str] | None
) -> None:
    results = []
    for cls, suffix in ((tastypy.Tracker, "-s"), (Loaded, "-l")):
        with cls(url, name=pg_name + suffix, max_tries=2) as tracker:
            fill(tracker)
            tracker.sync()
            summary = tracker.run(flaky, keys, progress=False)
            records = {key: dict(record) for key, record in tracker.items()}
            for record in records.values():
                record.pop("_seconds", None)  # how long it took
                for error in record.get("_errors", []):
                    error.pop("at", None)  # when it failed
                    error.pop("traceback", None)
            results.append((summary, records, tracker.num_done(), tracker.num_exhausted()))
    assert isinstance(results[0][0].skipped, int)
    assert results[0] == results[1]


def test_run_waits_for_retries_on_a_served_tracker_as_on_a_loaded_one(
    url: str, pg_name: str, tiny: None
) -> None:
    calls: dict[str, int] = {}

    def twice_flaky(key: str) -> None:  # t7 fails twice, t6 once, then both succeed
        calls[key] = calls.get(key, 0) + 1
        if (key == "t7" and calls[key] <= 2) or (key == "t6" and calls[key] <= 1):
            raise ValueError(key)

    results = []
    for cls, suffix in ((tastypy.Tracker, "-s"), (Loaded, "-l")):
        calls.clear()
        with cls(url, name=pg_name + suffix, max_tries=4, retry_delay=0.05, backoff=1) as tracker:
            fill(tracker)
            del tracker["t5"]  # (waiting until 2096: the run would wait for it)
            tracker.sync()
            summary = tracker.run(twice_flaky, progress=False)
            tries = {key: tracker.tries(key) for key in tracker}
            results.append((summary, tries, dict(calls), tracker.num_done()))
    assert results[0][2]["t7"] == 3  # two retries, waited for
    assert results[0] == results[1]


def test_run_retries_a_task_added_here_and_not_synced_when_it_began(
    url: str, pg_name: str, tiny: None
) -> None:
    # Its first sync in the run puts it past the store's end at the start:
    # still one of the run's tasks, to wait for and try again.
    results = []
    for cls, suffix in ((tastypy.Tracker, "-s"), (Loaded, "-l")):
        with cls(url, name=pg_name + suffix, max_tries=3, retry_delay=0.05) as tracker:
            tracker.add_many([f"t{i}" for i in range(7)])
            tracker.sync()
            soon = time.time() + 0.1
            tracker["new"] = {"_done": False, "_tries": 1, "_retry_at": soon, "_errors": []}
            tracker["t3"] = {"_done": False, "_tries": 1, "_retry_at": soon, "_errors": []}

            def work(key: str, tracker: ProgressTracker = tracker) -> None:
                if key == "t0":
                    tracker.sync()  # a checkpoint: "new" goes to the store's end

            summary = tracker.run(work, progress=False)
            results.append((summary, {key: tracker.tries(key) for key in tracker}))
    assert results[0][1]["new"] == 2
    assert results[0] == results[1]


def test_run_leaves_alone_the_tasks_another_process_added_since_it_began(
    url: str, pg_name: str
) -> None:
    # As with a list of the tasks taken at the start: another writer's new
    # tasks are not this run's to retry, wait for, or count.
    with tastypy.Tracker(url, name=pg_name, max_tries=3, retry_delay=0.05) as tracker:
        tracker.add_many(["a", "b"])
    tried: list[str] = []
    with (
        tastypy.Tracker(url, name=pg_name, max_tries=3, retry_delay=0.05) as tracker,
        tastypy.Tracker(url, name=pg_name, max_tries=3) as other,
    ):

        def work(key: str) -> None:
            tried.append(key)
            if key == "a":  # meanwhile, another process adds a retry to come, and a task spent
                other["late"] = {"_done": False, "_tries": 1, "_retry_at": time.time() + 0.3}
                other["spent"] = {"_done": False, "_tries": 3}
                other.sync()

        summary = tracker.run(work, progress=False)
        assert tried == ["a", "b"]
        assert (summary.done, summary.exhausted, summary.waiting) == (2, 0, 0)
        assert tracker.tries("late") == 1
        assert tracker.num_exhausted() == 1  # the store's count: every task


def test_run_reads_the_tasks_to_do_a_page_at_a_time(
    url: str, pg_name: str, tiny: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run() without keys never lists every task to do (a worker's memory
    # would grow with the store): it reads ahead a page, and records for
    # PREFETCH tasks, so its first task runs after one page here.
    monkeypatch.setattr(_run, "PREFETCH", 3)
    make_store(url, pg_name, 30)  # t00000, t00003, ... done: 20 to do
    with tastypy.Tracker(url, name=pg_name, max_tries=2) as tracker:
        engine = tracker._storage
        pages: list[int] = []
        real = engine.to_do_page  # type: ignore[union-attr]

        def to_do_page(*args: Any, **kwargs: Any) -> Any:
            pages.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(engine, "to_do_page", to_do_page)
        pages_at_each: list[int] = []

        def work(key: str) -> None:
            pages_at_each.append(len(pages))
            if key == "t00001":
                raise ValueError(key)

        summary = tracker.run(work, progress=False)
        assert pages_at_each[0] == 1
        assert pages_at_each[-1] >= 20 // 3  # pages of 3 tasks (the tiny fixture)
        assert (summary.done, summary.failed, summary.skipped) == (19, 1, 10)
        summary = tracker.run(work, progress=False)  # t00001 again: its second and last try
        assert (summary.done, summary.failed, summary.exhausted) == (0, 1, 1)
    with tastypy.Tracker(url, name=pg_name, max_tries=2, readonly=True) as reader:
        assert reader.num_done() == 29
        assert list(reader.todo_keys()) == []


def test_a_task_another_process_finished_and_this_one_reopened_can_be_tried(
    url: str, pg_name: str, tiny: None
) -> None:
    make_store(url, pg_name, 10)
    with tastypy.Tracker(url, name=pg_name) as tracker:
        with tastypy.Tracker(storage=PostgresStorage(url, pg_name)) as other:
            assert other.try_it("t00001")
            other.mark_done("t00001")
        tracker.sync()  # hears that t00001 is done
        assert not tracker.try_it("t00001")  # refused without asking
        tracker.mark_not_done("t00001")
        tracker.sync()
        for i in range(10):  # the window lets t00001 go
            tracker.check(f"t{i:05d}")
        assert tracker.try_it("t00001")  # this process's own commit is the news now


# -- found by a second review: each failed before its fix -------------------------


def heard_done(url: str, name: str, tracker: ProgressTracker) -> ProgressTracker:
    """Another writer of the store, which finishes t00001; *tracker* syncs and hears of it."""
    other = tastypy.Tracker(storage=PostgresStorage(url, name))
    assert other.try_it("t00001")
    other.mark_done("t00001")
    other.sync()
    tracker.sync()
    assert not tracker.try_it("t00001")  # refused without asking
    return other


def test_what_a_tracker_heard_of_settled_tasks_goes_with_a_revert(
    url: str, pg_name: str, tiny: None
) -> None:
    make_store(url, pg_name, 10)
    with tastypy.Tracker(url, name=pg_name) as tracker:
        other = heard_done(url, pg_name, tracker)
        other.mark_not_done("t00001")
        other.close()
        tracker.revert()  # reads the store anew: what it heard before is stale
        assert tracker.try_it("t00001")


def test_what_a_tracker_heard_goes_when_a_compaction_removed_rows_it_never_read(
    url: str, pg_name: str, tiny: None
) -> None:
    make_store(url, pg_name, 10)
    with tastypy.Tracker(url, name=pg_name) as tracker:
        other = heard_done(url, pg_name, tracker)
        del other["t00001"]
        other.sync()
        other.compact()
        other.close()
        tracker.sync()
        assert tracker.try_it("t00001")  # a new task again
        assert "t00001" in tracker


def test_a_task_deleted_here_is_added_again_by_try_it_though_heard_settled(
    url: str, pg_name: str, tiny: None
) -> None:
    make_store(url, pg_name, 10)
    with tastypy.Tracker(url, name=pg_name) as tracker:
        heard_done(url, pg_name, tracker).close()
        tracker.sync()
        flush = [tracker.check(f"t{i:05d}") for i in range(10)]
        assert flush[1]
        del tracker["t00001"]
        assert tracker.try_it("t00001")  # added again (its tries: as the claims counted)
        assert "t00001" in tracker
