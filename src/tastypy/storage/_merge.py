"""What one writer of a shared store must change in memory after its sync.

A shared sync commits this writer's changes on top of what the others
committed since its last sync (``docs/SHARED.md``). The store then holds
``S0 ∘ theirs ∘ mine``: the state this writer last saw, then the others'
changes, then its own, each applied in order as a ``dict`` applies them. The
writer's memory holds ``S0 ∘ mine`` already; :func:`merge` says what turns
it into the store's state, order included, at a cost that follows the
changes (never the store):

- a key present in ``S0`` that nobody deleted keeps its place; it takes the
  others' value if they set it last;
- every other key that ends present goes to the end, in the order of the
  last time it was added (set while absent);
- a key that ends absent goes.

Engines compute it; the POD applies it (:meth:`Merge.apply`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Merge", "merge"]

Change = tuple[str, "bytes | None"]


@dataclass
class Merge:
    """The changes a shared sync asks of the writer's memory.

    ``updated``: keys that keep their place and take the others' value.
    ``deleted``: keys that go. ``appended``: keys that go to the end, in this
    order, each with the others' value, or ``None`` where the writer's own
    value stands. ``theirs``: the keys whose value is now the others' (for
    counts kept beside the data).
    """

    updated: list[tuple[str, bytes]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    appended: list[tuple[str, bytes | None]] = field(default_factory=list)
    # Whether *blob* is the value the writer last saw of *key* (before these
    # changes of the others): for a key it only read, never changed.
    unchanged: Callable[[str, bytes], bool] = field(default=lambda key, blob: False)

    def __bool__(self) -> bool:
        return bool(self.updated or self.deleted or self.appended)

    @property
    def theirs(self) -> list[str]:
        """Every key whose value or presence the others decided."""
        keys = [key for key, _blob in self.updated]
        keys += self.deleted
        keys += [key for key, blob in self.appended if blob is not None]
        return keys

    def apply(
        self,
        data: dict[str, Any],
        decode: Callable[[bytes], Any],
        keep: Callable[[str], bool] = lambda key: False,
    ) -> None:
        """Make *data* (``S0 ∘ mine``) the store's state.

        Keys for which *keep* is true (changes still pending in the writer,
        not part of this sync) keep the writer's value; they still move. It
        is asked only of keys the others changed.
        """
        for key in self.deleted:
            if not keep(key):
                data.pop(key, None)
        for key, blob in self.updated:
            if not keep(key):
                data[key] = decode(blob)
        for key, value in self.appended:
            if value is None or keep(key):
                if key in data:
                    data[key] = data.pop(key)
            else:
                data.pop(key, None)
                data[key] = decode(value)


def merge(
    present_before: Callable[[str], bool],
    theirs: Iterable[Change],
    mine: Iterable[Change],
) -> Merge:
    """The :class:`Merge` for a store that was ``S0``, then took *theirs*, then *mine*.

    *present_before* tells whether a key is in ``S0``; *mine* are the changes
    this writer's commit actually wrote (after *theirs*).
    """
    theirs = list(theirs)
    if not theirs:
        return Merge()  # the writer's memory is the store already
    # key -> [present now, index of the last add or -1, the others' last value, last is mine]
    state: dict[str, list[Any]] = {}
    step = 0
    for is_mine, changes in ((False, theirs), (True, mine)):
        for key, blob in changes:
            entry = state.get(key)
            if entry is None:
                entry = state[key] = [present_before(key), -1, None, False]
            if blob is None:
                entry[0] = False
            else:
                if not entry[0]:
                    entry[1] = step
                entry[0] = True
                entry[2] = None if is_mine else blob
                entry[3] = is_mine
            step += 1
    result = Merge()
    added: list[tuple[int, str, bytes | None]] = []
    for key, (present, added_at, blob, last_mine) in state.items():
        if not present:
            result.deleted.append(key)
        elif added_at >= 0:
            added.append((added_at, key, None if last_mine else blob))
        elif not last_mine:
            result.updated.append((key, blob))
    result.appended = [(key, blob) for _at, key, blob in sorted(added)]
    return result
