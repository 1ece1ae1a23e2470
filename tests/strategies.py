"""Hypothesis strategies shared by the tastypy tests.

Everything here produces data that a POD must store *exactly*: a value read
back after a sync and a reopen compares equal, type for type, to the value
that was stored (no tuples, no NaN, no non-``str`` keys inside values).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "JSON_KEY_POOL",
    "colliding_keys",
    "json_keys",
    "json_scalars",
    "json_text",
    "json_values",
    "normalize_json_key",
]

# orjson accepts every integer that fits in 64 bits, signed or unsigned.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


def normalize_json_key(key: object) -> str:
    """The key *key* becomes as a JSON object key, according to the ``json`` module.

    This is the oracle for the POD's own key conversion: ``1 -> "1"``,
    ``True -> "true"``, ``None -> "null"``, ``1.5 -> "1.5"``, ``nan -> "NaN"``.
    """
    (normalized,) = json.loads(json.dumps({key: None}))
    return normalized


def json_text(max_size: int = 12) -> st.SearchStrategy[str]:
    """Text that is valid Unicode (no lone surrogates), so it encodes as UTF-8 JSON."""
    return st.text(st.characters(exclude_categories=("Cs",)), max_size=max_size)


def json_scalars() -> st.SearchStrategy[Any]:
    """``None``, bools, 64-bit integers, finite floats and strings."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=INT_MIN, max_value=INT_MAX),
        st.floats(allow_nan=False, allow_infinity=False),
        json_text(),
    )


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Scalars and nested lists/dicts of them (dicts with ``str`` keys only)."""
    return st.recursive(
        json_scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(json_text(max_size=6), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def json_keys() -> st.SearchStrategy[Any]:
    """Anything a POD accepts as a key: ``str`` and the types JSON converts to ``str``."""
    return st.one_of(
        json_text(),
        st.integers(min_value=INT_MIN, max_value=INT_MAX),
        st.floats(),  # NaN and infinities included: json writes "NaN", "Infinity"
        st.booleans(),
        st.none(),
    )


# A few keys that collide once normalized ("1" and 1, "true" and True, ...),
# so that a short run of steps keeps revisiting, deleting and re-adding keys.
JSON_KEY_POOL: tuple[Any, ...] = (
    "a",
    "b",
    "c",
    "",
    "é",
    "line\nbreak",
    "1",
    1,
    "true",
    True,
    "false",
    False,
    "null",
    None,
    "1.5",
    1.5,
)


def colliding_keys() -> st.SearchStrategy[Any]:
    """Mostly keys from :data:`JSON_KEY_POOL`, sometimes any key at all."""
    return st.one_of(st.sampled_from(JSON_KEY_POOL), st.sampled_from(JSON_KEY_POOL), json_keys())
