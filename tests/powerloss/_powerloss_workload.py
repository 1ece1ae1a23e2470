"""The workload the power-loss tests record: creation, syncs, compactions, close, reopen."""

from __future__ import annotations

import copy
import random
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from _check import STORE, History
from _model import Disk, materialize
from _recorder import Recorder, snapshot

import tastypy
from tastypy.storage.files import _engine as files
from tastypy.storage.files import _manifest

from _folds import fold_later

NO_AUTO_SYNC = 10**6  # syncs happen where the workload says, so it knows what each committed


def change(m: Any, n: int) -> None:
    """Batch *n* of changes, a pure function of *n* and the keys in *m* (a POD or a dict)."""
    rng = random.Random(n)
    for j in range(rng.randint(1, 6)):
        keys = list(m)
        op = rng.random()
        if len(keys) > 24:
            op = 0.6 + op * 0.4  # keep the store small: no inserts
        if op < 0.35 or not keys:
            size = rng.choice([0, 20, 90, 1300])  # some commits and chunks span sectors
            m[f"k{n}-{j}"] = {"n": n, "items": [j], "text": "x" * size}
        elif op < 0.55:
            m[rng.choice(keys)] = {"n": n, "items": [], "text": "updated"}
        elif op < 0.75:
            m[rng.choice(keys)]["items"].append(n)
        elif op < 0.9:
            del m[rng.choice(keys)]
        else:
            key = rng.choice(keys)
            m[key] = m.pop(key)  # delete and re-insert: moves to the end


def record_workload(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    gzipped: bool,
    durable: bool,
    batches: int,
    start: str = "new",
) -> tuple[Recorder, History]:
    """Run the workload under *root* with every OS call recorded.

    *start*: ``"new"`` creates the store; ``"crashed"`` starts from a store a
    crash left behind (a torn last commit, the files of a compaction that
    never got its manifest), so the workload begins by recovering it;
    ``"copy"`` fills another store (other settings) and ``copy()``s it,
    unsynced changes included, to the store's place.
    """
    # A fixed "synced_at" in manifests: the same seed then gives the same disks.
    frozen = SimpleNamespace(strftime=time.strftime, gmtime=lambda: time.gmtime(1_800_000_000))
    monkeypatch.setattr(_manifest, "time", frozen)
    from_crash = start == "crashed"
    root.mkdir()
    model: dict[str, Any] = {}
    first = 0
    if from_crash:
        model, first = leave_crashed_store(root, monkeypatch, gzipped=gzipped)
    # Compact often (by itself, too): the journal outgrows these data files fast.
    monkeypatch.setattr(files, "COMPACT_MIN_BYTES", 400)
    # A compaction by itself folds "in the background", here at the writer's
    # next commit (so the calls come in one order): the commits in between go
    # to the new journal, copied by the fold (gzipped) or by the install (plain).
    folds = fold_later(monkeypatch, left_to_install=0 if gzipped else None)
    recorder = Recorder(root)
    history = History(recorder)
    if from_crash:
        with history.sync(model):
            pass  # the last sync before the crash
    with monkeypatch.context() as patch:
        recorder.install(patch)
        settings = {"file_size": 3, "sync_at": NO_AUTO_SYNC, "durable": durable}
        if start == "copy":  # the other store's syncs are not the store's
            other = {**settings, "file_size": 5, "gzipped": not gzipped}
            pod = tastypy.POD(root / "other", **other)
            for n in range(4):
                change(pod, n)
                change(model, n)
                if n < 3:
                    pod.sync()  # batch 3 stays unsynced: copy() takes it along
            first = 4
            with history.sync(model):
                pod.copy(root / STORE, file_size=3, gzipped=gzipped)
        else:
            with history.sync(model):
                pod = tastypy.POD(root / STORE, gzipped=gzipped, **settings)
        for n in range(first, first + batches):
            if n == first + batches // 2:
                with history.sync(model):
                    pod.close()
                # Reopening with another sync_at also rewrites the manifest.
                pod = tastypy.POD(root / STORE, sync_at=NO_AUTO_SYNC + 1, durable=durable)
            change(pod, n)
            change(model, n)
            with history.sync(model):
                if n % 5 == 4:
                    pod.compact()
                else:
                    pod.sync()
        with history.sync(model):
            pod.close()
    # Folds after a commit were installed with commits made meanwhile, copied
    # by the fold itself (gzipped) or by the install (plain).
    assert any(total > 0 for _by_fold, total in folds), folds
    assert all((by_fold == total) == gzipped for by_fold, total in folds if total), folds
    reader = tastypy.POD(root / STORE, readonly=True)
    assert list(reader.items()) == list(model.items())
    reader.close()
    return recorder, history


def leave_crashed_store(
    root: Path, monkeypatch: pytest.MonkeyPatch, *, gzipped: bool
) -> tuple[dict[str, Any], int]:
    """Leave under *root* the store a writer killed mid-sync (and mid-compaction) leaves.

    Returns the state of its last complete sync, and the next batch number.
    """
    monkeypatch.setattr(files, "COMPACT_MIN_BYTES", 1 << 30)  # no compaction by itself
    model: dict[str, Any] = {}
    pod = tastypy.POD(root / STORE, gzipped=gzipped, file_size=3, sync_at=NO_AUTO_SYNC)
    for n in range(6):
        change(pod, n)
        change(model, n)
        pod.sync()
    crashed, state = snapshot(root), copy.deepcopy(model)
    change(pod, 6)
    pod.sync()
    synced = snapshot(root)
    pod.compact()
    compacted = snapshot(root)
    pod.close()
    journal = f"{STORE}/{pod_journal(crashed)}"
    next_commit = synced[journal][len(crashed[journal] or b"") :]
    # The crash: half the next commit got written, and all of a compaction but
    # its manifest.
    crashed[journal] = (crashed[journal] or b"") + next_commit[: len(next_commit) // 2]
    crashed.update({p: c for p, c in compacted.items() if p not in synced})
    shutil.rmtree(root)
    materialize(crashed, root)
    return state, 7


def pod_journal(disk: Disk) -> str:
    manifest: dict[str, Any] = orjson.loads(disk[f"{STORE}/manifest.json"] or b"")
    return str(manifest["journal"])
