"""A shared writer's compaction folds without holding the store: others commit meanwhile.

The compactor notes what to fold under the commit lock, folds it into new
data files without the lock, then, under the lock again, copies the commits
made meanwhile into the new journal and puts the new generation in place.
Here another writer commits (a sync, a locked() block) while the fold runs;
nothing is lost, every writer follows, the store verifies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy.storage.files import _shared
from tastypy.storage.files._shared import SharedFileStorage

from _subproc import Child, read_store


def two_writers(path: Path) -> tuple[tastypy.POD, tastypy.POD]:
    a = tastypy.POD(storage=SharedFileStorage(path, file_size=4))
    b = tastypy.POD(storage=SharedFileStorage(path))
    return a, b


def during_fold(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> list[int]:
    """Run *action* while the next compaction folds (outside the lock); count the folds."""
    real = _shared.fold_journal
    folds: list[int] = []

    def fold(*args: Any, **kwargs: Any) -> Any:
        folds.append(1)
        if len(folds) == 1:
            action()
        return real(*args, **kwargs)

    monkeypatch.setattr(_shared, "fold_journal", fold)
    return folds


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzipped"])
def test_commits_made_while_another_writer_folds_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gzipped: bool
) -> None:
    store = tmp_path / "s"
    a = tastypy.POD(storage=SharedFileStorage(store, file_size=4, gzipped=gzipped))
    b = tastypy.POD(storage=SharedFileStorage(store))
    a.update({f"k{i}": i for i in range(20)})
    a.sync()
    b.refresh()

    def meanwhile() -> None:
        b["k3"] = "b during the fold"
        del b["k4"]
        b["new"] = "b"
        b.sync()
        with b.locked():
            b["k5"] = b["k5"] + 100

    folds = during_fold(monkeypatch, meanwhile)
    a["k0"] = "a before"
    a.compact()
    assert folds == [1]
    expected = {f"k{i}": i for i in range(20)}
    expected.update({"k0": "a before", "k3": "b during the fold", "k5": 105, "new": "b"})
    del expected["k4"]
    assert dict(read_store(store)) == expected
    a.refresh()
    b.refresh()  # b follows a's generation, past the commits it made itself
    assert list(a.items()) == list(b.items()) == read_store(store)
    b["after"] = 1
    b.sync()
    a.refresh()
    assert a["after"] == 1
    a.close()
    b.close()
    assert tastypy.verify(store).ok
    with tastypy.POD(store) as plain:  # a plain writer reads the version-2 store
        assert dict(plain) == {**expected, "after": 1}


@pytest.mark.parametrize("compactions", [1, 2], ids=["one", "two"])
def test_a_writer_that_missed_a_whole_compaction_catches_up_and_keeps_its_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compactions: int
) -> None:
    store = tmp_path / "s"
    a, b = two_writers(store)
    a.update({"x": 1, "y": 1})
    a.sync()
    b.refresh()
    b["mine"] = "pending in b"
    for n in range(compactions):
        a["x"] = 2 + n
        a.sync()  # b has not seen this commit...
        a.compact()  # ...and now it is folded into the data files
    reloads: list[int] = []
    real = _shared.FileStorage.load

    def load(self: Any) -> Any:
        reloads.append(1)
        return real(self)

    monkeypatch.setattr(_shared.FileStorage, "load", load)
    b.sync()
    # One compaction: the commits folded in are still in the journal b has open,
    # so b reads them there. Two: the first's journal is gone too; b reloads.
    assert len(reloads) == compactions - 1
    assert dict(b) == {"x": 1 + compactions, "y": 1, "mine": "pending in b"}
    assert dict(read_store(store)) == dict(b)
    a.close()
    b.close()


COMPACTING = """
import sys, time
import tastypy
with tastypy.POD(sys.argv[1], shared=True) as pod:
    print("open", flush=True)
    for round in range(int(sys.argv[2])):
        pod.update({f"big{i}": {"round": round, "pad": "x" * 200} for i in range(5000)})
        pod.compact()
"""

PAUSES = """
import sys, time
import tastypy
with tastypy.POD(sys.argv[1], shared=True) as pod:
    print("open", flush=True)
    longest = 0.0
    end = time.monotonic() + float(sys.argv[2])
    n = 0
    while time.monotonic() < end:
        pod[f"small{n % 50}"] = n
        started = time.perf_counter()
        pod.sync()
        longest = max(longest, time.perf_counter() - started)
        n += 1
    print(longest, n, flush=True)
"""


def test_a_writer_keeps_syncing_while_another_compacts_a_big_store(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with tastypy.POD(store) as pod:
        pod.update({f"big{i}": {"round": -1, "pad": "x" * 200} for i in range(5000)})
    with Child(COMPACTING, str(store), "6") as big, Child(PAUSES, str(store), "3") as small:
        big.expect("open")
        small.expect("open")
        assert big.finish(timeout=120) == 0, big.stderr
        assert small.finish(timeout=120) == 0, small.stderr
    longest, syncs = small.stdout.split()
    assert int(syncs) > 10
    stored = dict(read_store(store))
    assert stored["big0"]["round"] == 5
    assert len(stored) == 5050
    assert tastypy.verify(store).ok
    # No timing is asserted (shared machines): the longest pause is for people.
    print(f"longest sync while another writer compacted: {float(longest) * 1000:.1f} ms")
