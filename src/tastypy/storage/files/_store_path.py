"""The path a user gives for a store: refused early, and clearly, if it cannot be one.

The path itself is the user's choice, so a symbolic link to a store is
followed (unlike the files inside a store, see :mod:`._fs`). What is refused
here is what would otherwise surface as a bare ``OSError`` or, worse, as a
store made somewhere the user did not mean: an empty path (which ``Path``
reads as the current directory), a link to nothing, a loop of links.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ...errors import NotAStoreError

__all__ = ["store_path"]


def store_path(path: str | os.PathLike[str]) -> Path:
    """*path* as a :class:`Path`, or :class:`NotAStoreError` saying why it cannot name a store."""
    text = os.fspath(path)
    if not isinstance(text, str):
        kind = type(text).__name__
        raise TypeError(f"a store's path must be str or os.PathLike[str], not {kind}")
    if not text:
        raise NotAStoreError("an empty path names no store; give a directory, e.g. 'results.pod'")
    where = Path(text)
    try:
        os.stat(where)
    except FileNotFoundError:
        if where.is_symlink():
            target = os.readlink(where)
            raise NotAStoreError(
                f"{where} is a symbolic link to {target}, which does not exist; "
                "remove the link or create what it points to"
            ) from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise NotAStoreError(
                f"{where}: a part of this path is a file, not a directory"
            ) from None
        if exc.errno == errno.ELOOP:
            raise NotAStoreError(
                f"{where} is a symbolic link that loops (or one of its parent directories is)"
            ) from None
        raise  # e.g. a parent directory one may not search: the OS error says it best
    return where
