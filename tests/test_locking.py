"""One writing process per store: LockedError, timeouts, read-only opens, same object.

The lock holder runs in a child process driven over stdin/stdout; this
process plays the second opener.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path

import pytest

import tastypy
from tastypy.storage.files import _fs

from _subproc import Child, read_store, run

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


# -- the lock file deleted or replaced (the "stale lock" reflex) ------------------------


def _tamper(lock: Path, how: str) -> None:
    """What a user might do to a lock file they think is stale."""
    lock.unlink()
    if how == "replaced by an empty file":
        lock.write_text("")
    elif how == "replaced by a file naming another process":
        lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "argv": ["impostor"]}) + "\n")


TAMPERINGS = ["deleted", "replaced by an empty file", "replaced by a file naming another process"]


@pytest.mark.parametrize("how", TAMPERINGS)
def test_lock_file_deleted_or_replaced_still_keeps_a_second_writer_out(
    tmp_path: Path, how: str
) -> None:
    store = tmp_path / "store"
    with Child(HOLDER, str(store)) as holder:
        holder.expect("ready")
        _tamper(store / "lock", how)
        with pytest.raises(tastypy.LockedError) as caught:
            tastypy.POD(store)
        assert str(store) in str(caught.value)
        assert f"process {holder.pid} " in str(caught.value)  # the real holder, not a guess
        with pytest.raises(tastypy.LockedError):
            tastypy.POD(store, timeout=0.2)  # waiting does not find a way in either
        # the holder still owns the store and writes to it
        holder.send("sync")
        holder.expect("done sync")
        assert read_store(store) == ALL
        holder.send("close")
        holder.expect("done close")
        # released by close(): a new writer gets in at once
        with tastypy.POD(store) as pod:
            assert list(pod.items()) == ALL
            pod["d"] = 4
        assert holder.finish() == 0, holder.stderr
    assert read_store(store) == [*ALL, ("d", 4)]


def test_waiter_gets_in_when_a_holder_whose_lock_file_was_deleted_closes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    waiter_code = """
    import json, sys, tastypy
    try:
        tastypy.POD(sys.argv[1]).close()
        print("got in", flush=True)
    except tastypy.LockedError:
        print("locked", flush=True)
    pod = tastypy.POD(sys.argv[1], timeout=10)
    print(json.dumps(list(pod.items())), flush=True)
    pod["w"] = 5
    pod.close()
    """
    with Child(HOLDER, str(store)) as holder:
        holder.expect("ready")
        (store / "lock").unlink()
        with Child(waiter_code, str(store)) as waiter:
            waiter.expect("locked")
            holder.send("close")
            holder.expect("done close")
            assert json.loads(waiter.readline()) == [[k, v] for k, v in ALL]
            assert waiter.finish() == 0, waiter.stderr
        assert holder.finish() == 0, holder.stderr
    assert read_store(store) == [*ALL, ("w", 5)]


def test_lock_file_deleted_after_sigkill_does_not_block_the_next_writer(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Child(HOLDER, str(store)) as holder:
        holder.expect("ready")
        holder.signal(signal.SIGKILL)
        assert holder.finish() == -signal.SIGKILL
    (store / "lock").unlink()
    with tastypy.POD(store) as pod:
        assert list(pod.items()) == SYNCED
    with Child(HOLDER, str(store)) as holder:  # and the new lock file names its holder
        holder.expect("ready")
        assert json.loads((store / "lock").read_text())["pid"] == holder.pid
        assert holder.finish() == 0, holder.stderr


def test_nothing_synced_is_lost_when_a_second_writer_tries_after_the_lock_file_is_deleted(
    tmp_path: Path,
) -> None:
    """The run that lost its 200 synced keys while verify said OK."""
    store = tmp_path / "store"
    writer_code = """
    import sys, tastypy
    pod = tastypy.POD(sys.argv[1], sync_at=10)
    pod["start"] = 0
    pod.sync()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(200):
        pod[f"key{i}"] = i  # synced every 10 keys
    pod.sync()
    print("synced", flush=True)
    sys.stdin.readline()
    pod.close()
    """
    intruder_code = """
    import sys, tastypy
    try:
        pod = tastypy.POD(sys.argv[1])
    except tastypy.LockedError as exc:
        print("refused", exc, flush=True)
        sys.stdin.readline()
        sys.exit(0)
    print("in", flush=True)
    sys.stdin.readline()
    pod["intruder"] = 1
    pod.close()  # compacts into a new generation
    """
    with Child(writer_code, str(store)) as writer:
        writer.expect("ready")
        (store / "lock").unlink()
        with Child(intruder_code, str(store)) as intruder:
            answer = intruder.readline()
            writer.send()
            writer.expect("synced")
            intruder.send()
            assert intruder.finish() == 0, intruder.stderr
        writer.send()
        assert writer.finish() == 0, writer.stderr
    expected = [("start", 0), *((f"key{i}", i) for i in range(200))]
    assert read_store(store) == expected
    assert tastypy.verify(store).ok
    assert answer.startswith("refused "), answer
    assert f"process {writer.pid} " in answer


def test_holder_info_that_cannot_be_written_does_not_fail_the_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk may refuse the pid line in the lock file; the lock itself holds."""
    store = tmp_path / "store"
    tastypy.POD(store).close()
    lock_fds: set[int] = set()
    real_open, real_pwrite = _fs.open_fd, _fs.pwrite

    def open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
        fd = real_open(path, flags, mode)
        if Path(path).name == "lock":
            lock_fds.add(fd)
        return fd

    def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        if fd in lock_fds:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(_fs, "open_fd", open_fd)
    monkeypatch.setattr(_fs, "pwrite", pwrite)
    pod = tastypy.POD(store)
    try:
        assert lock_fds  # the lock file was opened, its write refused
        pod["k"] = "v"
        pod.sync()
        second = run(
            """
            import sys, tastypy
            try:
                tastypy.POD(sys.argv[1])
            except tastypy.LockedError as exc:
                print("refused", exc)
            """,
            str(store),
        )
        assert second.stdout.startswith("refused "), (second.stdout, second.stderr)
        assert str(store) in second.stdout
        assert f"process {os.getpid()} " in second.stdout  # named all the same
    finally:
        pod.close()
    assert read_store(store) == [("k", "v")]


def test_a_lock_file_that_is_a_symlink_never_touches_its_target(tmp_path: Path) -> None:
    """A store is untrusted input: its ``lock`` must not reach a file outside it."""
    store = tmp_path / "store"
    with tastypy.POD(store) as pod:
        pod["k"] = 1
    outside = tmp_path / "precious.txt"
    outside.write_text('{"pid": 1, "host": "h", "argv": ["secret"]}\n')
    (store / "lock").unlink()
    (store / "lock").symlink_to(outside)
    with pytest.raises(tastypy.CorruptStoreError) as caught:
        tastypy.POD(store)
    assert str(store / "lock") in str(caught.value)
    assert outside.read_text() == '{"pid": 1, "host": "h", "argv": ["secret"]}\n'
    assert read_store(store) == [("k", 1)]
    (store / "lock").unlink()  # the fix the message asks for
    with tastypy.POD(store) as pod:
        pod["k"] = 2
    assert read_store(store) == [("k", 2)]
    assert outside.read_text() == '{"pid": 1, "host": "h", "argv": ["secret"]}\n'
