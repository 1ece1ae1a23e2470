"""The power-loss model itself: it must be able to lose what is not durable.

A simulator that never loses anything would pass every engine; these tests
show that ours loses exactly what the model says, and that it catches an
engine that leaves out its directory or data fsyncs.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from _check import Checker, simulate
from _model import (
    DIR,
    DROP,
    KEEP,
    SECTOR,
    Choice,
    Crash,
    Disk,
    Op,
    Timeline,
    corner_choices,
    materialize,
    random_choices,
)
from _powerloss_workload import record_workload
from _recorder import snapshot


def disks_after(
    namespace: dict[str, int], data: dict[int, bytes], ops: list[Op], samples: int = 40
) -> list[list[Disk]]:
    """For each crash point, every disk its corner and random choices give."""
    found: list[list[Disk]] = []
    for crash in Timeline(namespace, data, ops).crashes():
        choices = itertools.chain(corner_choices(crash, 1), random_choices(crash, samples, 2))
        found.append([crash.disk(choice) for choice in choices])
    return found


def test_a_rename_without_a_directory_fsync_can_be_lost_but_never_half_done() -> None:
    namespace = {"d": DIR, "d/a": 7, "d/b": 8}
    data = {7: b"new", 8: b"old"}
    rename = Op("rename", "d/a", dst="d/b", ino=7)
    ops = [rename, Op("dirsync", "d")]
    before, after_rename, after_dirsync = disks_after(namespace, data, ops)
    assert all(disk == {"d": None, "d/a": b"new", "d/b": b"old"} for disk in before)
    old_or_new = {
        tuple(sorted(disk.items()))
        for disk in after_rename  # each disk either before or after the rename, nothing else
    }
    assert old_or_new == {
        (("d", None), ("d/a", b"new"), ("d/b", b"old")),
        (("d", None), ("d/b", b"new")),
    }
    assert all(disk == {"d": None, "d/b": b"new"} for disk in after_dirsync)


def test_a_rename_needs_the_fsync_of_its_own_directory() -> None:
    namespace = {"d": DIR, "e": DIR, "d/a": 7}
    rename = Op("rename", "d/a", dst="d/b", ino=7)
    *_, last = disks_after(namespace, {7: b"x"}, [rename, Op("dirsync", "e")])
    assert {"d/a", "d/b"} == {path for disk in last for path in disk if path.startswith("d/")}


def test_a_write_followed_by_fdatasync_cannot_be_lost() -> None:
    data = b"0123456789" * 200  # four sectors
    ops = [Op("write", "f", ino=7, offset=0, data=data), Op("fsync", "f", ino=7)]
    _, after_write, after_sync = disks_after({"f": 7}, {7: b""}, ops)
    contents = {disk["f"] for disk in after_write}
    assert b"" in contents and data in contents  # lost, kept ...
    assert bytes(len(data)) in contents  # ... zero-filled (the size got there, the data not)
    torn = [c for c in contents if len(c) > SECTOR and c not in (data, bytes(len(data)))]
    assert torn  # ... and torn
    assert all(disk == {"f": data} for disk in after_sync)


def test_later_writes_may_persist_without_earlier_ones() -> None:
    first = Op("write", "f", ino=7, offset=0, data=b"a" * 10)
    second = Op("write", "f", ino=7, offset=10, data=b"b" * 10)
    *_, last = disks_after({"f": 7}, {7: b""}, [first, second])
    assert bytes(10) + b"b" * 10 in {disk["f"] for disk in last}  # zeros before the data


def test_a_created_file_needs_its_directory_fsync_and_a_lost_mkdir_hides_its_files() -> None:
    ops = [
        Op("mkdir", "d"),
        Op("create", "d/f", ino=7),
        Op("write", "d/f", ino=7, offset=0, data=b"x"),
        Op("fsync", "d/f", ino=7),
        Op("dirsync", "d"),  # d/f's entry is durable; d's own entry is not
    ]
    *_, last = disks_after({}, {}, ops)
    assert {} in last and {"d": None, "d/f": b"x"} in last
    assert all("d/f" not in disk or "d" in disk for disk in last)
    *_, synced = disks_after({}, {}, [*ops, Op("dirsync", "")])
    assert all(disk == {"d": None, "d/f": b"x"} for disk in synced)


def test_a_truncate_is_lost_until_the_file_is_synced() -> None:
    ops = [Op("truncate", "f", ino=7, length=2), Op("fsync", "f", ino=7)]
    _, cut, synced = disks_after({"f": 7}, {7: b"abcd"}, ops)
    assert {disk["f"] for disk in cut} == {b"abcd", b"ab"}
    assert all(disk["f"] == b"ab" for disk in synced)


def test_the_synced_tail_model_forgets_what_was_not_synced() -> None:
    crash = Crash(
        point=3,
        namespace={"d": DIR, "d/f": 7},
        data={7: b"abc"},
        pending_ns=(Op("create", "d/g", ino=8),),
        pending_data={7: (Op("write", "d/f", ino=7, offset=3, data=b"def"),)},
    )
    assert crash.synced_tail_disk() == {"d": None, "d/f": b"abc"}
    everything = Choice(frozenset({0}), default=KEEP)
    assert crash.disk(everything) == {"d": None, "d/f": b"abcdef", "d/g": b""}
    assert crash.disk(Choice(frozenset(), default=DROP)) == crash.synced_tail_disk()


def test_the_recorder_sees_what_the_os_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, _ = record_workload(
        tmp_path / "live", monkeypatch, gzipped=False, durable=True, batches=3
    )
    *_, last = Timeline(recorder.initial_namespace, recorder.initial_data, recorder.ops).crashes()
    everything = Choice(frozenset(range(len(last.pending_ns))), default=KEEP)
    assert last.disk(everything) == snapshot(tmp_path / "live")
    kinds = {op.kind for op in recorder.ops}
    assert {"create", "mkdir", "rename", "unlink", "write", "fsync", "dirsync"} <= kinds
    materialize(last.disk(everything), tmp_path / "copy")
    assert snapshot(tmp_path / "copy") == snapshot(tmp_path / "live")


@pytest.mark.parametrize("left_out", ["dirsync", "fsync"])
def test_the_simulation_catches_an_engine_that_skips_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, left_out: str
) -> None:
    """Replay a real recording with every directory (or file) fsync left out."""
    recorder, history = record_workload(
        tmp_path / "live", monkeypatch, gzipped=False, durable=True, batches=4
    )
    recorder.ops = [op if op.kind != left_out else Op("close", op.path) for op in recorder.ops]
    (tmp_path / "checks").mkdir()
    tally = simulate(
        recorder,
        history,
        Checker(tmp_path / "checks"),
        mode=f"self-test without {left_out}",
        durable=True,
        samples=2,
        seed=3,
        count=False,
    )
    assert len(tally.bad) > tally.checked // 50
