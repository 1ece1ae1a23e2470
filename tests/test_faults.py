"""Fault injection: a failing write, fsync or rename leaves the store as it was.

Each test makes the n-th call of one OS function fail (ENOSPC or EIO) during a
sync or a compaction, for every n that the operation reaches, and checks:
``sync()`` raised the OSError, the files on disk still hold the previous
state, the changes are still pending in memory, and once the fault clears a
plain ``sync()`` (or ``compact()``) succeeds with nothing lost. A sync whose
commit is durable does not raise if only the compaction after it fails: that
is logged and retried later.
"""

from __future__ import annotations

import copy
import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tastypy import POD

from _faults import failing
from _folds import fold_in_line
from _helpers import on_disk

FUNCTIONS = ["write", "pwrite", "fsync", "fdatasync", "replace", "ftruncate"]


def _fresh_store(path: Path, gzipped: bool) -> list[tuple[str, Any]]:
    with POD(path, file_size=3, gzipped=gzipped) as pod:
        for i in range(8):
            pod[f"k{i}"] = {"i": i}
    return on_disk(path)


def _change(pod: POD) -> None:
    pod["k0"] = "changed"
    pod["k1"]["i"] = 100
    del pod["k2"]
    pod["k3"] = pod.pop("k3")  # moves to the end
    pod["new"] = [1, 2]


def _expected(before: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    model = dict(before)
    _change(model)  # type: ignore[arg-type]
    return list(model.items())


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_failed_sync_leaves_store_and_pending_changes(
    tmp_path: Path, name: str, gzipped: bool
) -> None:
    reached = 0
    for fail_at in range(1, 20):
        path = tmp_path / f"{name}-{fail_at}"
        before = _fresh_store(path, gzipped)
        pod = POD(path)
        _change(pod)
        with failing(name, fail_at) as injector:
            try:
                pod.sync()
                raised = None
            except OSError as exc:
                raised = exc
        if injector.calls < fail_at:
            assert raised is None
            assert on_disk(path) == _expected(before)
            pod.close()
            break
        reached += 1
        assert raised is not None and "injected" in str(raised)
        assert on_disk(path) == before, f"os.{name} call {fail_at} changed the store"
        assert len(pod._dirty) > 0
        pod.sync()  # the fault cleared
        assert on_disk(path) == _expected(before)
        pod.close()
        assert on_disk(path) == _expected(before)
    if name in ("pwrite", "fdatasync"):
        assert reached >= 1, f"a sync never called os.{name}"


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_failed_compaction_leaves_the_store_whole(
    tmp_path: Path, name: str, gzipped: bool
) -> None:
    reached = 0
    for fail_at in range(1, 40):
        path = tmp_path / f"{name}-{fail_at}"
        before = _fresh_store(path, gzipped)
        pod = POD(path)
        _change(pod)
        pod.sync()
        after = _expected(before)
        storage = pod._storage
        assert storage is not None
        with failing(name, fail_at) as injector:
            try:
                storage.compact()  # type: ignore[attr-defined]
                raised = None
            except OSError as exc:
                raised = exc
        assert on_disk(path) == after, f"os.{name} call {fail_at} changed the store"
        if injector.calls < fail_at:
            assert raised is None
            pod.close()
            break
        reached += 1
        assert raised is not None and "injected" in str(raised)
        pod["later"] = 1
        pod.sync()  # the store still takes commits
        storage.compact()  # type: ignore[attr-defined]
        pod.close()
        assert on_disk(path) == [*after, ("later", 1)]
        with POD(path) as again:  # and no leftovers confuse a later open
            assert list(again.items()) == [*after, ("later", 1)]
        names = set(os.listdir(path)) | {f"chunks/{n}" for n in os.listdir(path / "chunks")}
        assert not any(n.endswith(".tmp") for n in names)
    if name in ("write", "fsync", "replace"):
        assert reached >= 1, f"a compaction never called os.{name}"


def _change_a_lot(pod: POD) -> None:
    """A change whose commit is larger than the data files: the sync compacts."""
    _change(pod)
    pod["big"] = "x" * 2000


@pytest.fixture
def compact_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compact as soon as the journal outgrows the data files (no 4 MiB floor).

    The fold runs in the sync's own thread, so that the faults injected
    reach it at the same calls every time (``test_background_fold.py``
    tests the fold in its thread).
    """
    import tastypy.storage.files._engine

    monkeypatch.setattr(tastypy.storage.files._engine, "COMPACT_MIN_BYTES", 0)
    fold_in_line(monkeypatch)


@pytest.mark.usefixtures("compact_early")
@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_sync_whose_compaction_fails_is_still_done(
    tmp_path: Path, name: str, gzipped: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault in the commit raises; a fault in the compaction after it does not."""
    compaction_faults = 0
    for fail_at in range(1, 40):
        path = tmp_path / f"{name}-{fail_at}"
        before = _fresh_store(path, gzipped)
        pod = POD(path)
        _change_a_lot(pod)
        model = copy.deepcopy(dict(before))
        _change_a_lot(model)  # type: ignore[arg-type]
        after = list(model.items())
        caplog.clear()
        with failing(name, fail_at) as injector:
            try:
                pod.sync()
                raised = None
            except OSError as exc:
                raised = exc
        if injector.calls < fail_at:
            assert raised is None
            assert on_disk(path) == after
            pod.close()
            break
        if raised is not None:  # the commit itself failed: nothing changed
            assert "injected" in str(raised)
            assert on_disk(path) == before
            assert pod.dirty()
        else:  # the commit is durable; only the compaction after it failed
            compaction_faults += 1
            assert on_disk(path) == after
            assert pod.dirty() == set()
            warnings = [r for r in caplog.records if r.levelname == "WARNING"]
            assert len(warnings) == 1
            assert str(path) in warnings[0].getMessage()
            assert "injected" in warnings[0].getMessage()
        pod.sync()
        pod.compact()  # the fault cleared
        pod.close()
        assert on_disk(path) == after
        with POD(path) as again:
            assert list(again.items()) == after
    if name in ("write", "fsync", "replace"):
        assert compaction_faults >= 1, f"no compaction during a sync called os.{name}"


@pytest.mark.usefixtures("compact_early")
def test_a_failing_compaction_is_retried_with_back_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s"
    _fresh_store(path, gzipped=False)
    attempts = []

    def broken_replace(src: object, dst: object) -> None:
        attempts.append(dst)
        raise OSError(errno.EIO, "I/O error (injected)")

    real_replace = os.replace
    pod = POD(path)
    pod["first"] = 0
    pod.sync()  # the first commit after a compaction rewrites the manifest (journal_empty)
    monkeypatch.setattr(os, "replace", broken_replace)
    pod["big"] = "x" * 2000
    pod.sync()  # past the threshold: compacts, which fails
    assert attempts and pod.dirty() == set()
    failed = len(attempts)
    for i in range(5):  # small syncs: the journal has not doubled, no new attempt
        pod[f"small{i}"] = i
        pod.sync()
    assert len(attempts) == failed
    pod["bigger"] = "y" * 3000  # the journal has more than doubled: try again
    pod.sync()
    assert len(attempts) == 2 * failed
    assert sum("compaction" in r.getMessage() for r in caplog.records) == 2
    monkeypatch.setattr(os, "replace", real_replace)
    pod["biggest"] = "z" * 9000
    pod.sync()  # the fault cleared: this compaction succeeds
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["generation"] == 2
    assert (path / manifest["journal"]).stat().st_size == 0
    expected = list(pod.items())
    pod.close()
    assert on_disk(path) == expected
