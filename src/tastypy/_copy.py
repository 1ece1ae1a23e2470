"""``POD.copy``: every value written to a new store, on whatever engine it is."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from ._codec import encode_value
from ._pending import Pending
from ._references import reachable_among
from .errors import SettingsError
from .storage import Storage
from .storage.engines import FILE_OPTIONS, is_url, open_engine

if TYPE_CHECKING:
    from ._window import Window
    from .storage.protocol import OnDemand

__all__ = ["copy_into"]


def copy_into(  # noqa: PLR0917  # copy()'s own arguments, with the POD's state
    data: dict[str, Any],
    pending: Pending,
    source: Storage,
    target: str | os.PathLike[str] | Storage,
    file_size: int | None,
    gzipped: bool | None,
    name: str | None = None,
    window: Window | None = None,
) -> tuple[Storage, dict[str, Any] | None]:
    """Write *data* and *source*'s meta to a new store at *target*; its engine, and new data.

    *target* is a path or URL opened as a new store (its settings those of
    *source* unless given), or an empty engine open for writing. On success
    every key is as after a sync of it to the new store; on failure nothing
    changed: *pending* is as before and what was made for the copy is gone.

    *window*: *data* is served on demand (it is that object). If the new
    engine serves on demand too, the window moves to it; else the new data
    is returned, loaded whole (None: *data* stays the POD's data).
    """
    # Who can reach what is settled before any value is encoded (see
    # Pending.take): every value goes to the new store.
    resident = list(data) if window is None else window.resident()
    reach = set(reachable_among(data, resident))
    # Before the dirty keys are taken: the window places them by them.
    pairs: Iterable[tuple[str, Any]] = data.items() if window is None else window.pairs()
    taken, _reach = pending.take(data, None, full=False)
    loaded: dict[str, Any] | None = None
    try:
        new = _new_engine(source, target, file_size, gzipped, name)
        made = isinstance(target, (str, os.PathLike))
        before = None if made else new.meta
        try:
            if window is not None:
                if "on_demand" in new.capabilities:
                    cast("OnDemand", new).begin_on_demand(window.cache)
                else:  # the new engine holds everything in memory: so does the POD
                    loaded = dict(pairs)
                    pairs = loaded.items()
            encoded = ((key, encode_value(value, keep=False, key=key)) for key, value in pairs)
            new.set_meta(source.meta)
            new.commit(encoded)
        except BaseException:
            if made:
                new.discard()  # what was made for the copy goes again
            else:  # the caller's store: as it was (the failed commit wrote nothing)
                _restore_meta(new, before)
            raise
    except BaseException:
        pending.restore(taken)
        raise
    written = dict.fromkeys(resident, False)
    written.update((key, False) for key, _appended in taken)
    pending.settle(list(written.items()), reach, [])
    if window is not None and loaded is None:
        window.moved(cast("OnDemand", new))
    return new, loaded


def _restore_meta(engine: Storage, meta: dict[str, Any] | None) -> None:
    """Put back the settings a failed copy replaced, if it can (its error is what counts)."""
    if meta is not None:
        with contextlib.suppress(Exception):
            engine.set_meta(meta)


def _new_engine(
    source: Storage,
    target: str | os.PathLike[str] | Storage,
    file_size: int | None,
    gzipped: bool | None,
    name: str | None,
) -> Storage:
    """The engine a copy goes to: *target* opened as a new store, or the engine given."""
    if not isinstance(target, (str, os.PathLike)):
        if file_size is not None or gzipped is not None:
            raise SettingsError("give file_size and gzipped to the engine, not to copy()")
        if name is not None:
            raise TypeError("give name= with a URL, not with an engine object")
        if target.readonly or target.load():
            raise FileExistsError(f"{target.location}: copy() needs an empty, writable store")
        return target
    asked = {"file_size": file_size, "gzipped": gzipped}
    # The source's own settings carry over to an engine that has them.
    options = {} if is_url(target) else {key: source.options.get(key) for key in FILE_OPTIONS}
    options.update({key: value for key, value in asked.items() if value is not None})
    return open_engine(target, durable=source.durable, new=True, options=options, name=name)
