"""The writers registry of shared stores: liveness decided by the kernel's locks.

Engine-level (``shared=True`` is not public yet; docs/SHARED.md): real child
processes register, are killed or end, and the registry must tell exactly who
is alive, whatever their pids say.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tastypy.storage.files._writers import (
    WRITERS,
    WriterEntry,
    is_alive,
    live_writers,
    process_start,
)

from _subproc import Child

REGISTER = """
import sys
from pathlib import Path
from tastypy.storage.files._writers import WriterEntry
entry = WriterEntry(Path(sys.argv[1]))
print(entry.id, flush=True)
sys.stdin.readline()
"""


def test_a_writer_is_alive_while_its_process_runs_and_dead_once_killed(tmp_path: Path) -> None:
    with Child(REGISTER, str(tmp_path)) as child:
        writer = child.readline()
        assert is_alive(tmp_path, writer)
        [listed] = live_writers(tmp_path)
        assert (listed.id, listed.pid) == (writer, child.pid)
        assert listed.since > 0
        child.signal(signal.SIGKILL)
        child.proc.wait(timeout=20)
        assert not is_alive(tmp_path, writer)
        assert live_writers(tmp_path) == []


def test_a_dead_writer_is_found_dead_and_reaped_though_its_pid_is_alive(tmp_path: Path) -> None:
    # A writer killed long ago whose pid now belongs to another live process
    # (here: this test itself): its file is there, with a live pid, unlocked.
    directory = tmp_path / WRITERS
    directory.mkdir()
    pid = os.getpid()
    stale = f"{pid}-{process_start(pid)}-0badc0de"
    (directory / f"{stale}.jsonl").write_text(json.dumps({"pid": pid, "since": 1.0}))
    assert live_writers(tmp_path) == []
    assert (directory / f"{stale}.jsonl").exists(), "listing without reap writes nothing"
    assert not is_alive(tmp_path, stale)
    assert not (directory / f"{stale}.jsonl").exists(), "a writer found dead is reaped"


def test_a_writer_that_ends_normally_removes_its_file(tmp_path: Path) -> None:
    with Child(REGISTER, str(tmp_path)) as child:
        writer = child.readline()
        child.send()
        assert child.finish() == 0
    assert not is_alive(tmp_path, writer)
    assert list((tmp_path / WRITERS).glob("*.jsonl")) == []


def test_a_forked_child_does_not_keep_a_killed_parent_alive(tmp_path: Path) -> None:
    code = """
    import os, sys, time
    from pathlib import Path
    from tastypy.storage.files._writers import WriterEntry
    entry = WriterEntry(Path(sys.argv[1]))
    ready, tell = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(tell, b"x")  # its fork hooks have run: the parent's fds are closed
        time.sleep(60)  # outlives its parent
        os._exit(0)
    os.read(ready, 1)  # else the parent may die before the child ran at all
    print(entry.id, child, flush=True)
    sys.stdin.readline()
    """
    with Child(code, str(tmp_path)) as parent:
        writer, grandchild = parent.readline().split()
        try:
            parent.signal(signal.SIGKILL)
            parent.proc.wait(timeout=20)
            assert not is_alive(tmp_path, writer)
        finally:
            os.kill(int(grandchild), signal.SIGKILL)


def test_several_writers_are_listed_oldest_first_and_one_process_sees_itself_alive(
    tmp_path: Path,
) -> None:
    first = WriterEntry(tmp_path)
    time.sleep(0.01)
    second = WriterEntry(tmp_path)
    try:
        assert [w.id for w in live_writers(tmp_path)] == [first.id, second.id]
        assert is_alive(tmp_path, first.id)
        first.close()
        first.close()  # idempotent
        assert not is_alive(tmp_path, first.id)
        assert [w.id for w in live_writers(tmp_path)] == [second.id]
    finally:
        second.close()


def test_files_that_are_not_writers_are_neither_listed_nor_removed(tmp_path: Path) -> None:
    directory = tmp_path / WRITERS
    directory.mkdir()
    (directory / "notes.txt").write_text("mine")
    (directory / "x.jsonl").write_text("{}")
    os.symlink("/etc/passwd", directory / "1-2-deadbeef.jsonl")
    assert live_writers(tmp_path, reap=True) == []
    assert not is_alive(tmp_path, "../../etc/passwd")
    assert sorted(p.name for p in directory.iterdir() if p.name != ".joined") == [
        "1-2-deadbeef.jsonl",
        "notes.txt",
        "x.jsonl",
    ]


def test_a_writer_killed_while_registering_leaves_a_temporary_file_that_is_reaped(
    tmp_path: Path,
) -> None:
    directory = tmp_path / WRITERS
    directory.mkdir()
    leftover = directory / ".1-2-0badc0de.jsonl.tmp"
    leftover.write_text('{"pid": 1}\n')  # locked and written, then killed before the rename
    assert live_writers(tmp_path) == []
    assert leftover.exists()
    live_writers(tmp_path, reap=True)
    assert not leftover.exists()


def test_process_start_is_known_for_a_live_process_and_zero_for_none() -> None:
    assert process_start(os.getpid()) > 0
    assert process_start(2**22 + 12345) == 0


def test_a_live_claim_is_found_whatever_order_the_logs_are_read_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by the fleet torture test: a dead writer's old claim of a task,
    # read after a live writer's newer claim of it, hid the live one.
    from tastypy.storage.files import _fs
    from tastypy.storage.files._claims import Fleet, claim_line

    live = WriterEntry(tmp_path)
    live.append(claim_line("k", 2))
    dead_id = "1-2-0badc0de"
    (tmp_path / WRITERS / f"{dead_id}.jsonl").write_bytes(b"{}\n" + claim_line("k", 1))
    real_listdir = _fs.listdir
    try:
        for reverse in (False, True):
            monkeypatch.setattr(
                _fs, "listdir", lambda path, r=reverse: sorted(real_listdir(path), reverse=r)
            )
            fleet = Fleet(tmp_path, me="")
            fleet.refresh()
            assert fleet.holder("k") == live.id
            assert fleet.tries("k") == 2
            fleet.close()
    finally:
        live.close()
