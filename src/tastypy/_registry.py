"""The stores this process has open for writing, by path: one object per store.

``POD(path)`` for a path already open here returns that object (each open
then needs its own close), rather than meet its own lock. Weak references:
an object the program dropped is not kept alive by being listed. A forked
child starts with none listed, so there ``POD(path)`` opens anew and meets
the parent's lock instead of sharing the parent's object.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

__all__ = ["add", "find", "forget", "key_of"]

_OPEN: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def key_of(path: str | os.PathLike[str]) -> str:
    """The registry's name for the store at *path* (its real path)."""
    return os.path.realpath(path)


def find(key: str) -> Any | None:
    """The object listed under *key*, if any."""
    return _OPEN.get(key)


def add(key: str, store: object) -> None:
    _OPEN[key] = store


def forget(key: str, store: object) -> None:
    """Unlist *store* from *key*, if it is what is listed there."""
    if _OPEN.get(key) is store:
        del _OPEN[key]


os.register_at_fork(after_in_child=_OPEN.clear)
