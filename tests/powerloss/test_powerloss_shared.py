"""Power loss at every OS call of two shared writers taking turns on one store.

As ``test_powerloss.py``, in the same strict model, with two
``SharedFileStorage`` opens (two writers, as two processes would be) syncing
and compacting in turn: each catches up on the other's commits under the
commit lock, appends its own and ``fdatasync``s it there. Every disk a power
cut can leave must open, verify, and hold the store as of the last sync
that returned (or of one running), whichever writer made it.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _check import STORE, Checker, History, simulate
from _powerloss_workload import NO_AUTO_SYNC, change
from _recorder import Recorder
from test_powerloss import SAMPLES, assert_recording_complete, report

import tastypy
from tastypy.storage.files import _engine as files
from tastypy.storage.files import _manifest, _shared
from tastypy.storage.files._shared import SharedFileStorage


def record_two_writers(
    root: Path, monkeypatch: pytest.MonkeyPatch, *, gzipped: bool, batches: int
) -> tuple[Recorder, History]:
    frozen = SimpleNamespace(strftime=time.strftime, gmtime=lambda: time.gmtime(1_800_000_000))
    monkeypatch.setattr(_manifest, "time", frozen)
    monkeypatch.setattr(files, "COMPACT_MIN_BYTES", 700)  # compactions by themselves too
    root.mkdir()
    recorder = Recorder(root)
    history = History(recorder)
    state: dict[str, Any] = {}

    def synced(pod: tastypy.POD) -> None:
        state.clear()
        state.update(copy.deepcopy(pod._data))  # after its sync, a writer holds the store

    with monkeypatch.context() as patch:
        recorder.install(patch)
        with history.sync(state):
            a = tastypy.POD(
                storage=SharedFileStorage(root / STORE, file_size=3, gzipped=gzipped),
                sync_at=NO_AUTO_SYNC,
            )
            synced(a)
        with history.sync(state):
            b = tastypy.POD(storage=SharedFileStorage(root / STORE), sync_at=NO_AUTO_SYNC)
            synced(b)
        real_fold = _shared.fold_journal
        for n in range(batches):
            writer, other = (a, b) if n % 2 == 0 else (b, a)
            change(writer, n)
            if n % 5 == 4:  # its own changes first, so that the fold block holds one change
                with history.sync(state):
                    writer.sync()
                    synced(writer)
            with history.sync(state):
                if n % 5 == 4:
                    # The other writer commits while this one folds, without the lock:
                    # its commit goes into the new journal with the new data files.
                    def fold(*args: Any, other: tastypy.POD = other, n: int = n, **kw: Any) -> Any:
                        change(other, 1000 + n)
                        other.sync()
                        return real_fold(*args, **kw)

                    patch.setattr(_shared, "fold_journal", fold)
                    writer.compact()
                    patch.setattr(_shared, "fold_journal", real_fold)
                    writer.refresh()  # brings in the other's commit
                else:
                    writer.sync()
                synced(writer)
        for writer in (a, b):
            with history.sync(state):
                writer.close()
    reader = tastypy.POD(root / STORE, readonly=True)
    assert dict(reader.items()) == state
    reader.close()
    return recorder, history


@pytest.mark.slow
@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzipped"])
def test_power_loss_at_every_call_of_two_shared_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gzipped: bool
) -> None:
    root = tmp_path / "live"
    recorder, history = record_two_writers(root, monkeypatch, gzipped=gzipped, batches=16)
    assert_recording_complete(recorder, root)
    checks = tmp_path / "checks"
    checks.mkdir()
    mode = f"strict, {'gzipped' if gzipped else 'plain'}, durable=True, two shared writers"
    tally = simulate(
        recorder, history, Checker(checks), mode=mode, durable=True, samples=SAMPLES, seed=1
    )
    report(tally)
    assert tally.checked > 1000
    assert tally.bad == []
