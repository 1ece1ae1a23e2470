"""A plain writer's compaction folds in a thread: the syncs go on meanwhile, nothing is lost.

The fold is held at a gate (its ``fold_journal`` waits for an event) so that
the tests know what happens while it runs; ``tests/powerloss`` and
``tests/crash`` cover the fold under power cuts and real kills.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tastypy import POD, verify
from tastypy.storage.files import _background
from tastypy.storage.files import _engine as files

from _folds import fold_in_this_process
from _helpers import on_disk


class Gate:
    """Holds every background fold before it folds, until opened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open_ = threading.Event()
        self.reached = threading.Event()
        self.fail: BaseException | None = None
        self.threads: list[str] = []
        real = _background.fold_journal

        def held(*args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            self.reached.set()
            assert self.open_.wait(30), "the test never opened the gate"
            if self.fail is not None:
                raise self.fail
            return real(*args, **kwargs)

        monkeypatch.setattr(_background, "fold_journal", held)

    def release(self) -> None:
        self.open_.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    monkeypatch.setattr(files, "COMPACT_MIN_BYTES", 0)
    fold_in_this_process(monkeypatch)  # the gate is in this process
    g = Gate(monkeypatch)
    yield g
    g.release()  # never leave a thread waiting


def manifest(path: Path) -> dict[str, Any]:
    return dict(json.loads((path / "manifest.json").read_text()))


def fill(pod: POD, model: dict[str, Any], n: int, prefix: str = "k") -> None:
    for i in range(n):
        pod[f"{prefix}{i}"] = model[f"{prefix}{i}"] = {"i": i, "text": "x" * 50}


def wait_folded(pod: POD) -> None:
    fold = pod.storage._fold  # type: ignore[attr-defined]
    assert fold is not None, "no fold is running"
    fold.wait()


def change(pod: POD, model: dict[str, Any], n: int) -> None:
    """Sets, a change in place, a delete and a move to the end, in *pod* and *model*."""
    for m in (pod, model):
        m[f"new{n}"] = [n]
        m[f"k{n}"] = "changed"
        m[f"k{n + 1}"]["i"] = -n  # type: ignore[index]
        del m[f"k{n + 2}"]
        m[f"k{n + 3}"] = m.pop(f"k{n + 3}")


@pytest.mark.parametrize("copied_by_fold", [False, True])
@pytest.mark.parametrize("gzipped", [False, True])
def test_syncs_go_on_while_the_fold_runs(
    tmp_path: Path,
    gate: Gate,
    monkeypatch: pytest.MonkeyPatch,
    gzipped: bool,
    copied_by_fold: bool,
) -> None:
    if copied_by_fold:  # the fold copies every commit made meanwhile, the install none
        monkeypatch.setattr(_background, "_LEFT_TO_INSTALL", 0)
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10, gzipped=gzipped)
    fill(pod, model, 60)
    pod.sync()  # the journal outgrows the (no) data files: a fold starts, held
    assert gate.reached.wait(10)
    assert gate.threads[0].startswith("tastypy compaction of ")
    generation = manifest(path)["generation"]
    for n in range(0, 40, 5):  # syncs while it is held: each one returns
        change(pod, model, n)
        pod.sync()
        assert on_disk(path) == list(model.items())
    assert manifest(path)["generation"] == generation  # not installed yet
    gate.release()
    wait_folded(pod)
    change(pod, model, 45)
    pod.sync()  # installs, with the commits made meanwhile in the new journal
    after = manifest(path)
    assert after["generation"] == generation + 1
    assert after["version"] == 1  # the new journal's commits are numbered from 1
    journal = path / after["journal"]
    assert journal.stat().st_size > 0
    if not gzipped:
        first = next(line for line in journal.read_bytes().splitlines() if line.startswith(b"{"))
        assert json.loads(first)["commit"] == 1
    assert on_disk(path) == list(model.items())
    assert list(pod.items()) == list(model.items())
    pod.close()
    with POD(path) as again:
        assert list(again.items()) == list(model.items())
    assert set(os.listdir(path / "chunks")) == {c["file"] for c in manifest(path)["chunks"]}


def test_close_waits_for_the_fold_and_installs_it(tmp_path: Path, gate: Gate) -> None:
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10)
    fill(pod, model, 60)
    pod.sync()
    assert gate.reached.wait(10)
    change(pod, model, 0)
    pod.sync()
    generation = manifest(path)["generation"]
    threading.Timer(0.2, gate.release).start()
    pod.close()  # waits for the fold, installs it (and compacts what is left)
    assert manifest(path)["generation"] > generation
    assert on_disk(path) == list(model.items())
    with POD(path) as again:
        assert list(again.items()) == list(model.items())
    # Nothing but the files the manifest names is left in the chunks folder.
    named = {c["file"] for c in manifest(path)["chunks"]}
    assert set(os.listdir(path / "chunks")) == named


@pytest.mark.parametrize("how", ["compact", "revert"])
def test_compact_and_revert_wait_for_the_fold(tmp_path: Path, gate: Gate, how: str) -> None:
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10)
    fill(pod, model, 60)
    pod.sync()
    assert gate.reached.wait(10)
    change(pod, model, 0)
    pod.sync()
    threading.Timer(0.2, gate.release).start()
    if how == "compact":
        pod.compact()
        assert (path / manifest(path)["journal"]).stat().st_size == 0  # all folded in
    else:
        pod["unsynced"] = 1  # revert() drops it
        pod.revert()
    assert list(pod.items()) == list(model.items())
    assert on_disk(path) == list(model.items())
    pod.close()
    with POD(path) as again:
        assert list(again.items()) == list(model.items())


def test_a_failing_fold_is_logged_at_the_next_sync_and_retried(
    tmp_path: Path, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10)
    fill(pod, model, 60)
    gate.fail = OSError(errno.ENOSPC, "No space left on device (injected)")
    pod.sync()  # starts the fold, held at the gate
    gate.release()  # it fails in its thread
    wait_folded(pod)
    generation = manifest(path)["generation"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        change(pod, model, 0)
        pod.sync()  # does not raise: its commit is durable
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0]
    assert "injected" in warnings[0]
    assert "retried" in warnings[0]
    assert on_disk(path) == list(model.items())
    assert manifest(path)["generation"] == generation
    # The failed fold's files were removed.
    assert set(os.listdir(path / "chunks")) == {c["file"] for c in manifest(path)["chunks"]}
    change(pod, model, 5)
    pod.sync()  # backing off: the journal has not doubled, no new fold
    assert pod.storage._fold is None  # type: ignore[attr-defined]
    gate.fail = None
    fill(pod, model, 200, prefix="more")
    pod.sync()  # the journal doubled: a new fold, which succeeds
    wait_folded_or_done(pod)
    change(pod, model, 10)
    pod.sync()
    assert manifest(path)["generation"] == generation + 1
    pod.close()
    with POD(path) as again:
        assert list(again.items()) == list(model.items())


def test_a_forked_child_leaves_the_parents_fold_alone(tmp_path: Path, gate: Gate) -> None:
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10)
    fill(pod, model, 60)
    pod.sync()
    assert gate.reached.wait(10)
    child = os.fork()
    if child == 0:  # pragma: no cover  # the child: its close must not install nor wait
        try:
            pod.close()
        finally:
            os._exit(0)
    _pid, status = os.waitpid(child, 0)
    assert status == 0
    gate.release()
    change(pod, model, 0)
    pod.sync()
    wait_folded_or_done(pod)
    pod.close()
    with POD(path) as again:
        assert list(again.items()) == list(model.items())


def wait_folded_or_done(pod: POD) -> None:
    fold = pod.storage._fold  # type: ignore[attr-defined]
    if fold is not None:
        fold.wait()


# -- found by an adversarial review -------------------------------------------------


def test_a_sigterm_while_revert_installs_a_fold_loses_nothing(
    tmp_path: Path, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The program's own SIGTERM handler keeps it alive; tastypy's exit sync must wait."""
    got: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        path = tmp_path / "s"
        model: dict[str, Any] = {}
        pod = POD(path, file_size=10)
        fill(pod, model, 60)
        pod.sync()
        gate.release()
        wait_folded(pod)
        real_finish = _background.BackgroundFold.finish

        def finish(self: _background.BackgroundFold) -> Any:
            new = real_finish(self)
            os.kill(os.getpid(), signal.SIGTERM)  # lands between the copy and the install
            return new

        monkeypatch.setattr(_background.BackgroundFold, "finish", finish)
        pod["unsynced"] = 1
        # The signal waits for the reload (which drops the key) and the install;
        # its exit sync then finds nothing to write. Before, it ran in the
        # middle: its commit went to the old journal after its last commits
        # were copied, so it was lost, and it started a second fold of the
        # same generation over the one being installed.
        pod.revert()
        assert got == [signal.SIGTERM]
        assert list(pod.items()) == list(model.items())
        assert verify(path).ok
        pod.close()
        with POD(path) as again:
            assert list(again.items()) == list(model.items())
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_commit_while_a_fold_is_put_in_place_is_refused(
    tmp_path: Path, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finalizer or handler writing to the store mid-install would be lost: it raises."""
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10)
    fill(pod, model, 60)
    pod.sync()
    gate.release()
    wait_folded(pod)
    real_finish = _background.BackgroundFold.finish
    refused: list[str] = []

    def finish(self: _background.BackgroundFold) -> Any:
        new = real_finish(self)
        try:
            pod.storage.commit([("sneaked", b"1")])
        except RuntimeError as exc:
            refused.append(str(exc))
        return new

    monkeypatch.setattr(_background.BackgroundFold, "finish", finish)
    change(pod, model, 0)
    pod.sync()  # installs
    assert len(refused) == 1
    assert str(path) in refused[0]
    pod.close()
    with POD(path) as again:
        assert list(again.items()) == list(model.items())


def test_ctrl_c_while_close_waits_lets_go_of_the_store_only_after_the_fold(
    tmp_path: Path, gate: Gate
) -> None:
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10)
    fill(pod, model, 60)
    pod.sync()
    assert gate.reached.wait(10)
    change(pod, model, 0)
    pod.sync()
    # Ctrl-C during close()'s wait, then the fold ends a little later.
    threading.Timer(0.2, lambda: signal.raise_signal(signal.SIGINT)).start()
    threading.Timer(0.6, gate.release).start()
    with pytest.raises(KeyboardInterrupt):
        pod.close()
    assert pod.closed
    assert not [t for t in threading.enumerate() if t.name.startswith("tastypy compaction")]
    with POD(path) as again:  # the store is free, whole, and compacts without a clash
        assert list(again.items()) == list(model.items())
        again.compact()
    with POD(path) as again:
        assert list(again.items()) == list(model.items())


def test_no_thread_to_be_had_folds_in_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread that cannot start (out of memory, shutdown) never fails a durable sync."""
    monkeypatch.setattr(files, "COMPACT_MIN_BYTES", 0)

    def cannot(self: Any) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_background.BackgroundFold, "start", cannot)
    monkeypatch.setattr(
        _background.BackgroundFold, "remove", staticmethod(lambda paths: cannot(None))
    )
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10)
    fill(pod, model, 60)
    generation = manifest(path)["generation"]
    pod.sync()  # compacts in line
    assert manifest(path)["generation"] == generation + 1
    assert pod.dirty() == set()
    pod.close()  # does not hang
    with POD(path) as again:
        assert list(again.items()) == list(model.items())


def test_a_pod_collected_in_its_own_fold_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cyclic GC may run a lost POD's finalizer in any thread, its fold's included."""
    monkeypatch.setattr(files, "COMPACT_MIN_BYTES", 0)
    real = _background.fold_journal

    def fold(*args: Any, **kwargs: Any) -> Any:
        gc.collect()  # as a collection the fold's allocations trigger would
        return real(*args, **kwargs)

    monkeypatch.setattr(_background, "fold_journal", fold)
    path = tmp_path / "s"
    model: dict[str, Any] = {}

    def lose_a_pod() -> None:
        pod = POD(path, file_size=10)
        cycle: dict[str, Any] = {"pod": pod}
        cycle["self"] = cycle  # only the cyclic GC frees it
        fill(pod, model, 60)
        pod.sync()

    was = gc.isenabled()
    gc.disable()
    try:
        lose_a_pod()
    finally:
        if was:
            gc.enable()
    deadline = time.monotonic() + 20
    while [t for t in threading.enumerate() if t.name.startswith("tastypy compaction")]:
        assert time.monotonic() < deadline, "the fold thread never ended"
        time.sleep(0.02)
    with POD(path) as again:  # the lock was let go, the store is whole
        assert list(again.items()) == list(model.items())


# -- found by a second review ---------------------------------------------------------


def _lose(pod: POD) -> None:
    """Put *pod* in a reference cycle: only the cyclic GC can free it."""
    pod.cycle = pod  # type: ignore[attr-defined]


def test_a_pod_collected_in_its_fold_thread_as_the_fold_ends(tmp_path: Path, gate: Gate) -> None:
    """The finalizer's close() runs while the thread marks itself done."""
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10)
    _lose(pod)
    fill(pod, model, 60)
    pod.sync()
    assert gate.reached.wait(10)
    fold = pod.storage._fold  # type: ignore[attr-defined]
    real_set = fold._done.set

    def set_() -> None:
        if fold.is_current_thread():
            gc.collect()  # as an allocation here may trigger it
        real_set()

    fold._done.set = set_
    was = gc.isenabled()
    gc.disable()
    try:
        del pod
        gate.release()
        fold._thread.join(10)
    finally:
        if was:
            gc.enable()
    assert not fold._thread.is_alive(), "the fold thread hung"
    with POD(path) as again:  # the store was let go, whole
        assert list(again.items()) == list(model.items())


def test_a_pod_collected_in_a_removal_thread(
    tmp_path: Path, gate: Gate, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = _background._remove
    go = threading.Event()

    def remove(paths: list[Path]) -> None:
        go.wait(10)
        gc.collect()  # as an allocation in this thread may trigger it
        real(paths)

    monkeypatch.setattr(_background, "_remove", remove)
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10)
    _lose(pod)
    fill(pod, model, 60)
    pod.sync()
    gate.release()
    wait_folded(pod)
    was = gc.isenabled()
    gc.disable()
    try:
        change(pod, model, 0)
        pod.sync()  # installs: a removal thread starts
        (thread,) = pod.storage._tidying  # type: ignore[attr-defined]
        del pod
        with caplog.at_level(logging.ERROR):
            go.set()
            thread.join(10)
    finally:
        if was:
            gc.enable()
    assert not thread.is_alive()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    with POD(path) as again:
        assert list(again.items()) == list(model.items())


def test_close_waits_for_every_removal_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "COMPACT_MIN_BYTES", 0)
    real = _background._remove
    first = threading.Event()

    def slow(paths: list[Path]) -> None:
        if not first.is_set():
            first.set()
            time.sleep(0.5)  # a slow disk
        real(paths)

    monkeypatch.setattr(_background, "_remove", slow)
    path = tmp_path / "s"
    pod = POD(path, file_size=10)
    threads: list[threading.Thread] = []
    i = 0
    while len(threads) < 2:  # two installs, each with its removal thread
        i += 1
        assert i < 5000
        pod[f"k{i % 50}"] = "x" * 200
        pod.sync()
        threads += [t for t in pod.storage._tidying if t not in threads]  # type: ignore[attr-defined]
    pod.close()
    assert not any(t.is_alive() for t in threads)
    assert set(os.listdir(path / "chunks")) == {c["file"] for c in manifest(path)["chunks"]}


def test_loads_in_two_threads_turn_the_collector_back_on_once(tmp_path: Path) -> None:
    from tastypy._codec import collector_paused

    assert gc.isenabled()
    inside = threading.Event()
    leave = threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(10)
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other load still runs
    leave.set()
    thread.join()
    assert gc.isenabled()
    gc.disable()  # the program's own choice stays
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_ctrl_c_in_a_direct_close_of_the_engine_lets_go(tmp_path: Path, gate: Gate) -> None:
    """FileStorage used without a POD (the CLI's copy): no critical() around its close."""
    from tastypy.storage.files import FileStorage

    path = tmp_path / "s"
    storage = FileStorage(path, file_size=10)
    storage.commit([(f"k{i}", b'"' + b"x" * 50 + b'"') for i in range(60)])
    assert gate.reached.wait(10)
    threading.Timer(0.2, lambda: signal.raise_signal(signal.SIGINT)).start()
    threading.Timer(0.6, gate.release).start()
    with pytest.raises(KeyboardInterrupt):
        storage.close()
    with POD(path) as again:  # not locked any more; whole
        assert len(again) == 60


# -- the fold in a process of its own -----------------------------------------------


@pytest.fixture
def in_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fold in a child interpreter; none in this process."""
    monkeypatch.setattr(files, "COMPACT_MIN_BYTES", 0)
    monkeypatch.setattr(_background, "PROCESS_FROM_BYTES", 0)

    def not_here(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("folded in the writer's process")

    monkeypatch.setattr(_background, "fold_journal", not_here)


@pytest.mark.usefixtures("in_a_process")
@pytest.mark.parametrize("gzipped", [False, True])
def test_a_fold_in_a_process_of_its_own(tmp_path: Path, gzipped: bool) -> None:
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10, gzipped=gzipped)
    fill(pod, model, 60)
    generation = manifest(path)["generation"]
    pod.sync()
    wait_folded(pod)
    change(pod, model, 0)
    pod.sync()  # installs
    assert manifest(path)["generation"] == generation + 1
    assert list(pod.items()) == list(model.items())
    change(pod, model, 5)
    pod.sync()
    wait_folded_or_done(pod)
    pod.close()  # its compaction in line reads the new data files' keys from them
    with POD(path) as again:
        assert list(again.items()) == list(model.items())
    assert verify(path).ok


@pytest.mark.usefixtures("in_a_process")
def test_a_failing_fold_process_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s"
    model: dict[str, Any] = {}
    with POD(path, file_size=10) as pod:
        fill(pod, model, 60)
    chunk = path / "chunks" / manifest(path)["chunks"][0]["file"]
    pod = POD(path)
    for i in range(60):  # a journal larger than the data files: a fold starts
        pod[f"k{i}"] = model[f"k{i}"] = {"i": -i, "text": "y" * 80}
    chunk.write_bytes(chunk.read_bytes().replace(b"x", b"z", 1))  # damaged meanwhile
    pod.sync()
    wait_folded(pod)
    with caplog.at_level(logging.WARNING):
        change(pod, model, 0)
        pod.sync()  # does not raise: its commit is durable
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("CorruptStoreError" in w and chunk.name in w for w in warnings), warnings
    assert pod.storage._fold is None  # type: ignore[attr-defined]
    monkeypatch.setattr(sys, "executable", "/bin/false")  # no interpreter to be had
    caplog.clear()
    fill(pod, model, 400, prefix="more")
    pod.sync()  # the journal doubled: a new attempt
    wait_folded(pod)
    with caplog.at_level(logging.WARNING):
        pod["last"] = model["last"] = 1
        pod.sync()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("the compaction's process ended with status 1" in w for w in warnings), warnings
    pod.storage._data_bytes = 1 << 40  # type: ignore[attr-defined]  # no compaction at close
    pod.close()


WRITER = """
import sys, time
import tastypy
from tastypy.storage.files import _background, _engine
_engine.COMPACT_MIN_BYTES = 0
_background.PROCESS_FROM_BYTES = 0
pod = tastypy.POD(sys.argv[1])
pod.hold()  # one sync, below: the fold it starts is the only one
for i in range(200_000):
    pod[f"k{i}"] = {"i": i, "text": "x" * 60}
pod.sync()  # a fold starts, in a process of its own
print("SYNCED", flush=True)
time.sleep(60)
"""


def _fold_children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"_fold_process" in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_writer_takes_its_fold_process_along(tmp_path: Path) -> None:
    """kill -9 of the writer mid-fold: the store opens at once, as of its last sync."""
    import subprocess

    path = tmp_path / "s"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "SYNCED"
        deadline = time.monotonic() + 10
        while not (children := _fold_children(writer.pid)):
            assert time.monotonic() < deadline, "no fold process started"
            time.sleep(0.005)
        writer.kill()
        writer.wait()
        deadline = time.monotonic() + 5
        while any(
            Path(f"/proc/{c}").exists()
            and b"_fold_process" in Path(f"/proc/{c}/cmdline").read_bytes()
            for c in children
        ):
            assert time.monotonic() < deadline, "the fold process outlived its writer"
            time.sleep(0.01)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    with POD(path) as again:  # not locked; whole; the fold's files were debris
        assert len(again) == 200_000
        assert again["k199999"] == {"i": 199_999, "text": "x" * 60}
    assert verify(path).ok


@pytest.mark.usefixtures("in_a_process")
def test_a_store_whose_path_is_not_utf8_folds_in_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tastypy.storage.files import _compaction

    monkeypatch.setattr(_background, "fold_journal", _compaction.fold_journal)  # here, then
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.pod"))
    model: dict[str, Any] = {}
    pod = POD(path, file_size=10)
    fill(pod, model, 60)
    generation = manifest(path)["generation"]
    pod.sync()
    wait_folded_or_done(pod)
    change(pod, model, 0)
    pod.sync()
    assert manifest(path)["generation"] == generation + 1
    pod.close()
    with POD(path) as again:
        assert list(again.items()) == list(model.items())
