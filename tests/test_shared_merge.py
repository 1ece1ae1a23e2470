"""The merge a shared sync asks of a writer's memory: exact, order included.

For any state ``S0``, changes of the others and changes of this writer, the
writer's memory ``S0 ∘ mine`` with the merge applied must equal the store,
``S0 ∘ theirs ∘ mine``, in content and in order.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tastypy.storage._merge import Merge, merge

KEYS = st.sampled_from(list("abcdefg"))
CHANGES = st.lists(st.tuples(KEYS, st.one_of(st.none(), st.integers(0, 9))), max_size=12)


def applied(state: dict[str, Any], changes: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(state)
    for key, value in changes:
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def encoded(changes: list[tuple[str, Any]]) -> list[tuple[str, bytes | None]]:
    return [(k, None if v is None else json.dumps(v).encode()) for k, v in changes]


@given(
    start=st.lists(st.tuples(KEYS, st.integers(0, 9)), max_size=7),
    theirs=CHANGES,
    mine=CHANGES,
)
def test_memory_with_the_merge_applied_is_the_store_in_content_and_order(
    start: list[tuple[str, int]], theirs: list[tuple[str, Any]], mine: list[tuple[str, Any]]
) -> None:
    s0 = dict(start)
    store = applied(applied(s0, theirs), mine)
    memory = applied(s0, mine)
    result = merge(s0.__contains__, encoded(theirs), encoded(mine))
    result.apply(memory, json.loads)
    assert list(memory.items()) == list(store.items())


@given(start=st.lists(st.tuples(KEYS, st.integers(0, 9)), max_size=7), theirs=CHANGES)
def test_with_no_changes_of_its_own_the_writer_takes_exactly_the_others(
    start: list[tuple[str, int]], theirs: list[tuple[str, Any]]
) -> None:
    s0 = dict(start)
    memory = dict(s0)
    merge(s0.__contains__, encoded(theirs), []).apply(memory, json.loads)
    assert list(memory.items()) == list(applied(s0, theirs).items())


def test_keys_still_pending_in_the_writer_keep_its_value() -> None:
    s0 = {"a": 1, "b": 2}
    memory = {"a": 10, "b": 2}  # "a" changed here, not yet synced
    result = merge(s0.__contains__, encoded([("a", 5), ("b", 7), ("c", 3)]), [])
    result.apply(memory, json.loads, keep=lambda key: key == "a")
    assert list(memory.items()) == [("a", 10), ("b", 7), ("c", 3)]


def test_the_merge_names_the_keys_the_others_decided() -> None:
    s0 = {"a": 1, "b": 2, "c": 3}
    result = merge(
        s0.__contains__, encoded([("a", 5), ("b", None), ("d", 1)]), encoded([("c", 9)])
    )
    assert sorted(result.theirs) == ["a", "b", "d"]
    assert not Merge()
    assert result
