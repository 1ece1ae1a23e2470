"""``POD.locked()``: read-modify-write as one transaction, across processes for a shared store.

Inside the block this process sees everything committed so far, and no
other process commits until the block ends (the engine's commit lock is
held throughout: ``Claims.locked``). What the block changed commits as one
atomic, durable sync at its end. On an exception nothing commits and the
POD is reloaded from the store, which is exactly as it was when the block
began: the block's changes are undone in memory too. Automatic syncs wait
for the end of the block, and an exit sync during the block saves none of
its changes (as a database drops an unfinished transaction).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._codec import encode_value

if TYPE_CHECKING:
    from .pod import PersistentOrderedDict

__all__ = ["locked_block"]


@contextlib.contextmanager
def locked_block(pod: PersistentOrderedDict) -> Iterator[None]:
    """The body of :meth:`PersistentOrderedDict.locked` (see the module notes)."""
    pod._check_writable()
    storage: Any = pod.storage
    engine_lock = getattr(storage, "locked", None) if pod.shared else None
    with pod._lock, engine_lock() if engine_lock is not None else contextlib.nullcontext():
        if pod._in_block:
            raise RuntimeError(f"{pod._where}: locked() blocks do not nest")
        pod.sync()  # what was pending commits now; the others' changes come in
        held, pod._held = pod._held, True
        pod._in_block = True
        try:
            yield
        except BaseException:
            pod._in_block = False
            pod.revert()  # nothing of the block was committed: the store is as it began
            raise
        finally:
            pod._held = held
        pod._in_block = False
        problem = _unwritable(pod)
        if problem is not None:  # all or nothing: a sync would write the other keys
            pod.revert()
            raise TypeError(f"{pod._where}: {problem}; the locked() block committed nothing")
        try:
            pod.sync()
        except BaseException:
            # Nothing of the block committed; its changes must not stay pending,
            # or a later sync would commit them without the lock.
            _undo(pod)
            raise


def _unwritable(pod: PersistentOrderedDict) -> str | None:
    """Why one of the block's changed values cannot be written, if one cannot."""
    check = pod._value_check()
    data = pod._data
    for key in list(pod._dirty):
        if key not in data:
            continue  # deleted
        value = data[key]
        try:
            encode_value(value, keep=False, key=key)
        except TypeError as exc:
            return str(exc)
        reason = check(value) if check is not None else None
        if reason is not None:
            return f"key {key!r}: {reason}"
    return None


def _undo(pod: PersistentOrderedDict) -> None:
    """Drop a failed block's changes: reload the store, or at least forget them as pending."""
    try:
        pod.revert()
    except Exception:  # the store cannot be read either (the connection is gone)
        pod._pending.forget()
