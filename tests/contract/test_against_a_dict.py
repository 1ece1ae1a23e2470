"""Random batches on every engine, checked against a plain dict after each reopen."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _engines import Engine
from strategies import json_values

KEYS = st.sampled_from([f"k{i}" for i in range(6)])
CHANGE = st.tuples(KEYS, st.one_of(st.none(), json_values()))
BATCHES = st.lists(st.lists(CHANGE, max_size=8), min_size=1, max_size=6)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=BATCHES, reopen_every=st.integers(1, 3))
def test_random_batches_match_a_dict(
    engine: Engine, batches: list[list[tuple[str, Any]]], reopen_every: int
) -> None:
    model: dict[str, Any] = {}
    storage = engine.open()
    model.update(storage.load())  # examples share the engine's store: start from it
    for number, batch in enumerate(batches, 1):
        storage.commit((k, None if v is None else orjson.dumps(v)) for k, v in batch)
        for key, value in batch:
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        if number % reopen_every == 0:
            storage.close()
            storage = engine.open()
        assert list(storage.load().items()) == list(model.items())
    storage.close()
