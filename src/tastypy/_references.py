"""Whether the program may still change a stored value behind the POD's back.

A value the POD handed out (``rec = pod[k]``), or was given (``pod[k] = rec``),
can be changed in place at any later moment through the program's own
reference, or through a reference to a list or dict inside it. Such a change
cannot be seen; it can only be looked for, by encoding the value again. To
keep that cheap, the POD looks again only at values that some reference
outside its own data may reach.

CPython's reference counts tell exactly: a dict, list or tuple that only its
parent refers to (the POD's data dict, for a top-level value) is out of the
program's reach, and so is everything below it once every container there
is. Where there are no reliable reference counts (another interpreter, a
free-threaded build), every container counts as reachable: right, only
slower.

The counts of a container that nothing else refers to depend on how the
interpreter passes references around, so they are measured at import, on
values known to be out of reach, through :func:`reachable_among` itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["count_refs", "reachable_among"]

_CONTAINERS = (dict, list, tuple)
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _counter() -> Callable[[object], int] | None:
    count = getattr(sys, "getrefcount", None)
    gil = getattr(sys, "_is_gil_enabled", None)
    if count is None or (gil is not None and not gil()):
        return None
    return count  # type: ignore[no-any-return]


count_refs = _counter()
"""``sys.getrefcount`` where reference counts can be trusted, else None."""

# The counts that reachable_among() sees for an unreached top-level value and
# nested container; -1 until measured (and for good if they cannot be).
_TOP = -1
_NESTED = -1


def reachable_among(data: dict[str, Any], keys: Iterable[str]) -> list[str]:
    """Those of *keys* whose values the program may reach, to change them in place.

    A value counts as reachable if the program holds a reference to it or
    to a dict, list or tuple inside it. Strings, numbers and None can never
    be changed in place; keys not in *data* are left out.
    """
    count = count_refs
    if count is None or _TOP < 0:
        return [k for k in keys if isinstance(data.get(k), _CONTAINERS)]
    keys = keys if type(keys) is list else list(keys)
    values = list(map(data.get, keys))
    counts = list(map(count, values))  # before any loop variable holds one
    found = []
    top, scalars, containers = _TOP, _SCALARS, _CONTAINERS
    for key, value, seen in zip(keys, values, counts):  # noqa: B905  # equal by construction
        if type(value) is dict:  # the common case first
            if seen > top or (
                not scalars.issuperset(map(type, value.values()))  # C speed: a flat record?
                and _inside_reachable(value, count)
            ):
                found.append(key)
        elif isinstance(value, containers) and (seen > top or _inside_reachable(value, count)):
            found.append(key)
    return found


def _inside_reachable(value: Any, count: Callable[[object], int]) -> bool:
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, _CONTAINERS):
                if count(child) > _NESTED:
                    return True
                stack.append(child)
    return False


def _calibrate() -> tuple[int, int]:
    """The counts :func:`reachable_among` sees for unreached values, or (-1, -1)."""
    global _TOP, _NESTED
    if count_refs is None:
        return -1, -1
    for top in range(1, 12):
        for nested in range(1, 12):
            _TOP, _NESTED = top, nested
            data: dict[str, Any] = {"key": {"a": [{"b": 1}], "c": (1, [2])}, "flat": {"x": 1}}
            if reachable_among(data, ["key", "flat"]):
                continue
            # The counts of nothing held: check that holding anything shows.
            held_top = data["flat"]
            seen_top = reachable_among(data, ["flat"])
            del held_top
            held_nested = data["key"]["c"][1]
            seen_nested = reachable_among(data, ["key"])
            del held_nested
            if seen_top and seen_nested and not reachable_among(data, ["key", "flat"]):
                return top, nested
            return -1, -1
    return -1, -1


_TOP, _NESTED = _calibrate()
