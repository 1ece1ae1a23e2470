"""What the file engine tells of a path without opening the store there.

:mod:`tastypy.storage.engines` asks these for a path, so that the layers
above never look at a store's files themselves: whether a store is there,
who writes to it, and what names it in the registry of open stores.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..protocol import Member, Probe
from ._layout import lost_manifest
from ._lock import holder_pid
from ._lock import log as _lock_log
from ._manifest import MANIFEST
from ._store_path import store_path

__all__ = ["cosmetic", "is_store", "members", "probe", "store_key", "writers"]


def probe(path: Path) -> Probe:
    """Whether *path* holds a store, nothing, something else, or a store's data alone.

    Raises
    ------
    CorruptStoreError
        If a journal there is not a regular file (a link is never followed).
    OSError
        If the directory cannot be listed.
    """
    if not path.exists():
        return Probe("missing")
    if (path / MANIFEST).is_file():
        return Probe("store")
    lost = lost_manifest(path) if path.is_dir() else None
    if lost is not None:  # a store's data without its manifest: damage, not a stranger
        return Probe("damaged", str(lost))
    return Probe("other", f"no {MANIFEST}")


def is_store(path: Path) -> bool:
    """Whether *path* holds a store (its manifest), without looking further."""
    return (path / MANIFEST).is_file()


def writers(path: Path) -> list[int]:
    """The process holding *path* open for writing: one pid, or none.

    The file engine has one writer at a time. Its pid is the one the OS says
    holds the lock (0 where the OS says it is held, but not by whom).
    """
    pid = holder_pid(path)
    return [] if pid is None else [pid]


def members(path: Path) -> list[Member]:
    """The live shared writers of the store at *path*, oldest first, with their claims."""
    from ._claims import count_claims  # noqa: PLC0415  # shared stores only
    from ._writers import live_writers  # noqa: PLC0415

    found = []
    for writer in live_writers(path):
        holding, claims = count_claims(path, writer.id)
        found.append(Member(writer.pid, writer.since, holding, claims))
    return found


def store_key(path: str | os.PathLike[str]) -> str:
    """The store's identity in this process: its real path.

    Raises
    ------
    NotAStoreError
        If *path* cannot name a store (empty, a link to nothing, a loop).
    """
    return os.path.realpath(store_path(path))


def cosmetic(record: logging.LogRecord) -> bool:
    """Whether *record* is the lock's note of who holds it (a full disk may refuse it)."""
    return record.name == _lock_log.name
