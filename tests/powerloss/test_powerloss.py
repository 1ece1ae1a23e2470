"""Power loss at every OS call of a real workload, in the strictest model.

``kill -9`` leaves the page cache intact, so no SIGKILL test can catch a
missing or misplaced ``fsync``. Here a workload (store creation or
``copy()`` or recovery of a crashed store, syncs, explicit and automatic
compactions, close, reopen; plain and gzipped) runs with every call
through ``tastypy.storage.files._fs`` recorded; then, for the moment after each
call, the disks a power cut could leave are built (``_model.py``: unsynced
writes lost, torn, zero-filled or reordered; directory operations lost until
their directory is fsynced), written to a directory, verified, opened for
writing, and compared with the syncs the workload made.

``TASTYPY_POWERLOSS_SAMPLES`` (default 10) is the number of random disks per
crash point, on top of the corner cases.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _check import STORE, Checker, Tally, simulate
from _model import KEEP, Choice, Timeline
from _powerloss_workload import NO_AUTO_SYNC, record_workload
from _recorder import Recorder, snapshot

import tastypy

SAMPLES = int(os.environ.get("TASTYPY_POWERLOSS_SAMPLES", "10"))


def assert_recording_complete(recorder: Recorder, root: Path) -> None:
    """Replaying every call, all kept, gives the real directory: nothing bypassed the seam."""
    *_, last = Timeline(recorder.initial_namespace, recorder.initial_data, recorder.ops).crashes()
    everything = Choice(frozenset(range(len(last.pending_ns))), default=KEEP)
    assert last.disk(everything) == snapshot(root)


def report(tally: Tally) -> None:
    print(tally)
    for line in tally.bad[:5]:
        print("  ", line)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gzipped", "start", "batches"),
    [
        pytest.param(False, "new", 24, id="plain"),
        pytest.param(True, "new", 24, id="gzipped"),
        pytest.param(False, "crashed", 12, id="plain-recovering"),
        pytest.param(True, "copy", 10, id="gzipped-copied"),
    ],
)
def test_power_loss_at_every_call(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gzipped: bool,
    start: str,
    batches: int,
) -> None:
    """Every simulated disk opens, verifies and holds the last returned sync (or a running one)."""
    root = tmp_path / "live"
    recorder, history = record_workload(
        root, monkeypatch, gzipped=gzipped, durable=True, batches=batches, start=start
    )
    assert_recording_complete(recorder, root)
    assert any(op.kind == "fsync" for op in recorder.ops)
    checks = tmp_path / "checks"
    checks.mkdir()
    checker = Checker(checks)
    mode = f"strict, {'gzipped' if gzipped else 'plain'}, durable=True"
    mode += {"new": "", "crashed": ", recovering a crashed store", "copy": ", by copy()"}[start]
    tally = simulate(recorder, history, checker, mode=mode, durable=True, samples=SAMPLES, seed=1)
    report(tally)
    assert tally.checked > 1500
    assert tally.bad == []


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzipped"])
def test_lost_unsynced_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gzipped: bool
) -> None:
    """LevelDB's model: each file cut to its last synced size, unsynced directory ops forgotten.

    (Without fsyncs, durable=False, this model leaves nothing at all.)
    """
    root = tmp_path / "live"
    recorder, history = record_workload(
        root, monkeypatch, gzipped=gzipped, durable=True, batches=24
    )
    checks = tmp_path / "checks"
    checks.mkdir()
    mode = f"synced tail, {'gzipped' if gzipped else 'plain'}, durable=True"
    tally = simulate(
        recorder,
        history,
        Checker(checks),
        mode=mode,
        durable=True,
        samples=0,
        seed=1,
        strict=False,
    )
    report(tally)
    assert tally.checked > 100
    assert tally.bad == []


@pytest.mark.slow
@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzipped"])
def test_power_loss_without_fsync_never_mixes_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gzipped: bool
) -> None:
    """``durable=False``: nothing is ever fsynced, so the strict model may lose or garble
    anything (and a store may not open: the README says so); but a store that opens
    holds the state of some sync, never a mix of two."""
    root = tmp_path / "live"
    recorder, history = record_workload(
        root, monkeypatch, gzipped=gzipped, durable=False, batches=12
    )
    assert_recording_complete(recorder, root)
    assert not any(op.kind in ("fsync", "dirsync") for op in recorder.ops)
    checks = tmp_path / "checks"
    checks.mkdir()
    mode = f"strict, {'gzipped' if gzipped else 'plain'}, durable=False"
    tally = simulate(
        recorder,
        history,
        Checker(checks),
        mode=mode,
        durable=False,
        samples=max(2, SAMPLES // 5),  # many more pending calls per crash point
        seed=1,
        unopenable_ok=True,
    )
    report(tally)
    assert tally.checked > 1000
    assert tally.bad == []


def test_a_sync_stays_one_write_and_one_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixes above belong to creation and compaction: a sync pays one fsync."""
    recorder = Recorder(tmp_path)
    with monkeypatch.context() as patch:
        recorder.install(patch)
        pod = tastypy.POD(tmp_path / STORE, sync_at=NO_AUTO_SYNC)
        pod["a"] = 1
        pod.sync()
        before = len(recorder.ops)
        pod["b"] = 2
        pod.sync()
        after = len(recorder.ops)
        pod.close()
    assert [op.kind for op in recorder.ops[before:after]] == ["write", "fsync"]
