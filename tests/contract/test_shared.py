"""Shared opens (capability "shared"): several writers of one store at once.

Engine level, then through the POD. Each engine that declares "shared" runs
these (docs/SHARED.md); the others skip them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any, cast

import orjson
import pytest

import tastypy
from tastypy.errors import LockedError
from tastypy.storage import Shared, Storage

from _engines import Engine


def shared(engine: Engine) -> Shared:
    storage = engine.open_shared()
    assert "shared" in storage.capabilities
    storage.load()
    return cast(Shared, storage)


def stored(engine: Engine) -> list[tuple[str, Any]]:
    reader = engine.open(readonly=True)
    try:
        return list(reader.load().items())
    finally:
        reader.close()


def j(value: Any) -> bytes:
    return orjson.dumps(value)


# -- the engine ---------------------------------------------------------------------


def test_each_writer_commits_on_top_of_the_others(engine: Engine) -> None:
    a, b = shared(engine), shared(engine)
    assert not a.sync([("x", j(1))])
    merged = b.sync([("y", j(2))])
    assert merged.appended == [("x", j(1)), ("y", None)]
    assert stored(engine) == [("x", 1), ("y", 2)]
    merged = a.sync([])
    assert merged.appended == [("y", j(2))]


def test_per_key_the_last_writer_wins(engine: Engine) -> None:
    a, b = shared(engine), shared(engine)
    a.sync([("k", j("a")), ("other", j(0))])
    b.sync([])
    b.sync([("k", j("b"))])
    merged = a.sync([("k", j("a2"))])  # a commits last: its value stands
    assert merged.updated == [] and merged.appended == []
    assert stored(engine) == [("k", "a2"), ("other", 0)]


def test_a_key_the_writer_did_not_change_is_never_written_back(engine: Engine) -> None:
    a, b = shared(engine), shared(engine)
    a.sync([("k", j(1)), ("gone", j(0))])
    b.sync([])
    b.sync([("k", j(2)), ("gone", None)])
    # a still holds k=1 and gone=0, as it last saw them, and sends them:
    # they are not changes of a's, so b's stand.
    merged = a.sync([("k", j(1)), ("gone", j(0))])
    assert merged.updated == [("k", j(2))]
    assert merged.deleted == ["gone"]
    assert stored(engine) == [("k", 2)]


def test_a_raising_batch_commits_nothing_and_merges_nothing(engine: Engine) -> None:
    a, b = shared(engine), shared(engine)
    a.sync([("x", j(1))])

    def batch() -> Iterator[tuple[str, bytes | None]]:
        yield "y", j(2)
        raise RuntimeError("midway")

    with pytest.raises(RuntimeError, match="midway"):
        b.sync(batch())
    assert stored(engine) == [("x", 1)]
    assert b.sync([]).appended == [("x", j(1))], "b still has x to merge"


def test_plain_and_shared_writers_exclude_each_other(engine: Engine) -> None:
    if not engine.exclusive:
        pytest.skip(f"every writable open of the {engine.name} engine is shared")
    a = shared(engine)
    with pytest.raises(LockedError):
        engine.open()
    cast(Storage, a).close()
    plain = engine.open()
    with pytest.raises(LockedError):
        engine.open_shared()
    plain.close()
    shared(engine)


def test_an_engine_whose_opens_are_all_shared_says_so(engine: Engine) -> None:
    if engine.exclusive:
        pytest.skip(f"the {engine.name} engine has plain writers")
    a, b = engine.open(), engine.open()
    assert "shared" in a.capabilities and "shared" in b.capabilities
    a.load()
    b.load()
    a.commit([("x", j(1))])
    b.commit([("y", j(2))])
    assert cast(Shared, a).sync([]).appended == [("y", j(2))]
    assert engine.open(readonly=True).load() == {"x": 1, "y": 2}


# -- through the POD ------------------------------------------------------------------


@pytest.fixture
def pods() -> Iterator[list[tastypy.POD]]:
    """PODs a test opens, closed after it (before their engines are)."""
    opened: list[tastypy.POD] = []
    yield opened
    for each in opened:
        each.close()


@pytest.fixture
def pod(engine: Engine, pods: list[tastypy.POD]) -> Callable[[], tastypy.POD]:
    def open_one() -> tastypy.POD:
        opened = tastypy.POD(storage=engine.open_shared())
        pods.append(opened)
        return opened

    return open_one


def test_pods_see_each_others_syncs_at_their_next_sync_or_refresh(
    engine: Engine, pod: Callable[[], tastypy.POD]
) -> None:
    a, b = pod(), pod()
    assert a.shared and b.shared
    a["x"] = 1
    a.sync()
    if "on_demand" not in b.storage.capabilities:  # else b reads the store when asked
        assert "x" not in b
    b.refresh()
    assert b["x"] == 1
    b["y"] = 2
    b.sync()
    a["z"] = 3
    a.sync()
    assert list(a.items()) == [*list(b.items())[:1], ("y", 2), ("z", 3)]
    b.refresh()
    assert list(a.items()) == list(b.items()) == stored(engine)


def test_a_value_only_read_does_not_revert_the_others_change(
    engine: Engine, pod: Callable[[], tastypy.POD]
) -> None:
    a, b = pod(), pod()
    a["task"] = {"done": False}
    a.sync()
    b.refresh()
    b["task"]["done"] = True
    b.sync()
    assert a["task"] == {"done": False}  # read: dirty here, but unchanged
    a["mine"] = 1
    a.sync()
    assert a["task"] == {"done": True}
    assert dict(stored(engine)) == {"task": {"done": True}, "mine": 1}


def test_a_change_still_pending_keeps_this_writers_value(
    engine: Engine, pod: Callable[[], tastypy.POD]
) -> None:
    a, b = pod(), pod()
    a.update({"k": 0, "j": 0})
    a.sync()
    b.refresh()
    b.update({"k": "b", "j": "b"})
    b.sync()
    a["k"] = "a"  # pending
    a.sync_key("j")  # syncs j only, and brings b's changes
    assert a["k"] == "a" and a["j"] == "b"
    a.sync()
    assert dict(stored(engine)) == {"k": "a", "j": "b"}


def test_a_sync_never_deletes_a_key_this_writer_did_not_change(
    engine: Engine, pod: Callable[[], tastypy.POD]
) -> None:
    a, b = pod(), pod()
    a["old"] = 1
    a.sync()
    b.refresh()
    del b["old"]
    b["new"] = 1
    b.sync()
    a["old"] = 2  # a's own change, after b's delete: a commits last and wins
    a.sync()
    assert dict(stored(engine)) == {"new": 1, "old": 2}
    b.refresh()
    assert list(a.items()) == list(b.items()) == stored(engine)


@pytest.mark.parametrize("seed", range(40))
def test_random_interleavings_leave_every_writer_as_the_store_with_the_last_writes(
    engine: Engine, pod: Callable[[], tastypy.POD], seed: int
) -> None:
    rng = random.Random(seed)
    pods = [pod() for _ in range(3)]
    keys = [f"k{i}" for i in range(6)]
    model: dict[str, Any] = {}  # key -> value as of the last sync that changed it
    # What each POD changed since its last sync, and what it last saw.
    changed: list[dict[str, Any]] = [{} for _ in pods]
    # The keys each POD saw in the store at its last sync: deleting one of
    # them is a change; deleting a key it added itself since is not. A POD
    # served on demand sees the store as it is when it reads it, so every
    # key it deletes is one it saw: always a change.
    seen: list[set[str]] = [set() for _ in pods]
    on_demand = "on_demand" in pods[0].storage.capabilities

    def commit(which: int) -> None:
        for key, value in changed[which].items():
            if value is not None:
                model[key] = value
            elif key in seen[which] or on_demand:
                model.pop(key, None)
        changed[which].clear()
        seen[which] = set(model)

    serial = 0
    for _ in range(80):
        which = rng.randrange(len(pods))
        p, mine = pods[which], changed[which]
        roll = rng.random()
        if roll < 0.45:
            serial += 1
            key = rng.choice(keys)
            p[key] = serial
            mine[key] = serial
        elif roll < 0.6:
            present = list(p)
            if present:
                key = rng.choice(present)
                del p[key]
                mine[key] = None
        elif roll < 0.75 and len(p):
            _ = p[rng.choice(list(p))]  # a read: never a change
        elif roll < 0.82:
            p.compact()  # a sync, then a fold of every writer's commits
            commit(which)
        else:
            p.sync()
            commit(which)
    for which, p in enumerate(pods):
        p.sync()
        commit(which)
    for p in pods:
        p.refresh()
    final = stored(engine)
    assert dict(final) == model
    for p in pods:
        assert list(p.items()) == final


def test_a_key_only_read_is_not_written_back_after_a_partial_sync(
    engine: Engine, pod: Callable[[], tastypy.POD]
) -> None:
    a, b = pod(), pod()
    a.update({"k": "old", "other": 0})
    a.sync()
    b.refresh()
    assert a["k"] == "old"  # read: marked, not changed
    b["k"] = "new"
    b.sync()
    a["other"] = 1
    a.sync_key("other")  # brings b's k, while a's read mark on k is still pending
    assert a["k"] == "new"
    a.sync()
    assert dict(stored(engine)) == {"k": "new", "other": 1}


def test_a_value_changed_in_place_and_pending_keeps_this_writers_change(
    engine: Engine, pod: Callable[[], tastypy.POD]
) -> None:
    a, b = pod(), pod()
    a.update({"k": {"n": 0}, "other": 0})
    a.sync()
    b.refresh()
    a["k"]["n"] = 1  # changed in place here, not yet synced
    b["k"] = {"n": 2}
    b.sync()
    a["other"] = 1
    a.sync_key("other")
    assert a["k"] == {"n": 1}, "a pending change here keeps this process's value"
    a.sync()
    assert dict(stored(engine)) == {"k": {"n": 1}, "other": 1}


def test_a_locked_block_commits_its_changes_whole_at_its_end(
    engine: Engine, pod: Callable[[], tastypy.POD]
) -> None:
    a, b = pod(), pod()
    a["n"] = 0
    a.sync()
    with b.locked():
        assert b["n"] == 0  # sees what was committed when the block began
        b["n"] += 1
        b["m"] = "in the block"
        assert stored(engine) == [("n", 0)], "nothing commits before the block ends"
    assert dict(stored(engine)) == {"n": 1, "m": "in the block"}
    with a.locked():
        a["n"] += 1
    assert a["n"] == 2 and dict(stored(engine))["n"] == 2


def test_an_exception_in_a_locked_block_commits_nothing_and_undoes_the_block(
    engine: Engine, pod: Callable[[], tastypy.POD]
) -> None:
    a = pod()
    a.update({"n": 0, "keep": 1})
    a["pending"] = "before the block"  # not yet synced: the block syncs it first
    with pytest.raises(ZeroDivisionError), a.locked():
        a["n"] = 10
        del a["keep"]
        a["new"] = 1
        _ = 1 / 0
    assert dict(a) == {"n": 0, "keep": 1, "pending": "before the block"}
    assert dict(stored(engine)) == dict(a)
    with pytest.raises(RuntimeError, match="nest"), a.locked(), a.locked():
        pass
