"""Which engine serves a store: the one place that maps a target to an engine.

A filesystem path gives the file engine. (A ``postgresql://`` URL will give
the PostgreSQL engine.) The POD and the tracker open every store through
:func:`open_engine`; a caller with an engine object of its own passes it as
``storage=`` instead. :func:`verify` and :func:`repair` go through here too.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import SettingsError
from .damage import ContentChecks, VerifyReport
from .files import verify as _file_verify
from .files._engine import FileStorage
from .protocol import Storage

if TYPE_CHECKING:
    from .damage import RepairReport

__all__ = [
    "FILE_OPTIONS",
    "open_engine",
    "repair",
    "verify",
]

FILE_OPTIONS = ("file_size", "gzipped")
_URL_SCHEMES = ("postgresql://", "postgres://")


def _is_url(text: object) -> bool:
    return isinstance(text, str) and text.lower().startswith(_URL_SCHEMES)


def _for_files(target: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """*target*, as given, once it is known to be the file engine's (a path)."""
    text = os.fspath(target)
    if _is_url(text):
        assert isinstance(text, str)
        raise SettingsError(
            f"{text.split('@')[-1]}: tastypy has no PostgreSQL engine yet; give a directory"
        )
    return target


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
    _for_files(target)
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


def verify(target: str | os.PathLike[str], *, checks: ContentChecks) -> VerifyReport:
    """Check every part of the store at *target*, and *checks* on what it holds.

    See :func:`tastypy.verify`, which gives the layers' *checks*.
    """
    return _file_verify.verify(_for_files(target), checks=checks)


def repair(
    target: str | os.PathLike[str],
    output: str | os.PathLike[str] | None,
    *,
    in_place: bool,
    accept_edits: bool,
    timeout: float | None,
    checks: ContentChecks,
) -> RepairReport:
    """Save what is intact in the store at *target*: see :func:`tastypy.repair`."""
    # Imported when first asked for: a program that never repairs a store
    # should not pay for the import of the salvage scan.
    from .files import repair as file_repair  # noqa: PLC0415

    return file_repair.repair(
        _for_files(target),
        output,
        in_place=in_place,
        accept_edits=accept_edits,
        timeout=timeout,
        checks=checks,
    )
