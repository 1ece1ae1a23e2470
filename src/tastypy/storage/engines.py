"""Which engine serves a store: the one place that maps a target to an engine.

A filesystem path gives the file engine. (A ``postgresql://`` URL will give
the PostgreSQL engine.) The POD and the tracker open every store through
:func:`open_engine`; a caller with an engine object of its own passes it as
``storage=`` instead.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import SettingsError
from .files._engine import FileStorage
from .protocol import Storage

__all__ = ["FILE_OPTIONS", "open_engine"]

FILE_OPTIONS = ("file_size", "gzipped")
_URL_SCHEMES = ("postgresql://", "postgres://")


def open_engine(
    target: str | os.PathLike[str],
    *,
    readonly: bool = False,
    durable: bool = True,
    timeout: float | None = 0.0,
    new: bool = False,
    shared: bool = False,
    options: dict[str, Any] | None = None,
) -> Storage:
    """Open the store at *target* with the engine that serves it.

    *options* are the engine's own settings (``None`` values: the stored or
    default ones); *new* refuses a store that already exists. *shared* opens
    it as one of several writers (``docs/SHARED.md``); read-only opens are
    the same either way.

    Raises
    ------
    SettingsError
        For an option the engine does not have, or a target no engine serves.
    FileExistsError
        With *new*, if a store is there already.
    """
    given = {name: value for name, value in (options or {}).items() if value is not None}
    text = os.fspath(target)
    if isinstance(text, str) and text.lower().startswith(_URL_SCHEMES):
        raise SettingsError(
            f"{text.split('@')[-1]}: tastypy has no PostgreSQL engine yet; give a directory"
        )
    unknown = sorted(set(given) - set(FILE_OPTIONS))
    if unknown:
        raise SettingsError(f"the file engine has no setting {', '.join(unknown)}")
    if shared and not readonly:
        from .files._shared import SharedFileStorage  # noqa: PLC0415  # only shared opens need it

        return SharedFileStorage(
            target,
            durable=durable,
            timeout=timeout,
            new=new,
            file_size=given.get("file_size"),
            gzipped=given.get("gzipped"),
        )
    return FileStorage(
        target,
        readonly=readonly,
        durable=durable,
        timeout=timeout,
        new=new,
        file_size=given.get("file_size"),
        gzipped=given.get("gzipped"),
    )
