"""Checks of a POD's settings, and the stand-in dicts of read-only and closed PODs."""

from __future__ import annotations

from typing import Any, NoReturn

from .errors import CorruptStoreError, SettingsError, StoreClosedError
from .storage import Storage

__all__ = [
    "CLOSED",
    "DEFAULT_SHARED_SYNC_AT",
    "DEFAULT_SYNC_AT",
    "IgnoreAll",
    "check_engine_given",
    "check_same_settings",
    "check_settings",
    "sync_at_of",
]

DEFAULT_SYNC_AT = 1000
# A store many processes share (PostgreSQL): the others see a change, and can
# claim a task another finished, only once it is synced; a sync there is one
# short transaction, so it comes sooner.
DEFAULT_SHARED_SYNC_AT = 100


def check_settings(gzipped: object, file_size: object, sync_at: object, timeout: object) -> None:
    """Refuse settings of the wrong type or range, before anything is created."""
    if gzipped is not None and not isinstance(gzipped, bool):
        raise TypeError(f"gzipped must be True or False, not {gzipped!r}")
    for name, value in (("file_size", file_size), ("sync_at", sync_at)):
        if value is not None and (type(value) is not int or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")


def check_engine_given(  # noqa: PLR0917  # the POD's own arguments, passed on as they came
    storage: Storage,
    path: object,
    gzipped: bool | None,
    file_size: int | None,
    readonly: bool,
    durable: bool,
    timeout: float | None,
    *,
    name: object = None,
) -> None:
    """Refuse settings that belong to an engine given as ``storage=``."""
    if path is not None:
        raise TypeError("give either a path or storage=, not both")
    if name is not None:
        raise TypeError("give name= with a postgresql:// URL, not with storage=")
    if gzipped is not None or file_size is not None or not durable or timeout != 0.0:
        raise SettingsError(
            "gzipped, file_size, durable and timeout belong to the engine given as "
            "storage=; set them when making it"
        )
    if readonly and not storage.readonly:
        raise SettingsError(f"{storage.location}: storage= is open for writing; open it read-only")


def sync_at_of(
    meta: dict[str, Any], asked: int | None, where: str, default: int = DEFAULT_SYNC_AT
) -> int:
    """The ``sync_at`` an open uses: *asked*, else the one stored in *meta* (checked).

    *default* is for a store that has none yet.
    """
    if asked is not None:
        return asked
    stored = meta.get("sync_at", default)
    if type(stored) is not int or stored < 1:
        raise CorruptStoreError(
            f"{where}: setting meta.sync_at must be a whole "
            f"number >= 1, not {stored!r}; open with sync_at=N to replace it"
        )
    return stored


def check_same_settings(
    where: str, options: dict[str, Any], gzipped: bool | None, file_size: int | None
) -> None:
    """Refuse an open of a store already open here that asks for other engine settings."""
    for name, asked in (("gzipped", gzipped), ("file_size", file_size)):
        current = options.get(name)
        if asked is not None and asked != current:
            raise SettingsError(
                f"{where} is open in this process with {name}={current!r}; "
                f"{name}={asked!r} was asked for"
            )


class IgnoreAll(dict[str, bool]):
    """The dirty set of a read-only store: remembers nothing."""

    def __setitem__(self, key: str, value: bool) -> None:
        pass


class _Closed(dict[str, Any]):
    """Stands in for the data of a closed store: every use raises."""

    def _fail(self, *args: object, **kwargs: object) -> NoReturn:
        raise StoreClosedError("this store is closed; open it again to use it")

    __getitem__ = __setitem__ = __delitem__ = __contains__ = __iter__ = __len__ = _fail
    __reversed__ = get = pop = items = keys = values = clear = update = _fail


CLOSED = _Closed()
