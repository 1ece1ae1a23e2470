"""A deterministic workload of batches, applied alike to a POD and to a dict.

Batch *n* is a pure function of the mapping's current state and *n*: inserts,
updates, nested mutations through ``m[k][...]``, deletes and re-inserts. The
crash tests run it in a writer subprocess and replay it on a plain dict to
know what the store must hold after each batch.
"""

from __future__ import annotations

import copy
import random
from collections.abc import MutableMapping
from typing import Any


def apply_batch(m: MutableMapping[str, Any], n: int) -> None:
    rng = random.Random(n)
    for j in range(rng.randint(1, 40)):
        keys = [k for k in m if k != "_batch"]
        op = rng.random()
        if len(keys) > 150:  # keep the store small: shrink instead of growing
            op = 0.8 + op / 10
        if op < 0.4 or not keys:
            m[f"k{n}-{j}"] = {"n": n, "items": [j], "text": "x" * rng.randint(0, 60)}
        elif op < 0.6:
            m[rng.choice(keys)] = {"n": n, "items": [], "text": "updated"}
        elif op < 0.8:
            m[rng.choice(keys)]["items"].append(n)
        elif op < 0.9:
            del m[rng.choice(keys)]
        else:
            key = rng.choice(keys)
            value = m.pop(key)
            m[key] = value
    m["_batch"] = n


class StateCache:
    """``cache(batch)``: contents, in order, after batches 0..batch (-1: empty).

    Batches must be asked for in non-decreasing order, give or take one.
    """

    def __init__(self) -> None:
        self._model: dict[str, Any] = {}
        self._done = -1
        self._states: dict[int, list[tuple[str, Any]]] = {-1: []}

    def __call__(self, batch: int) -> list[tuple[str, Any]]:
        while self._done < batch:
            self._done += 1
            apply_batch(self._model, self._done)
            if self._done >= batch - 1:
                self._states[self._done] = copy.deepcopy(list(self._model.items()))
        for old in [b for b in self._states if b < batch - 1]:
            del self._states[old]
        return self._states[batch]
