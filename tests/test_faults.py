"""Fault injection: a failing write, fsync or rename leaves the store as it was.

Each test makes the n-th call of one OS function fail (ENOSPC or EIO) during a
sync or a compaction, for every n that the operation reaches, and checks:
``sync()`` raised the OSError, the files on disk still hold the previous
state, the changes are still pending in memory, and once the fault clears a
plain ``sync()`` (or ``compact()``) succeeds with nothing lost.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tastypy import POD

from _helpers import on_disk

FUNCTIONS = ["write", "pwrite", "fsync", "fdatasync", "replace", "ftruncate"]


class Injector:
    """Make the n-th call of ``os.<name>`` fail; count the calls."""

    def __init__(self, name: str, fail_at: int) -> None:
        self.name = name
        self.fail_at = fail_at
        self.calls = 0
        self.real: Callable[..., Any] = getattr(os, name)

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            code = errno.ENOSPC if "write" in self.name else errno.EIO
            if self.name in ("write", "pwrite"):  # the disk filled up halfway through
                fd, data, *offset = args
                self.real(fd, memoryview(data)[: len(data) // 2], *offset)
            raise OSError(code, f"{os.strerror(code)} (injected into os.{self.name})")
        return self.real(*args)


@contextmanager
def failing(name: str, fail_at: int) -> Iterator[Injector]:
    injector = Injector(name, fail_at)
    setattr(os, name, injector)
    try:
        yield injector
    finally:
        setattr(os, name, injector.real)


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
