"""One writing process per store: LockedError, timeouts, read-only opens, same object.

The lock holder runs in a child process driven over stdin/stdout; this
process plays the second opener.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

import tastypy

from _subproc import Child, read_store

# Holds the store for writing: syncs a, b; leaves c unsynced; then obeys
# "sync" / "close" commands until stdin ends.
HOLDER = """
import sys, tastypy
pod = tastypy.POD(sys.argv[1])
pod["a"] = 1
pod["b"] = 2
pod.sync()
pod["c"] = 3
print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "sync":
        pod.sync()
    elif command == "close":
        pod.close()
    print("done", command, flush=True)
"""

SYNCED = [("a", 1), ("b", 2)]
ALL = [("a", 1), ("b", 2), ("c", 3)]


def test_second_writer_gets_locked_error_naming_path_and_holder(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Child(HOLDER, str(store)) as holder:
        holder.expect("ready")
        started = time.monotonic()
        with pytest.raises(tastypy.LockedError) as caught:
            tastypy.POD(store)
        assert time.monotonic() - started < 1.0  # timeout=0: fails at once
        err = caught.value
        assert isinstance(err, tastypy.TastypyError)
        assert isinstance(err, OSError)
        assert str(store) in str(err)
        assert f"process {holder.pid} " in str(err)
        # the failed attempt changed nothing: the holder still owns the store
        holder.send("sync")
        holder.expect("done sync")
        assert holder.finish() == 0, holder.stderr
    assert read_store(store) == ALL


def test_timeout_waits_until_holder_closes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    waiter_code = """
    import json, sys, time, tastypy
    path = sys.argv[1]
    try:
        tastypy.POD(path)
    except tastypy.LockedError:
        print("locked", flush=True)
    started = time.monotonic()
    pod = tastypy.POD(path, timeout=5)
    waited = time.monotonic() - started
    print(json.dumps({"waited": waited, "items": list(pod.items())}), flush=True)
    pod["w"] = "from waiter"
    pod.close()
    """
    with Child(HOLDER, str(store)) as holder:
        holder.expect("ready")
        with Child(waiter_code, str(store)) as waiter:
            waiter.expect("locked")
            holder.send("close")
            holder.expect("done close")
            report = json.loads(waiter.readline())
            # the waiter got in only after the holder's close synced "c"
            assert report["items"] == [["a", 1], ["b", 2], ["c", 3]]
            assert report["waited"] < 5
            assert waiter.finish() == 0, waiter.stderr
        assert holder.alive()  # released by close(), not by the process ending
        assert holder.finish() == 0, holder.stderr
    assert read_store(store) == [*ALL, ("w", "from waiter")]


def test_short_timeout_fails_after_that_long(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Child(HOLDER, str(store)) as holder:
        holder.expect("ready")
        started = time.monotonic()
        with pytest.raises(tastypy.LockedError) as caught:
            tastypy.POD(store, timeout=0.2)
        elapsed = time.monotonic() - started
        assert 0.2 <= elapsed < 1.5
        assert str(store) in str(caught.value)
        assert f"process {holder.pid} " in str(caught.value)
        assert holder.alive()
        assert holder.finish() == 0, holder.stderr  # stdin closed: exits, syncing
    assert read_store(store) == ALL


def test_lock_does_not_outlive_sigkilled_holder(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Child(HOLDER, str(store)) as holder:
        holder.expect("ready")
        holder.signal(signal.SIGKILL)
        assert holder.finish() == -signal.SIGKILL
    with tastypy.POD(store) as pod:  # timeout=0: must not find a stale lock
        assert list(pod.items()) == SYNCED
        pod["d"] = 4
    assert read_store(store) == [*SYNCED, ("d", 4)]


def test_lock_does_not_outlive_sigkilled_holder_whose_fork_lives_on(tmp_path: Path) -> None:
    """A forked child does not keep its parent's lock (its copy is closed at fork)."""
    store = tmp_path / "store"
    code = HOLDER.replace(
        'print("ready", flush=True)',
        """
import os, time
sys.stdout.flush()
if os.fork() == 0:
    # One write(2) per line: parent and child share the pipe, and print()
    # may split a line in two writes that the other process interleaves.
    os.write(1, f"forked {os.getpid()}\\n".encode())
    time.sleep(60)
    os._exit(0)
os.write(1, b"ready\\n")
""",
    )
    with Child(code, str(store)) as holder:
        lines = sorted([holder.readline(), holder.readline()])
        assert lines[1] == "ready"
        word, forked_pid = lines[0].split()
        assert word == "forked"
        try:
            holder.signal(signal.SIGKILL)
            assert holder.proc.wait(timeout=20) == -signal.SIGKILL
            os.kill(int(forked_pid), 0)  # the fork still lives
            with tastypy.POD(store) as pod:
                assert list(pod.items()) == SYNCED
        finally:
            os.kill(int(forked_pid), signal.SIGKILL)
        holder.finish()


def test_readonly_opens_while_write_locked_see_last_sync(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Child(HOLDER, str(store)) as holder:
        holder.expect("ready")
        with tastypy.POD(store, readonly=True) as reader:
            assert list(reader.items()) == SYNCED  # not the holder's unsynced "c"
            assert reader.readonly
            with pytest.raises(tastypy.ReadOnlyError):
                reader["x"] = 1
            # a reader takes no lock: the holder can still sync
            holder.send("sync")
            holder.expect("done sync")
            assert read_store(store) == ALL
            # ... and no lock was broken: writers are still refused
            with pytest.raises(tastypy.LockedError):
                tastypy.POD(store)
            holder.send("close")
            holder.expect("done close")
            # an open reader does not keep a writer out either
            with tastypy.POD(store) as writer:
                assert list(writer.items()) == ALL
        assert holder.finish() == 0, holder.stderr


def test_same_path_twice_in_one_process_is_the_same_object(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(store, target_is_directory=True)
    first = tastypy.POD(store)
    try:
        again = [
            tastypy.POD(store),
            tastypy.POD(str(store)),
            tastypy.POD(tmp_path / "sub" / ".." / "store"),
            tastypy.POD(tmp_path / "link"),
            tastypy.POD(store, timeout=5),
        ]
        assert all(pod is first for pod in again)
        first["k"] = "v"
        assert again[0]["k"] == "v"
        reader = tastypy.POD(store, readonly=True)
        assert reader is not first
        reader.close()
        for pod in again:  # each open needs its own close
            pod.close()
            assert not first.closed
    finally:
        first.close()
    assert first.closed
    again = tastypy.POD(store)
    try:
        assert again is not first
        assert list(again.items()) == [("k", "v")]
    finally:
        again.close()


def test_conflicting_file_size_on_second_open_raises_settings_error(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = tastypy.POD(store, file_size=7)
    try:
        with tastypy.POD(store, file_size=7) as same:
            assert same is first
        with pytest.raises(tastypy.SettingsError, match="file_size"):
            tastypy.POD(store, file_size=8)
        with pytest.raises(tastypy.SettingsError, match="gzipped"):
            tastypy.POD(store, gzipped=True)
        # the open object is untouched and still the one handed out
        assert not first.closed
        assert first.file_size == 7
        first["k"] = 1
        first.sync()
        with tastypy.POD(store) as again:
            assert again is first
        assert not first.closed
    finally:
        first.close()
    # closed: a conflicting open now goes to disk, is refused, and leaves no lock
    with pytest.raises(tastypy.SettingsError, match="file_size"):
        tastypy.POD(store, file_size=8)
    with tastypy.POD(store) as again:  # timeout=0
        assert again is not first
        assert again.file_size == 7
        assert list(again.items()) == [("k", 1)]


@pytest.mark.parametrize("setting", ["file_size=8", "gzipped=True"])
def test_rejected_open_does_not_keep_the_lock(tmp_path: Path, setting: str) -> None:
    """An open refused with SettingsError must not leave the store locked."""
    store = tmp_path / "store"
    with tastypy.POD(store, file_size=7) as pod:
        pod["k"] = 1
    code = f"""
    import sys, tastypy
    try:
        tastypy.POD(sys.argv[1], {setting})
    except tastypy.SettingsError:
        print("rejected", flush=True)
    sys.stdin.readline()
    """
    with Child(code, str(store)) as child:
        child.expect("rejected")
        with tastypy.POD(store) as pod:  # timeout=0
            assert list(pod.items()) == [("k", 1)]
        assert child.alive()
        assert child.finish() == 0, child.stderr
