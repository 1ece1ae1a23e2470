"""Model-based test of the POD: random sequences of operations against a dict model.

The model keeps what the POD must show in memory (a plain ordered ``dict``,
changed exactly as the operations say) and what may be on disk: the state as
of the last sync, which ``revert()`` returns to and which a separate
read-only open of the same path must load.

When a sync happens is partly up to the POD: it syncs by itself once
``sync_at`` keys are dirty, and any access to a key through the mapping, read
or write, marks it dirty. Rather than pin down exactly when, the model keeps
every *world* the POD may be in: a state on disk and the keys dirty since
that sync (in order, flagged if added or deleted: ``sync_key`` writes those
before the key it is given, to keep the order). Wherever an automatic sync is
allowed (not while held, and only once ``sync_at`` keys are dirty), the model
adds a world in which it happened then, with the memory as it was at that
moment. After every step the state actually on disk must be one of the
worlds' states, and the worlds that disagree are dropped. Explicit syncs,
``close()``, ``unhold()``, ``copy()`` and ``revert()`` leave a single world.

After every step the POD's keys and items (contents *and* order, compared
type for type) must equal the model's memory, and ``tastypy.verify()`` must
find the store whole. Runs draw ``sync_at``, ``file_size``, ``gzipped``,
``durable`` and a compaction threshold, small ones included, so that auto-syncs
and compactions fall between (and inside) the steps.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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

import tastypy.storage.files._engine
from tastypy import POD, StoreClosedError, verify

from _folds import fold_later
from _helpers import on_disk as load_from_disk
from strategies import colliding_keys, json_text, json_values, normalize_json_key

SYNC_ATS = st.sampled_from([1, 2, 3, 1000])
FILE_SIZES = st.sampled_from([1, 2, 3, 1000])
# The store folds its journal into the data files ("compacts") once the journal
# outgrows them and holds at least this many bytes; small thresholds make
# compactions happen between the machine's steps, not only at close().
DEFAULT_COMPACT_MIN_BYTES = tastypy.storage.files._engine.COMPACT_MIN_BYTES
COMPACT_MIN_BYTES = st.sampled_from([0, 300, DEFAULT_COMPACT_MIN_BYTES])
FOLLOW_UPS = st.sampled_from([None, "sync", "close_and_reopen"])
MISSING = object()


def typed(value: Any) -> str:
    """A rendering that tells ``True`` from ``1`` from ``1.0`` and keeps dict order."""
    return repr(value)


def same(actual: Any, expected: Any) -> bool:
    return bool(actual == expected) and typed(actual) == typed(expected)


def assert_same(actual: Any, expected: Any) -> None:
    assert actual == expected
    assert typed(actual) == typed(expected)


@dataclass
class World:
    """One state the POD may be in, as far as the disk is concerned."""

    disk: dict[str, Any]
    # The keys accessed since this world's last sync, in the order they were
    # first accessed; True for a key added or deleted since (it must go to
    # the end of the store again), False for one only read or changed in
    # place. Adding or deleting a key moves it to the end; clear() flags
    # every key True where it stands. sync_key(k) of an added or deleted key
    # also writes the True keys before it.
    dirty: dict[str, bool] = field(default_factory=dict)

    def identity(self) -> tuple[str, tuple[tuple[str, bool], ...]]:
        return typed(self.disk), tuple(self.dirty.items())


class Model:
    """What a POD must hold in memory, and every state it may have on disk."""

    def __init__(self, sync_at: int) -> None:
        self.memory: dict[str, Any] = {}
        self.worlds: list[World] = [World({})]
        self.held = False
        self.sync_at = sync_at

    # -- operations through the mapping --------------------------------------------

    def _may_sync(self, after_read_of: str | None = None) -> None:
        """An automatic sync may happen now (memory as it is now), if allowed.

        It is allowed once ``sync_at`` keys are dirty, and never while held.
        """
        if self.held or not any(len(w.dirty) >= self.sync_at for w in self.worlds):
            return
        # After a read, the POD may count the key just read as dirty again
        # (its value may still be changed in place) or not; it makes no
        # difference on disk, and counting it keeps the model lenient.
        dirty = {} if after_read_of is None else {after_read_of: False}
        self.worlds.append(World(copy.deepcopy(self.memory), dirty))
        self._dedupe()

    def read(self, key: str) -> None:
        """A read through the mapping, or ``mark_dirty``: the key is now dirty."""
        assert key in self.memory
        newly = False
        for world in self.worlds:
            if key not in world.dirty:
                world.dirty[key] = False
                newly = True
        if newly:  # only a key that was not dirty yet can reach sync_at
            self._may_sync(after_read_of=key)

    mark_dirty = read

    def _moved_to_end(self, key: str) -> None:
        for world in self.worlds:
            world.dirty.pop(key, None)
            world.dirty[key] = True

    def set(self, key: str, value: Any) -> None:
        if key in self.memory:
            for world in self.worlds:
                world.dirty.setdefault(key, False)
        else:
            self._moved_to_end(key)
        self.memory[key] = copy.deepcopy(value)
        self._may_sync()

    def delete(self, key: str) -> None:
        del self.memory[key]
        self._moved_to_end(key)
        self._may_sync()

    def clear(self) -> None:
        for world in self.worlds:
            world.dirty.update(dict.fromkeys(self.memory, True))
        self.memory.clear()
        self._may_sync()

    # -- synchronization ----------------------------------------------------------------

    def sync(self) -> None:
        self.worlds = [World(copy.deepcopy(self.memory))]

    def sync_key(self, key: str, raised_key_error: bool) -> bool:
        """Apply ``sync_key(key)`` to every world that agrees with what the POD did.

        ``sync_key`` raises ``KeyError`` for a key neither present nor deleted
        since the last sync. Returns False if no world agrees.
        """
        agreeing = []
        for world in self.worlds:
            raises = key not in self.memory and key not in world.dirty
            if raises != raised_key_error:
                continue
            if not raises:
                self._sync_key_in(world, key)
            agreeing.append(world)
        self.worlds = agreeing
        self._dedupe()
        return bool(agreeing)

    def _sync_key_in(self, world: World, key: str) -> None:
        """Write *key*; if it was added or deleted, also the keys added/deleted before it."""
        if world.dirty.get(key):
            keys = []
            for other, moved in world.dirty.items():
                if moved:
                    keys.append(other)
                if other == key:
                    break
        else:
            keys = [key]
        for other in keys:
            if world.dirty.get(other):
                world.disk.pop(other, None)  # a deleted or re-added key goes (last)
            if other in self.memory:
                world.disk[other] = copy.deepcopy(self.memory[other])
            world.dirty.pop(other, None)

    def revert_to(self, on_disk: list[tuple[str, Any]]) -> None:
        self.memory = copy.deepcopy(dict(on_disk))
        self.worlds = [World(copy.deepcopy(self.memory))]

    # -- observations -------------------------------------------------------------------

    def observe_disk(self, on_disk: list[tuple[str, Any]]) -> bool:
        """Keep the worlds whose disk is *on_disk*; False if there are none."""
        self.worlds = [w for w in self.worlds if same(list(w.disk.items()), on_disk)]
        return bool(self.worlds)

    def disk_states(self) -> list[list[tuple[str, Any]]]:
        return [list(w.disk.items()) for w in self.worlds]

    def _dedupe(self) -> None:
        unique: dict[Any, World] = {}
        for world in self.worlds:
            unique.setdefault(world.identity(), world)
        self.worlds = list(unique.values())


class PODMachine(RuleBasedStateMachine):
    """A POD in a fresh temporary directory, driven alongside a :class:`Model`."""

    # Reading every value after every step marks every key dirty, which keeps
    # most keys dirty all the time; a variant checks only keys (and the disk)
    # after each step, and values when the read_all_values rule runs.
    read_values_after_every_step: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="tastypy-stateful-"))
        self.path = self.tmp / "store"
        self.pod: POD | None = None
        self.model = Model(sync_at=1000)
        self.patches = pytest.MonkeyPatch()
        self.durable = True
        self.copies = 0
        # Objects the POD holds as values, by key, that the test may still
        # mutate from outside (then it must call mark_dirty).
        self.refs: dict[str, Any] = {}

    @property
    def store(self) -> POD:
        assert self.pod is not None
        return self.pod

    # -- setup and teardown -----------------------------------------------------

    @initialize(
        sync_at=SYNC_ATS,
        file_size=FILE_SIZES,
        gzipped=st.booleans(),
        durable=st.booleans(),
        compact_min_bytes=COMPACT_MIN_BYTES,
    )
    def open_store(
        self, sync_at: int, file_size: int, gzipped: bool, durable: bool, compact_min_bytes: int
    ) -> None:
        tastypy.storage.files._engine.COMPACT_MIN_BYTES = compact_min_bytes  # restored by teardown
        # Folds "in the background" run at the writer's next commit: the same
        # steps then give the same store (Hypothesis replays them), with the
        # commits in between copied into the new journal.
        fold_later(self.patches)
        self.durable = durable
        self.pod = POD(
            self.path, gzipped=gzipped, file_size=file_size, sync_at=sync_at, durable=durable
        )
        self.model = Model(sync_at=sync_at)
        assert self.store.sync_at == sync_at
        assert self.store.file_size == file_size
        assert self.store.gzipped is gzipped

    def teardown(self) -> None:
        try:
            if self.pod is not None:
                self.pod.close()
        finally:
            tastypy.storage.files._engine.COMPACT_MIN_BYTES = DEFAULT_COMPACT_MIN_BYTES
            self.patches.undo()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the engine (overridden by the memory engine's machine) ----------------------

    def committed(self, where: Any = None) -> list[tuple[str, Any]]:
        """What the store at *where* (default: the current one) holds as of its last commit."""
        return load_from_disk(self.path if where is None else where)

    def check_whole(self, records: int) -> None:
        """The engine's own check of the store after a step."""
        report = verify(self.path)
        assert report.ok, str(report)
        assert not report.notes, str(report)  # no torn commit, no leftovers: nothing crashed
        assert report.records == records

    def _holds(self, key: str, value: Any) -> None:
        """Remember *value* as the object the POD now holds for *key*."""
        if isinstance(value, (list, dict)):
            self.refs[key] = value
        else:
            self.refs.pop(key, None)

    # -- the mapping --------------------------------------------------------------

    @rule(key=colliding_keys(), value=json_values())
    def set_item(self, key: Any, value: Any) -> None:
        name = normalize_json_key(key)
        self.store[key] = value
        self.model.set(name, value)
        self._holds(name, value)

    @rule(key=colliding_keys())
    def get_item(self, key: Any) -> None:
        name = normalize_json_key(key)
        if name in self.model.memory:
            value = self.store[key]
            self.model.read(name)
            assert_same(value, self.model.memory[name])
        else:
            with pytest.raises(KeyError):
                self.store[key]

    @rule(key=colliding_keys(), default=json_values())
    def get_with_default(self, key: Any, default: Any) -> None:
        name = normalize_json_key(key)
        value = self.store.get(key, default)
        if name in self.model.memory:
            self.model.read(name)
            assert_same(value, self.model.memory[name])
        else:
            assert value is default

    @rule(key=colliding_keys())
    def contains(self, key: Any) -> None:
        assert (key in self.store) is (normalize_json_key(key) in self.model.memory)

    @rule(key=colliding_keys())
    def delete_item(self, key: Any) -> None:
        name = normalize_json_key(key)
        if name in self.model.memory:
            del self.store[key]
            self.model.delete(name)
            self.refs.pop(name, None)
        else:
            with pytest.raises(KeyError):
                del self.store[key]

    @rule(key=colliding_keys(), default=st.just(MISSING) | json_values())
    def pop(self, key: Any, default: Any) -> None:
        name = normalize_json_key(key)
        if name in self.model.memory:
            # MutableMapping.pop reads the key (marking it dirty), then deletes it.
            value = self.store.pop(key) if default is MISSING else self.store.pop(key, default)
            expected = self.model.memory[name]
            self.model.read(name)
            self.model.delete(name)
            self.refs.pop(name, None)
            assert_same(value, expected)
        elif default is MISSING:
            with pytest.raises(KeyError):
                self.store.pop(key)
        else:
            assert self.store.pop(key, default) is default

    @rule()
    def popitem(self) -> None:
        if self.model.memory:
            expected = next(reversed(self.model.memory.items()))
            item = self.store.popitem()
            self.model.delete(expected[0])
            self.refs.pop(expected[0], None)
            assert_same(item, expected)
        else:
            with pytest.raises(KeyError):
                self.store.popitem()

    @rule(key=colliding_keys(), default=json_values())
    def setdefault(self, key: Any, default: Any) -> None:
        name = normalize_json_key(key)
        if name in self.model.memory:
            value = self.store.setdefault(key, default)
            self.model.read(name)
            assert_same(value, self.model.memory[name])
        else:
            assert self.store.setdefault(key, default) is default
            self.model.set(name, default)
            self._holds(name, default)

    @rule(
        pairs=st.lists(st.tuples(colliding_keys(), json_values(max_leaves=3)), max_size=4),
        kwargs=st.dictionaries(json_text(max_size=3), json_values(max_leaves=3), max_size=2),
    )
    def update(self, pairs: list[tuple[Any, Any]], kwargs: dict[str, Any]) -> None:
        self.store.update(pairs, **kwargs)
        for key, value in [*pairs, *kwargs.items()]:
            name = normalize_json_key(key)
            self.model.set(name, value)
            self._holds(name, value)

    @rule()
    def clear(self) -> None:
        self.store.clear()
        self.model.clear()
        self.refs.clear()
        assert len(self.store) == 0

    @rule()
    def read_all_values(self) -> None:
        self._check_items()

    # -- changing values in place ---------------------------------------------------------

    def _keys_holding(self, kind: type) -> list[str]:
        return [k for k, v in self.model.memory.items() if isinstance(v, kind)]

    def _follow_up(self, then: str | None) -> None:
        """What a program does next after changing a value in place: maybe sync or exit.

        Done within the same step, before anything else reads the key again.
        """
        if then == "sync":
            self.sync()
        elif then == "close_and_reopen":
            self.close_and_reopen(sync_at=None)

    @precondition(lambda self: self._keys_holding(list))
    @rule(data=st.data(), item=json_values(max_leaves=3), then=FOLLOW_UPS)
    def append_through_pod(self, data: st.DataObject, item: Any, then: str | None) -> None:
        key = data.draw(st.sampled_from(self._keys_holding(list)), label="key")
        self.store[key].append(item)
        self.model.read(key)
        self.model.memory[key].append(copy.deepcopy(item))
        self._follow_up(then)

    @precondition(lambda self: self._keys_holding(dict))
    @rule(
        data=st.data(),
        subkey=json_text(max_size=3),
        item=json_values(max_leaves=3),
        then=FOLLOW_UPS,
    )
    def set_nested_through_pod(
        self, data: st.DataObject, subkey: str, item: Any, then: str | None
    ) -> None:
        key = data.draw(st.sampled_from(self._keys_holding(dict)), label="key")
        self.store[key][subkey] = item
        self.model.read(key)
        self.model.memory[key][subkey] = copy.deepcopy(item)
        self._follow_up(then)

    @precondition(lambda self: self.refs)
    @rule(data=st.data(), item=json_values(max_leaves=3), then=FOLLOW_UPS)
    def mutate_outside_then_mark_dirty(
        self, data: st.DataObject, item: Any, then: str | None
    ) -> None:
        key = data.draw(st.sampled_from(sorted(self.refs)), label="key")
        value = self.refs[key]
        if isinstance(value, list):
            value.append(item)
            self.model.memory[key].append(copy.deepcopy(item))
        else:
            value["outside"] = item
            self.model.memory[key]["outside"] = copy.deepcopy(item)
        self.store.mark_dirty(key)
        self.model.mark_dirty(key)
        self._follow_up(then)

    @rule(key=colliding_keys())
    def mark_dirty(self, key: Any) -> None:
        name = normalize_json_key(key)
        if name in self.model.memory:
            self.store.mark_dirty(key)
            self.model.mark_dirty(name)
        else:
            with pytest.raises(KeyError):
                self.store.mark_dirty(key)

    # -- synchronization --------------------------------------------------------------

    @rule()
    def sync(self) -> None:
        self.store.sync()
        self.model.sync()

    @rule(key=colliding_keys(), via_update=st.booleans())
    def sync_key(self, key: Any, via_update: bool) -> None:
        name = normalize_json_key(key)
        # pod.update(k) with a lone str is the seed API's sync_key(k).
        via_update = via_update and isinstance(key, str)
        call = self.store.update if via_update else self.store.sync_key
        try:
            call(key)
        except KeyError:
            raised = True
        else:
            raised = False
        assert self.model.sync_key(name, raised), (
            f"sync_key({name!r}) {'raised' if raised else 'did not raise'} KeyError; "
            f"present: {name in self.model.memory}"
        )

    @rule()
    def hold(self) -> None:
        self.store.hold()
        self.model.held = True

    @rule()
    def unhold(self) -> None:
        self.store.unhold()
        self.model.held = False
        self.model.sync()

    @rule()
    def revert(self) -> None:
        on_disk = self.committed()
        self.store.revert()
        self.model.revert_to(on_disk)  # checked against the POD after this step
        self.refs.clear()

    @rule(sync_at=st.none() | SYNC_ATS)
    def close_and_reopen(self, sync_at: int | None) -> None:
        old = self.store
        again = POD(self.path)
        assert again is old  # the same path in one process: the same object
        again.close()  # each open has its own close: the first one still uses it
        assert not old.closed
        old.close()
        assert old.closed
        with pytest.raises(StoreClosedError):
            old["a"] = 1
        self.model.sync()  # close() syncs first
        self.pod = POD(self.path, sync_at=sync_at, durable=self.durable)
        assert self.pod is not old
        self.model.held = False
        if sync_at is not None:
            self.model.sync_at = sync_at
        assert self.store.sync_at == self.model.sync_at  # stored with the data
        self.refs.clear()

    @rule(file_size=st.none() | FILE_SIZES, gzipped=st.none() | st.booleans())
    def copy_elsewhere(self, file_size: int | None, gzipped: bool | None) -> None:
        old_path, old_states = self.path, self.model.disk_states()
        old_file_size, old_gzipped = self.store.file_size, self.store.gzipped
        self.copies += 1
        self.path = self.tmp / f"copy{self.copies}"
        self.store.copy(self.path, file_size=file_size, gzipped=gzipped)
        self.model.sync()  # everything is written to the new place, hold or not
        assert self.store.path == self.path
        assert self.store.file_size == (old_file_size if file_size is None else file_size)
        assert self.store.gzipped is (old_gzipped if gzipped is None else gzipped)
        left = self.committed(old_path)  # left as of its last sync
        assert any(same(left, state) for state in old_states), (left, old_states)

    # -- checks after every step ----------------------------------------------------------

    def _check_items(self) -> None:
        items = list(self.store.items())
        for key in self.model.memory:  # items() reads, so marks dirty, every key in turn
            self.model.read(key)
        assert_same(items, list(self.model.memory.items()))

    @invariant()
    def agrees_with_model(self) -> None:
        if self.pod is None:
            return
        pod, model = self.store, self.model
        on_disk = self.committed()
        self.check_whole(len(on_disk))
        candidates = model.disk_states()
        assert model.observe_disk(on_disk), (
            f"on disk: {on_disk!r}; the POD may only have one of: {candidates!r}"
        )
        assert list(pod) == list(model.memory)  # iterating keys reads no value
        assert len(pod) == len(model.memory)
        if self.read_values_after_every_step:
            self._check_items()
        assert pod.held is model.held
        if not model.held:  # "sync once sync_at keys are dirty"
            assert len(pod._dirty) <= model.sync_at
        if len(pod._dirty) == 0:  # nothing unsynced: the disk must hold what memory does
            assert_same(self.committed(), list(model.memory.items()))
            model.sync()


class QuietPODMachine(PODMachine):
    """The same machine, reading values only in the read_all_values rule."""

    read_values_after_every_step = False


BOUNDED = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # "explain" reruns a failing example many times to comment on it; it can
    # take longer than all the rest, and the shrunk steps say enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
PODMachine.TestCase.settings = BOUNDED
QuietPODMachine.TestCase.settings = BOUNDED
TestPODStateful = PODMachine.TestCase
TestPODStatefulReadingValuesOnlySometimes = QuietPODMachine.TestCase


# -- regressions found by the machine, as plain examples ------------------------------------


@pytest.mark.parametrize("sync_at", [1, 2])
def test_mutation_through_the_read_that_triggers_an_auto_sync_is_synced(
    tmp_path: Path, sync_at: int
) -> None:
    """``pod[k].append(x)`` must reach the disk even if reading ``pod[k]`` auto-synced."""
    pod = POD(tmp_path / "store", sync_at=sync_at)
    pod["other"] = 0  # with sync_at=2, the read of "log" below is the second dirty key
    pod.sync()
    pod["log"] = []
    pod.sync()
    if sync_at == 2:
        pod.mark_dirty("other")
    pod["log"].append("entry")
    pod.close()
    reopened = POD(tmp_path / "store")
    try:
        assert reopened["log"] == ["entry"]
    finally:
        reopened.close()
