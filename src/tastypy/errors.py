"""Exceptions raised by tastypy.

Every error derives from :class:`TastypyError` and also from the builtin
exception a caller would naturally catch, so ``except KeyError`` or
``except OSError`` keeps working in code that knows nothing about tastypy.
"""

from __future__ import annotations

__all__ = [
    "ConnectionFailedError",
    "CorruptStoreError",
    "DuplicateKeyError",
    "LockedError",
    "NotAStoreError",
    "PathExistsError",
    "ReadOnlyError",
    "SettingsError",
    "StoreClosedError",
    "TastypyError",
]


class TastypyError(Exception):
    """Base class of every error raised by tastypy."""


class ConnectionFailedError(TastypyError, ConnectionError):
    """A database server cannot be reached, refused the login, or was lost for too long.

    The message names the server (never its password) and the store.
    """


class CorruptStoreError(TastypyError, ValueError):
    """A store's files are damaged; the message names the file and line."""


class DuplicateKeyError(TastypyError, KeyError):
    """A task was added to a tracker that already holds it."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class LockedError(TastypyError, OSError):
    """Another process (or object) holds the store open for writing.

    The message names the store's path and the process holding it.
    """


class NotAStoreError(TastypyError, ValueError):
    """The path exists but is not a tastypy store (and cannot become one)."""


class PathExistsError(TastypyError, FileExistsError):
    """A path tastypy was asked to create (e.g. a repaired store's) already exists."""


class SettingsError(TastypyError, ValueError):
    """An explicit setting conflicts with the one the store was created with."""


class StoreClosedError(TastypyError, ValueError):
    """The store was closed; like I/O on a closed file, this is a ValueError."""


class ReadOnlyError(TastypyError, PermissionError):
    """A change was attempted on a store opened with ``readonly=True``."""
