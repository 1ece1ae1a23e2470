"""Storage engines: how a store's bytes reach the disk.

The mapping layer (:mod:`tastypy.pod`) keeps the data in memory and decides
*when* to sync; an engine decides *how*. They meet at :class:`Storage`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from .files import FileStorage

__all__ = ["FileStorage", "Storage"]


class Storage(Protocol):
    """What :class:`~tastypy.PersistentOrderedDict` needs from an engine.

    ``load`` returns decoded values, in a dict the caller then owns: an engine
    reads a record and its value in one pass (one JSON parse per data file for
    the file engine, the driver's own decoding for a database), so handing over
    bytes would parse twice, and a dict needs no second copy of the index.
    """

    readonly: bool
    durable: bool

    @property
    def file_size(self) -> int:
        """At most this many records per data file."""
        ...

    @property
    def gzipped(self) -> bool:
        """Whether data files are gzip-compressed."""
        ...

    @property
    def meta(self) -> dict[str, Any]:
        """Settings of the mapping layer, stored with the data."""
        ...

    def set_meta(self, meta: dict[str, Any]) -> None:
        """Durably replace the mapping layer's settings."""
        ...

    def load(self) -> dict[str, Any]:
        """Everything as of the last commit, in order, as a new dict."""
        ...

    def commit(self, changes: Iterable[tuple[str, bytes | None]]) -> None:
        """One atomic, durable batch: ``None`` deletes; a new key goes to the end.

        *changes* may be a generator; if it raises, nothing is committed.
        """
        ...

    def compact(self) -> None:
        """Fold pending commits into the engine's main form now (may do nothing)."""
        ...

    def close(self) -> None:
        """Release resources (the write lock). Idempotent."""
        ...
