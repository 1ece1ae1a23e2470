"""Open each simulated disk and judge what it holds against the syncs made so far.

:class:`History` notes, in the workload, which calls each sync spanned and
the state it committed. :class:`Checker` materializes a disk, runs
``tastypy.verify`` on it, opens it for writing and reads it back (caching
by content, since many crashes leave the same disk). :func:`simulate` walks
every crash point of a recording through both.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from _model import (
    Choice,
    Crash,
    Disk,
    Timeline,
    corner_choices,
    disk_key,
    materialize,
    random_choices,
)
from _recorder import Recorder

import tastypy

EMPTY = orjson.dumps([])
STORE = "parent/store"  # the store's path under the recording's root (two new levels)


@dataclass
class Sync:
    start: int  # calls made before it began
    end: int  # calls made when it returned
    state: bytes  # what it committed: the items, in order, as JSON


class History:
    """The syncs of a workload (store creation and close count as syncs)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.syncs: list[Sync] = []

    @contextmanager
    def sync(self, model: dict[str, Any]) -> Iterator[None]:
        """Around a call that commits *model* (as it is once the call returns)."""
        start = len(self.recorder.ops)
        yield
        self.syncs.append(Sync(start, len(self.recorder.ops), orjson.dumps(list(model.items()))))

    def allowed(self, point: int, durable: bool) -> tuple[set[bytes], bool]:
        """States a disk cut after *point* calls may hold, and whether "no store" is one."""
        begun = [s for s in self.syncs if s.start < point or s.end <= point]
        if not durable:  # any sync that began (or none at all), never a mix
            return {EMPTY} | {s.state for s in begun}, True
        returned = [s for s in self.syncs if s.end <= point]
        running = [s.state for s in begun if s.end > point]
        if not returned:  # the store's creation had not returned
            return {EMPTY, *running}, True
        return {returned[-1].state, *running}, False


@dataclass
class Tally:
    """What one simulation found."""

    mode: str
    crash_points: int = 0
    checked: int = 0  # distinct disks per crash point, summed
    opened: int = 0  # distinct disks over all crash points (each opened once)
    bad: list[str] = field(default_factory=list)  # every inconsistent disk
    unopenable: int | None = None  # disks that did not open, where that is allowed

    def __str__(self) -> str:
        text = (
            f"{self.mode}: {self.checked:,} crash states at {self.crash_points:,} "
            f"crash points ({self.opened:,} distinct disks), {len(self.bad):,} inconsistent"
        )
        if self.unopenable is not None:
            text += f" ({self.unopenable:,} did not open, which is allowed here)"
        return text


TALLIES: list[Tally] = []  # every simulation this session, for the terminal summary


class Checker:
    """Open simulated disks (each distinct disk once) and say what they hold."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cache: dict[tuple[tuple[str, bytes | None], ...], tuple[str, bytes]] = {}

    def outcome(self, disk: Disk) -> tuple[str, bytes]:
        """("ok" | "nostore", the items as JSON) if it opens, else ("error", why)."""
        key = store_key(disk)
        found = self.cache.get(key)
        if found is None:
            found = self.cache[key] = self._open(disk)
        return found

    def _open(self, disk: Disk) -> tuple[str, bytes]:
        target = self.workdir / f"disk{len(self.cache)}"
        materialize(disk, target)
        store = target / STORE
        try:
            kind = "ok" if (store / "manifest.json").exists() else "nostore"
            if kind == "ok":
                report = tastypy.verify(store)
                if not report.ok:
                    return "error", f"verify: {report.problems}".encode()
            pod = tastypy.POD(store, durable=False)
            try:
                state = orjson.dumps(list(pod.items()))
            finally:
                pod.close()  # which also compacts
            # What the writable open repaired (a torn tail cut, leftovers removed)
            # and the close compacted must still be that state.
            report = tastypy.verify(store)
            reader = tastypy.POD(store, readonly=True)
            again = orjson.dumps(list(reader.items()))
            reader.close()
            if not report.ok or again != state:
                return "error", f"after a writable open: {report}, {again[:200]!r}".encode()
            return kind, state
        except Exception as exc:  # any failure to open is what we are looking for
            return "error", f"{type(exc).__name__}: {exc}".encode()
        finally:
            shutil.rmtree(target)

    @property
    def opened(self) -> int:
        return len(self.cache)


def store_key(disk: Disk) -> tuple[tuple[str, bytes | None], ...]:
    """What identifies a disk for the store: all but the lock file's content.

    That content (pid, host, argv) is informational only and cannot change
    what opening the store gives; leaving it out also makes the figures the
    same whatever process runs the tests.
    """
    return disk_key({p: b"" if p == f"{STORE}/lock" else c for p, c in disk.items()})


def judge(outcome: tuple[str, bytes], allowed: set[bytes], nostore_ok: bool) -> bool:
    kind, state = outcome
    if kind == "nostore":
        return nostore_ok and state == EMPTY
    return kind == "ok" and state in allowed


def simulate(
    recorder: Recorder,
    history: History,
    checker: Checker,
    *,
    mode: str,
    durable: bool,
    samples: int,
    seed: int,
    strict: bool = True,
    count: bool = True,
    unopenable_ok: bool = False,
) -> Tally:
    """Judge the disks a power cut after each recorded call can leave.

    *strict*: the corner states and *samples* random ones per crash point;
    otherwise LevelDB's milder model (one disk per crash point). *count*:
    add the figures to the session's summary. *unopenable_ok*: a disk that
    does not open is counted, not inconsistent (one that opens must hold a
    state some sync committed).
    """
    tally = Tally(mode, unopenable=0 if unopenable_ok else None)
    timeline = Timeline(recorder.initial_namespace, recorder.initial_data, recorder.ops)
    for crash in timeline.crashes():
        tally.crash_points += 1
        allowed, nostore_ok = history.allowed(crash.point, durable)
        seen: set[tuple[tuple[str, bytes | None], ...]] = set()
        for choice, disk in _disks(crash, strict, samples, seed):
            key = store_key(disk)
            if key in seen:
                continue
            seen.add(key)
            tally.checked += 1
            outcome = checker.outcome(disk)
            if unopenable_ok and outcome[0] == "error":
                assert tally.unopenable is not None
                tally.unopenable += 1
            elif not judge(outcome, allowed, nostore_ok):
                tally.bad.append(
                    f"crash after call {crash.point} "
                    f"({_describe(recorder, crash.point)}), {choice}: "
                    f"{outcome[0]} {outcome[1][:300]!r}"
                )
    tally.opened = checker.opened
    if count:
        TALLIES.append(tally)
    return tally


def _disks(
    crash: Crash, strict: bool, samples: int, seed: int
) -> Iterator[tuple[Choice | str, Disk]]:
    if not strict:
        yield "synced tail", crash.synced_tail_disk()
        return
    choices = itertools.chain(
        corner_choices(crash, seed), random_choices(crash, samples, seed * 7919 + crash.point)
    )
    for choice in choices:
        yield choice, crash.disk(choice)


def _describe(recorder: Recorder, point: int) -> str:
    if point == 0:
        return "before any"
    op = recorder.ops[point - 1]
    return f"{op.kind} {op.path}" + (f" -> {op.dst}" if op.dst else "")
