"""Values the POD hands out, changed later: a state machine against a dict model.

The rules tested here (each one also has a plain example below the machine):

1. Every value the POD hands out (``pod[k]``, ``pod.get(k)``,
   ``pod.setdefault(k, d)``, ``values()``, ``items()``, ``dict(pod)``) or is
   given (``pod[k] = v``) and that is changed in place later -- after any
   number of automatic syncs and explicit ``sync()`` calls -- is on disk after
   ``sync()`` and after ``close()``. Keys only read write nothing.
2. SIGTERM with a handler of the program's own that returns (installed before
   the POD was opened, so tastypy's handler syncs and then calls it; one
   installed after replaces tastypy's, as documented): the disk holds
   everything changed so far, and values handed out before the signal stay
   tracked afterwards.
3. Several threads at once (distinct keys, small ``sync_at``): memory and,
   after ``sync()``, the disk equal the model.
5. A NaN smuggled into one key by nested mutation: reads of other keys never
   raise; ``sync()`` writes every good key and then raises ``TypeError``
   naming the bad one, whose value on disk stays its last good one; fixing it
   and syncing again succeeds.

The model is a plain ``dict`` (deep copies, changed exactly as the steps
say) plus the objects the POD handed out, by key, while they are still the
values the POD holds.

Set ``TASTYPY_HYPOTHESIS_EXAMPLES`` to run more examples (default 100).
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import tastypy
import tastypy._lifecycle
import tastypy.storage.files._engine
from tastypy import POD, verify

from _folds import fold_later
from _helpers import on_disk as load_from_disk
from _subproc import run
from strategies import json_text, json_values

EXAMPLES = int(os.environ.get("TASTYPY_HYPOTHESIS_EXAMPLES", "100"))
DEFAULT_COMPACT_MIN_BYTES = tastypy.storage.files._engine.COMPACT_MIN_BYTES
MISSING: Any = object()

KEYS = st.sampled_from(["a", "b", "c", "d", "e", "f"])
CONTAINERS = st.one_of(
    st.lists(json_values(max_leaves=3), max_size=3),
    st.dictionaries(json_text(max_size=3), json_values(max_leaves=3), max_size=3),
)
VALUES = st.one_of(CONTAINERS, CONTAINERS, json_values(max_leaves=6))


# -- comparing with the model ------------------------------------------------------------


def typed(value: Any) -> str:
    """A rendering that tells ``True`` from ``1`` from ``1.0`` and keeps dict order."""
    return repr(value)


def describe_difference(actual: list[tuple[str, Any]], expected: list[tuple[str, Any]]) -> str:
    """Which keys are missing, extra, differ or are out of order (for failure messages)."""
    got, want = dict(actual), dict(expected)
    lines = []
    for key, wanted in want.items():
        if key not in got:
            lines.append(f"  {key!r} missing; expected {wanted!r}")
        elif typed(got[key]) != typed(wanted):
            lines.append(f"  {key!r}: got {got[key]!r}, expected {wanted!r}")
    lines.extend(
        f"  {key!r} should not be there (holds {got[key]!r})" for key in got.keys() - want
    )
    if not lines and list(got) != list(want):
        lines.append(f"  order: got {list(got)!r}, expected {list(want)!r}")
    return "\n".join(lines)


def assert_items(
    actual: list[tuple[str, Any]], expected: list[tuple[str, Any]], what: str
) -> None:
    if typed(actual) != typed(expected) or actual != expected:
        raise AssertionError(
            f"{what} differs from the model:\n{describe_difference(actual, expected)}"
        )


def assert_on_disk(path: Path, expected: dict[str, Any], when: str) -> None:
    assert_items(load_from_disk(path), list(expected.items()), f"the disk {when}")


def store_files(path: Path) -> dict[str, bytes]:
    """Every file of a store with its bytes, but the lock (it names its holder)."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def container_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path (keys and indexes from the top) of every list and dict inside *value*."""
    if isinstance(value, list):
        yield path
        for index, item in enumerate(value):
            yield from container_paths(item, (*path, index))
    elif isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from container_paths(item, (*path, key))


def walk(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


# -- SIGTERM with a handler that returns -------------------------------------------------


@contextmanager
def sigterm_restored() -> Iterator[None]:
    """Put back the SIGTERM handler (and the one tastypy chains to) when done."""
    handler = signal.getsignal(signal.SIGTERM)
    chained = getattr(tastypy._lifecycle, "_previous_sigterm", MISSING)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, handler)
        if chained is not MISSING:
            tastypy._lifecycle._previous_sigterm = chained  # type: ignore[attr-defined]


def send_sigterm_to_self(seen: list[int]) -> None:
    """SIGTERM this process; return once the program's own handler has run."""
    before = len(seen)
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 5
    while len(seen) == before and time.monotonic() < deadline:
        time.sleep(0.001)  # the handler runs in the main thread, between bytecodes
    assert len(seen) == before + 1, "the program's own SIGTERM handler was not called"


# -- the machine -------------------------------------------------------------------------


class HandedOutMachine(RuleBasedStateMachine):
    """A POD with small ``sync_at``; the values it handed out are kept and changed later."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="tastypy-handed-out-"))
        self.path = self.tmp / "store"
        self.pod: POD | None = None
        self.patches = pytest.MonkeyPatch()
        self.memory: dict[str, Any] = {}
        # key -> the very object the POD holds as that key's value, handed out
        # (or given) earlier; the test changes it in place whenever it likes.
        self.refs: dict[str, Any] = {}
        # Keys changed through a kept reference while the POD did not count
        # them dirty: an explicit or automatic sync need not write them (only
        # the sync at close or exit, or a SIGTERM's, must).
        self.stale: set[str] = set()
        self.sync_at = 2
        self.durable = True
        self.signals: list[int] = []
        self._restore = sigterm_restored()
        self._restore.__enter__()

    @property
    def store(self) -> POD:
        assert self.pod is not None
        return self.pod

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """The program's graceful-stop handler: note it, and carry on."""
        self.signals.append(signum)

    def install_own_handler(self) -> None:
        signal.signal(signal.SIGTERM, self.on_sigterm)

    @initialize(
        sync_at=st.sampled_from([2, 3, 5]),
        file_size=st.sampled_from([1, 3, 1000]),
        gzipped=st.booleans(),
        durable=st.booleans(),
        compact_min_bytes=st.sampled_from([0, 300, DEFAULT_COMPACT_MIN_BYTES]),
    )
    def open_store(
        self, sync_at: int, file_size: int, gzipped: bool, durable: bool, compact_min_bytes: int
    ) -> None:
        tastypy.storage.files._engine.COMPACT_MIN_BYTES = compact_min_bytes  # restored by teardown
        fold_later(self.patches)  # folds at the next commit: Hypothesis replays the same steps
        self.sync_at, self.durable = sync_at, durable
        self.install_own_handler()  # before the POD opens: tastypy's handler chains to it
        self.pod = POD(
            self.path, gzipped=gzipped, file_size=file_size, sync_at=sync_at, durable=durable
        )

    def teardown(self) -> None:
        try:
            if self.pod is not None and not self.pod.closed:
                self.pod.close()
        finally:
            self._restore.__exit__(None, None, None)
            tastypy.storage.files._engine.COMPACT_MIN_BYTES = DEFAULT_COMPACT_MIN_BYTES
            self.patches.undo()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- bookkeeping ------------------------------------------------------------------

    def _handed_out(self, key: str, value: Any) -> None:
        """The POD handed out (or was given) *value* for *key*: keep it to change later."""
        self.stale.discard(key)  # touched through the POD: the next sync writes it
        if isinstance(value, (list, dict)):
            self.refs[key] = value
        else:
            self.refs.pop(key, None)

    def _check_value(self, key: str, value: Any, how: str) -> None:
        assert typed(value) == typed(self.memory[key]), (
            f"{how} gave {value!r} for {key!r}; the model holds {self.memory[key]!r}"
        )

    # -- assigning, reading, deleting ----------------------------------------------------

    @rule(key=KEYS, value=VALUES)
    def assign(self, key: str, value: Any) -> None:
        self.store[key] = value
        self.memory[key] = copy.deepcopy(value)
        self._handed_out(key, value)  # "pod[k] = v; v[...] = ..." must reach the disk too

    @rule(key=KEYS, how=st.sampled_from(["pod[k]", "get", "setdefault"]), default=CONTAINERS)
    def read(self, key: str, how: str, default: Any) -> None:
        pod = self.store
        if key not in self.memory:
            if how == "setdefault":
                assert pod.setdefault(key, default) is default
                self.memory[key] = copy.deepcopy(default)
                self._handed_out(key, default)
            elif how == "get":
                assert pod.get(key, default) is default
            else:
                with pytest.raises(KeyError):
                    pod[key]
            return
        if how == "pod[k]":
            value = pod[key]
        elif how == "get":
            value = pod.get(key)
        else:
            value = pod.setdefault(key, default)
        self._check_value(key, value, how)
        self._handed_out(key, value)

    @rule(how=st.sampled_from(["values()", "items()", "dict(pod)"]))
    def iterate(self, how: str) -> None:
        pod = self.store
        if how == "values()":
            pairs = list(zip(pod.keys(), pod.values(), strict=True))
        elif how == "items()":
            pairs = [(key, value) for key, value in pod.items()]
        else:
            pairs = list(dict(pod).items())
        assert [key for key, _ in pairs] == list(self.memory)
        for key, value in pairs:
            self._check_value(key, value, how)
            self._handed_out(key, value)

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        if key in self.memory:
            del self.store[key]
            del self.memory[key]
            self.refs.pop(key, None)
            self.stale.discard(key)
        else:
            with pytest.raises(KeyError):
                del self.store[key]

    # -- changing a handed-out value in place -----------------------------------------------

    @precondition(lambda self: self.refs)
    @rule(data=st.data(), item=json_values(max_leaves=3))
    def change_handed_out_value(self, data: st.DataObject, item: Any) -> None:
        """``v = pod[k]`` some steps ago (syncs since, maybe); now ``v[...] = item``."""
        key = data.draw(st.sampled_from(sorted(self.refs)), label="key")
        actual_root, model_root = self.refs[key], self.memory[key]
        path = data.draw(st.sampled_from(list(container_paths(model_root))), label="path")
        actual, model = walk(actual_root, path), walk(model_root, path)
        if isinstance(model, list):
            ops = ["append", "set", "pop"] if model else ["append"]
            op = data.draw(st.sampled_from(ops), label="op")
            if op == "append":
                actual.append(item)
                model.append(copy.deepcopy(item))
            elif op == "set":
                index = data.draw(st.integers(0, len(model) - 1), label="index")
                actual[index] = item
                model[index] = copy.deepcopy(item)
            else:
                actual.pop()
                model.pop()
        else:
            ops = ["set", "pop"] if model else ["set"]
            op = data.draw(st.sampled_from(ops), label="op")
            if op == "set":
                subkey = data.draw(json_text(max_size=3), label="subkey")
                actual[subkey] = item
                model[subkey] = copy.deepcopy(item)
            else:
                subkey = data.draw(st.sampled_from(list(model)), label="subkey")
                del actual[subkey]
                del model[subkey]
        if key not in self.store.dirty():
            self.stale.add(key)

    # -- syncing, closing, signals ---------------------------------------------------

    def _assert_synced(self, when: str) -> None:
        """After a sync: the disk is the model, but for keys changed behind the POD's back."""
        on_disk = dict(load_from_disk(self.path))
        expected = {k: on_disk.get(k) if k in self.stale else v for k, v in self.memory.items()}
        assert_on_disk(self.path, expected, when)

    @rule()
    def sync(self) -> None:
        self.store.sync()
        self._assert_synced("after sync()")

    def _reopen(self) -> None:
        self.pod = POD(self.path, sync_at=self.sync_at, durable=self.durable)
        self.refs.clear()  # the old objects belong to the closed POD
        self.stale.clear()  # and the close wrote what they changed

    @rule(reinstall_own_handler=st.booleans())
    def close_and_reopen(self, reinstall_own_handler: bool) -> None:
        self.store.close()
        assert_on_disk(self.path, self.memory, "after close()")
        if reinstall_own_handler:  # a program that installs its handler anew, then reopens
            self.install_own_handler()
        self._reopen()

    @rule()
    def read_only_pass_writes_nothing(self) -> None:
        """Reopen, read every value every way, close: no file's bytes change."""
        self.store.close()
        assert_on_disk(self.path, self.memory, "after close()")
        self._reopen()
        pod = self.store
        before = store_files(self.path)
        for key in list(pod):
            self._check_value(key, pod[key], "pod[k]")
            self._check_value(key, pod.get(key), "get")
            self._check_value(key, pod.setdefault(key, None), "setdefault")
        list(pod.values())
        list(pod.items())
        dict(pod)
        pod.close()
        after = store_files(self.path)
        changed = sorted(
            name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
        )
        assert not changed, f"a read-only pass and close() changed these files: {changed}"
        self._reopen()

    @rule()
    def sigterm(self) -> None:
        """SIGTERM to self; the program's own handler returns and the program goes on."""
        send_sigterm_to_self(self.signals)
        assert not self.store.closed
        assert_on_disk(self.path, self.memory, "right after SIGTERM")
        self.stale.clear()  # the SIGTERM sync checked every value kept

    # -- threads --------------------------------------------------------------------

    @rule(
        plans=st.lists(
            st.lists(
                st.tuples(
                    st.sampled_from(["assign", "set n", "append"]),
                    st.integers(0, 2),
                    st.integers(-3, 3),
                ),
                min_size=1,
                max_size=40,
            ),
            min_size=2,
            max_size=4,
        )
    )
    def threads(self, plans: list[list[tuple[str, int, int]]]) -> None:
        """Each plan runs in its own thread, on its own three keys, all at once."""
        pod = self.store
        names = [[f"t{i}.{j}" for j in range(3)] for i in range(len(plans))]
        for row in names:  # created here, so that the order of keys is known
            for name in row:
                pod[name] = {"n": 0, "log": []}
                self.memory[name] = {"n": 0, "log": []}
                self.refs.pop(name, None)
        for row, plan in zip(names, plans, strict=True):
            for op, j, number in plan:
                record = self.memory[row[j]]
                if op == "assign":
                    self.memory[row[j]] = {"n": number, "log": []}
                elif op == "set n":
                    record["n"] = number
                else:
                    record["log"].append(number)
        errors: list[str] = []
        start = threading.Barrier(len(plans))

        def work(row: list[str], plan: list[tuple[str, int, int]]) -> None:
            try:
                start.wait()
                for op, j, number in plan:
                    if op == "assign":
                        pod[row[j]] = {"n": number, "log": []}
                    elif op == "set n":
                        pod[row[j]]["n"] = number
                    else:
                        pod[row[j]]["log"].append(number)
            except BaseException as exc:  # reported below, in the main thread
                errors.append(f"{threading.current_thread().name}: {exc!r}")

        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # switch threads often: inside syncs too
        try:
            workers = [
                threading.Thread(target=work, args=(row, plan), name=f"t{i}")
                for i, (row, plan) in enumerate(zip(names, plans, strict=True))
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(30)
        finally:
            sys.setswitchinterval(switch)
        assert not any(worker.is_alive() for worker in workers), "a thread hangs"
        assert not errors, f"threads raised: {errors}"
        assert_items(
            list(pod.items()), list(self.memory.items()), "the POD's memory after threads"
        )
        for key, value in pod.items():
            self._handed_out(key, value)
        pod.sync()
        self._assert_synced("after threads and sync()")

    # -- a bad value smuggled in ---------------------------------------------------

    def _keys_holding_dicts(self) -> list[str]:
        return [key for key, value in self.memory.items() if isinstance(value, dict)]

    @precondition(lambda self: self._keys_holding_dicts())
    @rule(data=st.data(), change_others=st.booleans())
    def smuggle_nan(self, data: st.DataObject, change_others: bool) -> None:
        """``pod[k]["x"] = nan``; other keys stay readable and syncable; then fix it."""
        pod = self.store
        bad = data.draw(st.sampled_from(self._keys_holding_dicts()), label="key")
        # Synced first, so the bad key has a last good value, in its place on
        # disk (a key that never reached the disk cannot keep its place when
        # the good keys after it are written without it). mark_dirty: so the
        # sync writes the keys changed behind the POD's back too.
        for key in self.stale:
            pod.mark_dirty(key)
        pod.sync()
        self.stale.clear()
        last_good = copy.deepcopy(self.memory[bad])
        value = pod[bad]
        self._handed_out(bad, value)
        pod[bad]["x"] = math.nan
        try:
            self._nan_in(bad, last_good, change_others)
        finally:  # never leave the NaN behind for teardown's close()
            if isinstance(value.get("x"), float) and math.isnan(value["x"]):
                value["x"] = 0

    def _nan_in(self, bad: str, last_good: Any, change_others: bool) -> None:
        pod = self.store
        for n, key in enumerate(list(self.memory)):  # small sync_at: these reads auto-sync
            if key == bad:
                continue
            try:
                other = pod[key]
            except TypeError as exc:
                raise AssertionError(
                    f"reading {key!r} raised {exc!r}; only {bad!r} holds a NaN"
                ) from exc
            self._check_value(key, other, "pod[k]")
            self._handed_out(key, other)
            if change_others and isinstance(other, dict):  # good changes, still unsynced
                other["y"] = n
                self.memory[key]["y"] = n
            elif change_others and isinstance(other, list):
                other.append(n)
                self.memory[key].append(n)
        with pytest.raises(TypeError) as raised:
            pod.sync()
        assert repr(bad) in str(raised.value), (
            f"the TypeError does not name {bad!r}: {raised.value}"
        )
        on_disk = load_from_disk(self.path)
        good_on_disk = [(key, v) for key, v in on_disk if key != bad]
        good_in_model = [(key, v) for key, v in self.memory.items() if key != bad]
        assert_items(good_on_disk, good_in_model, f"the disk after sync() refused {bad!r}")
        assert typed(dict(on_disk).get(bad, MISSING)) == typed(last_good), (
            f"{bad!r} on disk is {dict(on_disk).get(bad, MISSING)!r}; its last good value "
            f"was {last_good!r}"
        )
        report = verify(self.path)
        assert report.ok, str(report)
        pod[bad]["x"] = 0  # fixed
        self.memory[bad]["x"] = 0
        pod.sync()
        self._assert_synced(f"after fixing {bad!r} and sync()")

    # -- after every step ------------------------------------------------------------

    @invariant()
    def keys_agree(self) -> None:
        if self.pod is None:
            return
        # Iterating keys hands out no value; reading values here would hide
        # bugs that only touch keys the program did not read again.
        assert list(self.store) == list(self.memory)
        assert len(self.store) == len(self.memory)


HandedOutMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # One bug at a time: shrinking several at once takes longer than the run.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
TestHandedOutValues = HandedOutMachine.TestCase


# -- plain examples ----------------------------------------------------------------------

HAND_OUTS = ["pod[k]", "get", "setdefault", "values()", "items()", "dict(pod)", "assigned"]


def hand_out(pod: POD, how: str) -> Any:
    """The value of key "k" as the POD hands it out *how* (or is given it)."""
    ways = {
        "pod[k]": lambda: pod["k"],
        "get": lambda: pod.get("k"),
        "setdefault": lambda: pod.setdefault("k", {}),
        "values()": lambda: dict(zip(pod.keys(), pod.values(), strict=True))["k"],
        "items()": lambda: dict(list(pod.items()))["k"],
        "dict(pod)": lambda: dict(pod)["k"],
    }
    if how in ways:
        return ways[how]()
    value: dict[str, Any] = {"n": 0}
    pod["k"] = value
    return value


@pytest.mark.parametrize("how", HAND_OUTS)
def test_value_handed_out_and_changed_after_syncs_is_on_disk_after_close(
    tmp_path: Path, how: str
) -> None:
    pod = POD(tmp_path / "store", sync_at=2)
    pod["k"] = {"n": 0}
    pod.sync()
    value = hand_out(pod, how)
    value["n"] = 1
    for i in range(10):  # auto-syncs (sync_at=2) and an explicit one
        pod[f"other{i}"] = i
    pod.sync()
    value["n"] = 2
    value["later"] = [1]
    pod.mark_dirty("k")  # an explicit sync writes a kept value's change once told
    pod.sync()
    assert_on_disk(
        pod.path,
        {"k": {"n": 2, "later": [1]}, **{f"other{i}": i for i in range(10)}},
        f"after mark_dirty() and sync() (value from {how})",
    )
    value["later"].append(2)
    pod.close()
    assert dict(load_from_disk(tmp_path / "store"))["k"] == {"n": 2, "later": [1, 2]}, (
        f"a value from {how}, changed after syncs, is not on disk after close()"
    )


def test_read_only_pass_and_close_change_no_file(tmp_path: Path) -> None:
    path = tmp_path / "store"
    pod = POD(path, sync_at=3)
    for i in range(20):
        pod[f"k{i}"] = {"i": i, "list": [i]}
    pod.close()
    pod = POD(path, sync_at=3)
    before = store_files(path)
    for key in list(pod):
        pod[key]
        pod.get(key)
    list(pod.values())
    list(pod.items())
    dict(pod)
    pod.sync()
    pod.close()
    after = store_files(path)
    changed = sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
    assert not changed, f"reading only, then close(), changed: {changed}"


def test_sigterm_with_a_handler_that_returns_keeps_reads_tracked(tmp_path: Path) -> None:
    """``rec = pod["a"]; <SIGTERM>; rec["x"] = 1; pod.close()`` keeps ``x``."""
    seen: list[int] = []
    with sigterm_restored():
        signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
        pod = POD(tmp_path / "store", sync_at=1000)
        try:
            pod["a"] = {}
            pod.sync()
            rec = pod["a"]
            rec["before"] = 0
            pod["b"] = [1]
            send_sigterm_to_self(seen)
            assert_on_disk(pod.path, {"a": {"before": 0}, "b": [1]}, "right after SIGTERM")
            rec["x"] = 1
        finally:
            pod.close()
    assert_on_disk(tmp_path / "store", {"a": {"before": 0, "x": 1}, "b": [1]}, "after close()")


def test_sigterm_with_a_handler_that_returns_in_a_program(tmp_path: Path) -> None:
    """The same in a real program: it carries on after the signal and exits normally."""
    code = """
        import os, signal, sys
        import tastypy
        stop = []
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
        pod = tastypy.POD(sys.argv[1], sync_at=1000)
        pod["a"] = {}
        pod.sync()
        rec = pod["a"]
        rec["before"] = 0
        os.kill(os.getpid(), signal.SIGTERM)
        while not stop:
            pass
        with tastypy.POD(sys.argv[1], readonly=True) as reader:
            print(dict(reader.items()))
        rec["x"] = 1
        pod.close()
        print("carried on")
    """
    proc = run(code, str(tmp_path / "store"))
    assert proc.returncode == 0, proc.stderr
    at_signal, carried_on = proc.stdout.splitlines()
    assert carried_on == "carried on"
    assert at_signal == "{'a': {'before': 0}}", f"on disk at the signal: {at_signal}"
    assert_on_disk(tmp_path / "store", {"a": {"before": 0, "x": 1}}, "after the program")


def test_four_threads_without_a_lock(tmp_path: Path) -> None:
    """4 threads x 2,000 distinct keys, sync_at=50, no lock: every key is on disk."""
    path = tmp_path / "store"
    pod = POD(path, sync_at=50)
    errors: list[str] = []
    start = threading.Barrier(4)

    def work(thread: int) -> None:
        try:
            start.wait()
            for j in range(2000):
                key = f"t{thread}-{j}"
                pod[key] = {"thread": thread, "j": j}
                pod[key]["seen"] = [j]
        except BaseException as exc:  # reported in the main thread
            errors.append(f"thread {thread}: {exc!r}")

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: inside syncs too
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
    finally:
        sys.setswitchinterval(switch)
    assert not any(worker.is_alive() for worker in workers), "a thread hangs"
    try:
        assert not errors, f"threads raised: {errors}"
    finally:
        pod.close()
    on_disk = dict(load_from_disk(path))
    expected = {
        f"t{i}-{j}": {"thread": i, "j": j, "seen": [j]} for i in range(4) for j in range(2000)
    }
    missing = [key for key in expected if key not in on_disk]
    wrong = [key for key in expected if key in on_disk and on_disk[key] != expected[key]]
    assert not missing and not wrong and len(on_disk) == len(expected), (
        f"{len(missing)} keys missing (e.g. {missing[:3]}), {len(wrong)} wrong "
        f"(e.g. {[(k, on_disk[k]) for k in wrong[:3]]}), {len(on_disk)} on disk"
    )
    report = verify(path)
    assert report.ok, str(report)


def test_nan_smuggled_in_costs_no_good_key(tmp_path: Path) -> None:
    path = tmp_path / "store"
    pod = POD(path, sync_at=3)
    try:
        for key in "abcdef":
            pod[key] = {"v": 0}
        pod.sync()
        pod["g"] = {"v": 7}  # pending, like the change to "a" below
        pod["c"]["x"] = math.nan
        pod["a"]["v"] = 1
        for key in "abdef":  # reads of other keys auto-sync (sync_at=3) and never raise
            try:
                pod[key]
            except TypeError as exc:
                raise AssertionError(
                    f"reading {key!r} raised {exc!r}; only 'c' holds NaN"
                ) from exc
        with pytest.raises(TypeError, match="'c'"):
            pod.sync()
        on_disk = dict(load_from_disk(path))
        assert on_disk.get("c") == {"v": 0}, f"'c' on disk: {on_disk.get('c')!r}"
        assert on_disk.get("a") == {"v": 1}, f"'a' on disk: {on_disk.get('a')!r}"
        assert on_disk.get("g") == {"v": 7}, f"'g' on disk: {on_disk.get('g')!r}"
        assert verify(path).ok
        pod["c"]["x"] = 0
        pod.sync()
        assert dict(load_from_disk(path))["c"] == {"v": 0, "x": 0}
    finally:
        if math.isnan(pod["c"].get("x", 0)):
            pod["c"]["x"] = 0
        pod.close()


def test_nan_smuggled_in_a_program_that_exits_normally(tmp_path: Path) -> None:
    """Every good key is on disk; stderr has one line naming the store, the key and NaN."""
    path = tmp_path / "store"
    code = """
        import sys
        import tastypy
        pod = tastypy.POD(sys.argv[1], sync_at=1000)
        for key in ["a", "bad", "c"]:
            pod[key] = {"v": 0}
        pod.sync()
        pod["a"]["v"] = 1
        pod["bad"]["x"] = float("nan")
        pod["c"]["v"] = 3
        pod["new"] = [4]
    """
    proc = run(code, str(path))
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr}"
    expected = [("a", {"v": 1}), ("bad", {"v": 0}), ("c", {"v": 3}), ("new", [4])]
    assert_items(
        load_from_disk(path), expected, f"the disk after the program (stderr: {proc.stderr!r})"
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    (line,) = lines
    for part in (str(path), repr("bad"), "NaN"):
        assert part in line, f"{part!r} is not in the stderr line {line!r}"
