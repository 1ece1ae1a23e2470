"""What a POD's next sync must write, and what its session handed out.

Three sets of keys, kept apart so that an automatic sync costs what changed:

* ``dirty``: keys assigned, deleted or read since the last sync (a value that
  was read may be changed in place by the caller). The flag says whether the
  key goes (again) to the end of the store: new, or deleted since the sync.
* ``encoded``: an encoding made at assignment, valid until the key is read.
  Only for values the program cannot change in place (strings, numbers) and
  records the tracker makes itself: a dict or list the caller assigned may
  be changed through the caller's reference at any time before the sync.
* ``session``: keys that an earlier sync of this session wrote or checked,
  whose values the program may still reach (it kept a reference, to the
  value or to something inside it) and so change later. The sync at close
  or exit (or on SIGTERM) encodes them once more; the engine writes only
  those whose bytes differ from what it holds. Other syncs leave them alone,
  so that their cost follows what was touched since the last sync.

A value that can no longer be encoded (a NaN smuggled in by nested mutation)
is left out of a sync and stays dirty; every other key is written. ``bad``
names such keys and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from ._codec import FAST_OPTIONS, encode_value, has_non_finite
from ._references import reachable_among
from ._settings import IgnoreAll

__all__ = ["Pending"]


class Pending:
    """The dirty set, pending encodings and session keys of one POD.

    Not thread-safe by itself: the POD holds its lock around every use.
    """

    __slots__ = ("bad", "dirty", "encoded", "reported", "session", "warned")

    def __init__(self, *, readonly: bool) -> None:
        self.dirty: dict[str, bool] = IgnoreAll() if readonly else {}
        self.encoded: dict[str, bytes] = {}
        self.session: set[str] = set()
        self.bad: dict[str, str] = {}  # key -> why its value cannot be written
        self.warned: set[str] = set()  # bad keys already logged by an automatic sync
        self.reported: set[str] = set()  # bad keys already reported on stderr at exit

    def take(
        self, data: dict[str, Any], keys: list[str] | None, *, full: bool
    ) -> tuple[list[tuple[str, bool]], set[str]]:
        """Take the ``(key, appended)`` pairs a sync writes out of the dirty set.

        Returns them, and which of them the program can reach. *keys* None:
        every dirty key, and with *full* every session key too. They leave the
        dirty set now, so that a key marked dirty again while the commit runs
        (by a signal handler, say, in this very thread) stays dirty after it;
        :meth:`restore` puts them back if the commit fails.

        Reachability is settled before anything is encoded: a change made
        through a reference that exists now may land after its key was
        encoded, so such a key must stay in the session.
        """
        dirty = self.dirty
        if keys is not None:
            chosen = [(k, dirty.get(k, False)) for k in keys]
            looked_at = list(keys)
        else:
            chosen = list(dirty.items())
            looked_at = list(dirty)
            if full:
                others = [k for k in self.session if k not in dirty]
                chosen += [(k, False) for k in others]
                looked_at += others
        reach = set(reachable_among(data, looked_at))
        # Only now, when nothing above can fail any more, do the keys leave;
        # each only if its mark is still the one taken. A signal handler may
        # have run in between (in this thread: the lock is re-entrant) and
        # marked it anew, or marked other keys: those marks stay.
        for key, appended in chosen:
            if dirty.get(key, None) is appended:
                dirty.pop(key, None)
        return chosen, reach

    def restore(self, chosen: list[tuple[str, bool]]) -> None:
        """The commit of *chosen* failed: they are dirty again, ahead of newer marks."""
        self._put_back(chosen)

    def _put_back(self, pairs: Iterable[tuple[str, bool]]) -> None:
        # Order matters: appended keys go to the end of the store in dirty
        # order, which must stay the order of the data. Keys taken come
        # before any marked since (re-adding them would move them last).
        dirty = self.dirty
        merged = dict(pairs)
        for key, appended in dirty.items():
            merged[key] = merged.get(key, False) or appended
        dirty.clear()
        dirty.update(merged)

    def changes(
        self,
        data: dict[str, Any],
        chosen: Iterable[tuple[str, bool]],
        left: list[str],
        check: Callable[[Any], str | None] | None = None,
    ) -> Iterator[tuple[str, bytes | None]]:
        """The engine changes for *chosen*, made lazily; keys that cannot be encoded go to *left*.

        *check*, if given, says why a value must not be written (or None):
        such a key goes to *left* too (the tracker's check of task records).

        A generator, so each change tuple is freed before the next is made:
        a list of them would trigger the cyclic GC over all the data.
        """
        encoded, bad = self.encoded, self.bad
        dumps = orjson.dumps
        for key, appended in chosen:
            blob = encoded.get(key)
            if blob is None:
                if key not in data:
                    if appended:
                        yield key, None  # deleted
                    continue
                value = data[key]
                if check is not None:
                    problem = check(value)
                    if problem is not None:
                        bad[key] = problem
                        left.append(key)
                        continue
                try:
                    blob = dumps(value, option=FAST_OPTIONS)
                except TypeError:  # e.g. non-str dict keys: the careful path
                    blob = b""
                if not blob or (b"null" in blob and has_non_finite(value)):
                    try:
                        blob = encode_value(value, keep=False)
                    except TypeError as exc:
                        bad[key] = str(exc)
                        left.append(key)
                        continue  # the store keeps its last good value
            if appended:
                yield key, None  # (re)goes to the end: drop its old place
            yield key, blob

    def settle(self, chosen: list[tuple[str, bool]], reach: set[str], left: list[str]) -> None:
        """A commit of *chosen* is durable: they are clean now, but for *left*.

        Of the keys written or checked, those in *reach* (values the program
        may still change, see :meth:`take`) stay in the session.
        """
        encoded, bad, session = self.encoded, self.bad, self.session
        if session:
            session.difference_update([key for key, _appended in chosen])
        session.update(reach)
        dirty = self.dirty
        for key, _appended in chosen:
            if key not in dirty:  # not marked again meanwhile: its encoding is spent
                encoded.pop(key, None)
        if bad:
            gone = set(left)
            for key, _appended in chosen:
                if key not in gone and bad.pop(key, None) is not None:
                    self.warned.discard(key)
                    self.reported.discard(key)
        if left:  # keys left out stay dirty, in their order (their flag says where they go)
            flags = dict(chosen)
            self._put_back((k, flags[k]) for k in left)

    def keeps(
        self, data: dict[str, Any], unchanged: Callable[[str, bytes], bool]
    ) -> Callable[[str], bool]:
        """Which keys keep this writer's value when another writer's change comes in.

        A key set, deleted or moved here keeps it; so does one changed in
        place. A key only read here (marked, its value still the one last
        seen, which *unchanged* tells from its encoding) takes theirs: its
        mark goes.
        """
        dirty, encoded = self.dirty, self.encoded

        def keep(key: str) -> bool:
            mark = dirty.get(key)
            if mark is None:
                return False
            if mark or key not in data:
                return True  # set, deleted or moved here
            try:
                blob = encoded.get(key) or encode_value(data[key], keep=False)
            except TypeError:
                return True  # cannot be written as it is: it stays pending
            if not unchanged(key, blob):
                return True  # changed in place here
            del dirty[key]
            encoded.pop(key, None)
            return False

        return keep

    def forget(self) -> None:
        """Drop everything (the data was reloaded from the store)."""
        self.dirty.clear()
        self.encoded.clear()
        self.session.clear()
        self.bad.clear()
        self.warned.clear()
        self.reported.clear()

    def bad_message(self, path: object, keys: list[str]) -> str:
        """One line naming the first key that could not be written and why."""
        first = keys[0]
        others = f" (and {len(keys) - 1} more keys)" if len(keys) > 1 else ""
        return (
            f"{path}: key {first!r}{others} not saved: {self.bad.get(first, 'cannot be encoded')}"
            "; the store keeps its last synced value. Every other change was saved. "
            f"Fix the value (pod[{first!r}] = ...) and sync again"
        )
