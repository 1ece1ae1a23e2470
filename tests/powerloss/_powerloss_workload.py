"""The workload the power-loss tests record: creation, syncs, compactions, close, reopen."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from _check import STORE, History
from _recorder import Recorder

import tastypy
from tastypy.storage import files

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
            m[f"k{n}-{j}"] = {"n": n, "items": [j], "text": "x" * rng.randint(0, 90)}
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
    root: Path, monkeypatch: pytest.MonkeyPatch, *, gzipped: bool, durable: bool, batches: int
) -> tuple[Recorder, History]:
    """Run the workload under *root* with every OS call recorded."""
    # Compact often (by itself, too): the journal outgrows these data files fast.
    monkeypatch.setattr(files, "COMPACT_MIN_BYTES", 700)
    root.mkdir()
    recorder = Recorder(root)
    history = History(recorder)
    model: dict[str, Any] = {}
    with monkeypatch.context() as patch:
        recorder.install(patch)
        settings = {"file_size": 3, "sync_at": NO_AUTO_SYNC, "durable": durable}
        with history.sync(model):
            pod = tastypy.POD(root / STORE, gzipped=gzipped, **settings)
        for n in range(batches):
            if n == batches // 2:
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
    reader = tastypy.POD(root / STORE, readonly=True)
    assert list(reader.items()) == list(model.items())
    reader.close()
    return recorder, history
