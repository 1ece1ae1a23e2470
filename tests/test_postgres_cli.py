"""The ``tastypy`` command on PostgreSQL stores: ``URL --name NAME`` or ``URL#NAME``.

Real commands (subprocesses) against the session's real server. No output,
error or not, ever shows the URL's password.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import tastypy

from _postgres import PASSWORD, Server


def tastypy_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "tastypy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert PASSWORD not in done.stdout + done.stderr, (args, done.stdout, done.stderr)
    return done


@pytest.fixture
def database(pg_server: Server, pg_name: str) -> str:
    """A database of its own (so that listing its stores is exact), as a URL with a password."""
    name = pg_name.replace("-", "_")
    pg_server.psql(f"CREATE DATABASE {name}")
    return pg_server.url(name)


@pytest.fixture
def crawl(database: str) -> Iterator[tastypy.Tracker]:
    """A tracker "crawl" with a done task, a failed one and a held one, still open."""
    tracker = tastypy.Tracker(database, name="crawl", max_tries=3)
    tracker.add_many(["a", "b", "c", "d"])
    assert tracker.try_it("a")
    tracker.mark_done("a")
    assert tracker.try_it("b")
    tracker.release("b")
    tracker.sync()
    assert tracker.try_it("c")  # held by this process while the commands run
    yield tracker
    tracker.close()


def test_a_url_without_a_name_lists_the_stores(database: str, crawl: tastypy.Tracker) -> None:
    tastypy.POD(database, name="results").close()
    with tastypy.POD(f"{database}#other") as other:
        other["x"] = 1
    done = tastypy_cmd("show", database)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["crawl", "tracker", "4"],
        ["other", "pod", "1"],
        ["results", "pod", "0"],
    ]
    listed = json.loads(tastypy_cmd("status", database, "--json").stdout)
    assert [store["name"] for store in listed] == ["crawl", "other", "results"]
    refused = tastypy_cmd("reset", database, "--all")
    assert refused.returncode == 2 and "give the store's name with --name" in refused.stderr


def test_the_read_commands_take_a_name_either_way(database: str, crawl: tastypy.Tracker) -> None:
    for where in (["--name", "crawl"], []):
        store = database if where else f"{database}#crawl"
        target = [store, *where]
        keys = tastypy_cmd("keys", *target)
        assert keys.stdout.split() == ["a", "b", "c", "d"], keys.stderr
        failed = tastypy_cmd("list", *target, "--state", "failed")
        assert failed.stdout.split() == ["b", "c"], failed.stderr
        show = json.loads(tastypy_cmd("show", *target, "--json").stdout)
        assert show["kind"] == "tracker" and show["keys"] == 4 and show["max_tries"] == 3
        assert show["path"].endswith("/" + database.rsplit("/", 1)[1] + "#crawl")
        record = json.loads(tastypy_cmd("show", store, "a", *where, "--json").stdout)
        assert record == {"_done": True, "_tries": 1}
        exported = tastypy_cmd("export", *target, "--format", "jsonl").stdout.splitlines()
        assert [json.loads(line)[0] for line in exported] == ["a", "b", "c", "d"]
        verified = tastypy_cmd("verify", *target)
        assert verified.returncode == 0 and "OK, 4 records" in verified.stdout


def test_status_shows_the_fleet_by_host_and_pid(database: str, crawl: tastypy.Tracker) -> None:
    import os
    import socket

    done = tastypy_cmd("status", f"{database}#crawl")
    assert done.returncode == 0, done.stderr
    assert f"pid {os.getpid()} on {socket.gethostname()}: holds 1" in done.stdout
    shot = json.loads(tastypy_cmd("status", f"{database}#crawl", "--json").stdout)
    assert shot["done"] == 1 and shot["failed"] == 2 and shot["untried"] == 1
    assert shot["processes"][0]["host"] == socket.gethostname()


def test_the_writing_commands_change_the_store(database: str, crawl: tastypy.Tracker) -> None:
    target = f"{database}#crawl"
    assert tastypy_cmd("set", target, "z", '{"_done": false, "_tries": 0}').returncode == 0
    assert tastypy_cmd("reset", target, "a").returncode == 0
    assert tastypy_cmd("del", target, "d").returncode == 0
    bad = tastypy_cmd("del", target, "nope")
    assert bad.returncode == 2 and "no key 'nope'; nothing was deleted" in bad.stderr
    crawl.refresh()
    assert list(crawl) == ["a", "b", "c", "z"]
    assert crawl["a"]["_done"] is False and crawl.tries("a") == 0


def test_copy_moves_a_store_between_engines_with_order_and_values(
    database: str, tmp_path: Path
) -> None:
    values = [("z", {"b": 1, "a": [2, {"d": 3, "c": None}]}), ("a", 1.5), ("n", "x\x00y")]
    with tastypy.POD(tmp_path / "source") as pod:
        pod.update(values)
    there = f"{database}#copied"
    done = tastypy_cmd("copy", str(tmp_path / "source"), there)
    assert done.returncode == 0, done.stderr
    back = tastypy_cmd("copy", there, str(tmp_path / "back"))
    assert back.returncode == 0, back.stderr
    with tastypy.POD(tmp_path / "back", readonly=True) as pod:
        assert repr(list(pod.items())) == repr(values)
    again = tastypy_cmd("copy", str(tmp_path / "source"), there)
    assert again.returncode == 2 and "a store is there already" in again.stderr


def test_errors_name_the_store_and_never_the_password(database: str, pg_server: Server) -> None:
    missing = tastypy_cmd("show", f"{database}#nosuch")
    assert missing.returncode == 2
    assert f"127.0.0.1:{pg_server.port}/" in missing.stderr and "no such store" in missing.stderr
    wrong = tastypy_cmd("show", database.replace(PASSWORD, PASSWORD + "x") + "#crawl")
    assert wrong.returncode == 2 and "refused the login" in wrong.stderr
    named = tastypy_cmd("keys", database, "--name", "Not Allowed")
    assert named.returncode == 2 and "cannot name a store" in named.stderr
    stray = tastypy_cmd("keys", "some/dir", "--name", "x")
    assert stray.returncode == 2 and "--name is for a postgresql:// URL" in stray.stderr


def test_status_counted_on_the_server_equals_a_count_of_the_records(database: str) -> None:
    """``status`` and ``list`` of a tracker on PostgreSQL count on the server (loading no record).

    The oracle is the count of the records as a read-only tracker shows
    them (claims' tries not yet synced included), which is what ``status``
    showed before. Every state is there, with errors and retry times.
    """
    from tastypy.cli._status import in_state, snapshot, summarized
    from tastypy.storage.engines import task_keys, task_summary

    url = f"{database}#mixed"
    error = {"type": "ValueError", "message": "bad page", "at": 1.0}
    later = 4_000_000_000.0  # a retry due in 2096
    tastypy.Tracker(url, max_tries=3).close()
    with tastypy.POD(url) as pod:  # records as a tracker's store may hold them
        pod.update(
            {
                "done": {"_done": True, "_tries": 1},
                "done-aborted": {"_done": True, "_tries": 2, "_aborted": True},
                "aborted": {"_done": False, "_tries": 1, "_aborted": True, "_errors": [error]},
                "failed": {"_done": False, "_tries": 1, "_errors": [error]},
                "waiting": {"_done": False, "_tries": 1, "_retry_at": later, "_errors": [error]},
                "due": {"_done": False, "_tries": 1, "_retry_at": 1.0},
                "exhausted": {"_done": False, "_tries": 3, "_retry_at": later},
                "untried": {"_done": False, "_tries": 0},
                "bare": {"note": "no fields yet"},
                "not-a-dict": [1, 2],
                "text": {"_done": False, "_tries": 0, "x": 'the word "_errors" in a value'},
            }
        )
    with tastypy.Tracker(url, lease=30) as tracker:
        assert tracker.try_it("untried")  # counted by its claim, not synced
        assert tracker.try_it("failed")  # its second try, not synced
        assert tracker.try_it("new-task")  # claimed before its record was ever committed
        assert tracker.try_it("a-new-task")  # another: such tasks come in key order
        with tastypy.Tracker(url, readonly=True) as view:
            records = dict(view.items())
        summary = task_summary(url)
        assert summary is not None
        on_server, counted = summarized(summary), snapshot(records, 3)
        assert on_server.next_retry is not None and counted.next_retry is not None
        assert abs(on_server.next_retry - counted.next_retry) < 5  # each from its own now
        assert replace(on_server, next_retry=None) == replace(counted, next_retry=None)
        assert (counted.total, counted.done, counted.aborted, counted.exhausted) == (13, 2, 1, 1)
        assert (counted.failed, counted.untried, counted.waiting) == (6, 3, 1)
        assert counted.errors == [("ValueError: bad page", 3)]
        for state in ("done", "todo", "failed", "exhausted", "aborted", "untried"):
            found = task_keys(url, state)
            assert found == in_state(records, 3, state), state
            listed = tastypy_cmd("list", url, "--state", state, "--limit", "2", "--json")
            assert json.loads(listed.stdout) == found[:2], (state, listed.stderr)
        shown = json.loads(tastypy_cmd("status", url, "--json").stdout)
        assert {k: shown[k] for k in ("total", "done", "failed", "untried", "waiting")} == {
            "total": 13, "done": 2, "failed": 6, "untried": 3, "waiting": 1,
        }  # fmt: skip
        tracker.release("untried")
        tracker.release("failed")
        tracker.release("new-task")
        tracker.release("a-new-task")


def test_status_and_list_name_a_record_the_tracker_refuses(database: str) -> None:
    url = f"{database}#bad"
    tastypy.Tracker(url, max_tries=3).close()
    with tastypy.POD(url) as pod:  # hand-written records
        pod["a"] = {"_done": False, "_tries": 0}
        pod["b"] = {"_done": False, "_tries": True}
    for args in (["status", url], ["list", url, "--state", "untried"]):
        done = tastypy_cmd(*args)
        assert done.returncode == 2, (args, done.stdout)
        assert "task 'b': field _tries is True" in done.stderr, args


def test_counts_are_right_for_a_writer_opened_before_the_store_became_a_trackers(
    database: str,
) -> None:
    url = f"{database}#adopted"
    pod = tastypy.POD(url)  # a plain POD's store, empty: another process's tracker adopts it
    try:
        adopt = "import sys, tastypy; tastypy.Tracker(sys.argv[1], max_tries=2).close()"
        subprocess.run([sys.executable, "-c", adopt, url], check=True, timeout=60)
        pod.update({"b": {"_done": True, "_tries": 1}, "c": {"_done": False, "_tries": 2}})
        pod.sync()
        shot = json.loads(tastypy_cmd("status", url, "--json").stdout)
        assert (shot["done"], shot["exhausted"], shot["untried"]) == (1, 1, 0)
        listed = tastypy_cmd("list", url, "--state", "done", "--json")
        assert json.loads(listed.stdout) == ["b"]
    finally:
        pod.close()
