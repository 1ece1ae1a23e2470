"""Commit semantics every engine keeps, including batches the POD never sends today."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tastypy.errors import LockedError, ReadOnlyError
from tastypy.storage import Storage

from _engines import Engine

Change = tuple[str, bytes | None]


def put(key: str, value: Any) -> Change:
    return key, orjson.dumps(value)


def gone(key: str) -> Change:
    return key, None


def fresh(engine: Engine, *batches: list[Change]) -> Storage:
    """A writable open holding *batches*, committed in order."""
    storage = engine.open()
    storage.load()
    for batch in batches:
        storage.commit(batch)
    return storage


def after_reopen(engine: Engine, storage: Storage) -> list[tuple[str, Any]]:
    """What the store holds, as a new writable open reads it, and the same read-only."""
    storage.close()
    again = engine.open()
    items = list(again.load().items())
    reader = engine.open(readonly=True)
    assert list(reader.load().items()) == items
    reader.close()
    again.close()
    return items


def test_a_new_store_is_empty(engine: Engine) -> None:
    storage = engine.open()
    assert storage.load() == {}
    assert after_reopen(engine, storage) == []


def test_commits_keep_insertion_order_across_a_reopen(engine: Engine) -> None:
    keys = [f"k{i}" for i in range(10)]
    storage = fresh(
        engine, [put(k, i) for i, k in enumerate(keys[:6])], [put(k, 0) for k in keys[6:]]
    )
    assert list(storage.load()) == keys
    assert [k for k, _ in after_reopen(engine, storage)] == keys


def test_an_update_keeps_its_place_and_a_readd_goes_to_the_end(engine: Engine) -> None:
    storage = fresh(
        engine,
        [put("a", 1), put("b", 2), put("c", 3)],
        [put("a", "changed")],
        [gone("b")],
        [put("b", "back")],
    )
    assert after_reopen(engine, storage) == [("a", "changed"), ("c", 3), ("b", "back")]


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        pytest.param(
            [put("n", 1), gone("n")], [("a", 1), ("b", 2)], id="new key set then deleted"
        ),
        pytest.param([gone("a"), put("a", 9), gone("a")], [("b", 2)], id="delete, set, delete"),
        pytest.param([gone("a"), put("a", 9)], [("b", 2), ("a", 9)], id="re-add goes to the end"),
        pytest.param([put("a", 8), put("a", 9)], [("a", 9), ("b", 2)], id="set twice, last wins"),
        pytest.param(
            [put("n", 1), put("n", 2)], [("a", 1), ("b", 2), ("n", 2)], id="new key set twice"
        ),
        pytest.param([gone("missing")], [("a", 1), ("b", 2)], id="delete a missing key"),
        pytest.param([put("a", 1)], [("a", 1), ("b", 2)], id="set to the same value"),
        pytest.param(
            [gone("a"), gone("b"), put("b", 3), put("a", 4)],
            [("b", 3), ("a", 4)],
            id="everything deleted and re-added in a new order",
        ),
    ],
)
def test_one_batch_applies_in_order_as_a_dict_would(
    engine: Engine, batch: list[Change], expected: list[tuple[str, Any]]
) -> None:
    storage = fresh(engine, [put("a", 1), put("b", 2)], batch)
    assert list(storage.load().items()) == expected
    assert after_reopen(engine, storage) == expected


def test_an_empty_batch_changes_nothing(engine: Engine) -> None:
    storage = fresh(engine, [put("a", 1)], [])
    storage.commit(iter(()))
    assert after_reopen(engine, storage) == [("a", 1)]


def test_a_batch_that_raises_midway_commits_nothing(engine: Engine) -> None:
    storage = fresh(engine, [put("a", 1), put("b", 2)])

    def changes() -> Iterator[Change]:
        yield put("a", "half")
        yield gone("b")
        yield put("c", 3)
        raise RuntimeError("the caller failed while encoding")

    with pytest.raises(RuntimeError, match="encoding"):
        storage.commit(changes())
    assert list(storage.load().items()) == [("a", 1), ("b", 2)]
    storage.commit([put("d", 4)])  # the engine goes on working
    assert after_reopen(engine, storage) == [("a", 1), ("b", 2), ("d", 4)]


def test_values_come_back_exactly_with_nested_key_order(engine: Engine) -> None:
    value = {"z": 1, "a": [1.5, None, True, "é", {"y": {}, "b": []}], "m": 2**63}
    storage = fresh(engine, [("v", orjson.dumps(value))])
    ((_, back),) = after_reopen(engine, storage)
    assert back == value and list(back) == ["z", "a", "m"]
    assert list(back["a"][4]) == ["y", "b"]


def test_load_returns_a_new_dict_that_shares_nothing(engine: Engine) -> None:
    storage = fresh(engine, [put("a", {"n": [1]})])
    first = storage.load()
    first["a"]["n"].append(2)
    first["b"] = 1
    assert storage.load() == {"a": {"n": [1]}}


def test_meta_is_kept_and_handed_out_as_a_copy(engine: Engine) -> None:
    storage = fresh(engine)
    storage.set_meta({"kind": "tracker", "max_tries": 3})
    got = storage.meta
    got["kind"] = "changed"
    assert storage.meta == {"kind": "tracker", "max_tries": 3}
    storage.close()
    again = engine.open()
    assert again.meta == {"kind": "tracker", "max_tries": 3}
    again.set_meta({"kind": "pod"})
    assert again.meta == {"kind": "pod"}
    again.close()
    assert engine.open(readonly=True).meta == {"kind": "pod"}


def test_a_reader_sees_each_commit_whole(engine: Engine) -> None:
    writer = fresh(engine, [put("a", 1)])
    reader = engine.open(readonly=True)
    assert reader.load() == {"a": 1}
    writer.commit([put("a", 2), put("b", 3)])
    assert reader.load() == {"a": 2, "b": 3}  # a new load reads the new commit
    writer.commit([gone("a")])
    assert reader.load() == {"b": 3}


def test_a_read_only_open_refuses_changes(engine: Engine) -> None:
    fresh(engine, [put("a", 1)]).close()
    reader = engine.open(readonly=True)
    reader.load()
    with pytest.raises(ReadOnlyError):
        reader.commit([put("a", 2)])
    with pytest.raises(ReadOnlyError):
        reader.set_meta({"x": 1})
    assert engine.open(readonly=True).load() == {"a": 1}


def test_one_writer_at_a_time(engine: Engine) -> None:
    if not engine.exclusive:
        pytest.skip(f"every writable open of the {engine.name} engine is shared")
    first = fresh(engine, [put("a", 1)])
    with pytest.raises(LockedError):
        engine.open()
    reader = engine.open(readonly=True)  # readers are welcome meanwhile
    assert reader.load() == {"a": 1}
    first.close()
    second = engine.open()
    second.load()
    second.commit([put("a", 2)])
    assert after_reopen(engine, second) == [("a", 2)]


def test_close_is_idempotent(engine: Engine) -> None:
    storage = fresh(engine, [put("a", 1)])
    storage.close()
    storage.close()
    assert engine.open(readonly=True).load() == {"a": 1}


def test_compact_keeps_everything(engine: Engine) -> None:
    storage = fresh(engine, [put(f"k{i}", i) for i in range(7)], [gone("k2"), put("k0", "x")])
    storage.compact()
    expected = [("k0", "x"), ("k1", 1), *[(f"k{i}", i) for i in range(3, 7)]]
    assert list(storage.load().items()) == expected
    assert after_reopen(engine, storage) == expected


def test_a_commit_whose_io_fails_leaves_the_store_as_it_was(engine: Engine) -> None:
    if not engine.has_io:
        pytest.skip(f"the {engine.name} engine does no I/O that could fail")
    storage = fresh(engine, [put("a", 1)])
    with engine.failing_io(), pytest.raises(OSError, match="injected"):
        storage.commit([put("a", 2), put("b", 3)])
    assert engine.open(readonly=True).load() == {"a": 1}
    storage.commit([put("c", 4)])  # the failed batch was not applied; a new one works
    assert after_reopen(engine, storage) == [("a", 1), ("c", 4)]


def test_describe_gives_json_scalars(engine: Engine) -> None:
    storage = fresh(engine, [put("a", 1)])
    facts = storage.describe()
    assert facts and all(isinstance(name, str) for name in facts)
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in facts.values())
    orjson.dumps(facts)


def test_an_empty_batch_on_a_new_store_leaves_it_empty(engine: Engine) -> None:
    storage = engine.open()
    storage.commit([])
    storage.commit(iter(()))
    assert storage.load() == {}
    assert after_reopen(engine, storage) == []


@pytest.mark.parametrize("compact", [False, True], ids=["journal", "compacted"])
def test_a_key_deleted_then_readded_after_a_reopen_goes_to_the_end(
    engine: Engine, compact: bool
) -> None:
    storage = fresh(engine, [put("a", 1), put("b", 2), put("c", 3)], [gone("a")])
    if compact:
        storage.compact()
    assert after_reopen(engine, storage) == [("b", 2), ("c", 3)]
    again = fresh(engine, [put("a", "back")])
    assert after_reopen(engine, again) == [("b", 2), ("c", 3), ("a", "back")]


def test_a_batch_that_raises_midway_leaves_nothing_to_recover(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The failed batch is the store's first; a reopen straight after finds no trace of it."""
    storage = engine.open()
    storage.load()

    def changes() -> Iterator[Change]:
        yield put("n", 1)
        yield gone("n")
        yield put("a", 2)
        raise RuntimeError("the caller failed while encoding")

    with caplog.at_level(logging.DEBUG, logger="tastypy"):
        with pytest.raises(RuntimeError, match="encoding"):
            storage.commit(changes())
        assert storage.load() == {}
        assert after_reopen(engine, storage) == []
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_a_set_meta_whose_io_fails_keeps_the_meta_it_had(engine: Engine) -> None:
    if not engine.has_io:
        pytest.skip(f"the {engine.name} engine does no I/O that could fail")
    storage = fresh(engine, [put("a", 1)])
    storage.set_meta({"kind": "tracker"})
    with engine.failing_io(), pytest.raises(OSError, match="injected"):
        storage.set_meta({"kind": "pod", "sync_at": 5})
    assert storage.meta == {"kind": "tracker"}
    assert engine.open(readonly=True).meta == {"kind": "tracker"}
    storage.set_meta({"kind": "pod"})  # and it works once the fault is gone
    storage.close()
    assert engine.open(readonly=True).meta == {"kind": "pod"}


def test_a_compact_whose_io_fails_keeps_everything(engine: Engine) -> None:
    if not engine.has_io:
        pytest.skip(f"the {engine.name} engine does no I/O that could fail")
    storage = fresh(engine, [put(f"k{i}", i) for i in range(7)], [gone("k2"), put("k0", "x")])
    expected = [("k0", "x"), ("k1", 1), *[(f"k{i}", i) for i in range(3, 7)]]
    with engine.failing_io(), pytest.raises(OSError, match="injected"):
        storage.compact()
    assert list(engine.open(readonly=True).load().items()) == expected
    storage.commit([put("k7", 7)])
    storage.compact()
    assert after_reopen(engine, storage) == [*expected, ("k7", 7)]


def test_a_failing_batch_of_a_key_set_then_deleted_leaves_the_store_as_it_was(
    engine: Engine,
) -> None:
    if not engine.has_io:
        pytest.skip(f"the {engine.name} engine does no I/O that could fail")
    storage = fresh(engine, [put("a", 1)])
    with engine.failing_io(), pytest.raises(OSError, match="injected"):
        storage.commit([put("n", 1), gone("n"), gone("a"), put("a", 2)])
    assert engine.open(readonly=True).load() == {"a": 1}
    storage.commit([put("n", 1), gone("n")])
    assert after_reopen(engine, storage) == [("a", 1)]
