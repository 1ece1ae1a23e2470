"""The engines the contract suite runs against, and how it reaches each one.

Each engine gets one :class:`Engine` subclass: how to open its store, and
how to make its I/O fail if it has any. A new engine (PostgreSQL) adds a
class here and a name in ``conftest.py``, and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tastypy.storage import Storage
from tastypy.storage.files import FileStorage
from tastypy.storage.files._shared import SharedFileStorage
from tastypy.storage.memory import MemoryStorage, MemoryStore

from _faults import failing


class Engine:
    """How the contract tests reach one engine's store."""

    name = "?"
    has_io = True  # whether failing_io() can make a commit fail

    def open(self, *, readonly: bool = False) -> Storage:
        """Open the store under test (creating it on the first writable open)."""
        raise NotImplementedError

    def open_shared(self) -> Storage:
        """Open the store under test as one of several writers (capability "shared")."""
        pytest.skip(f"the {self.name} engine has no shared opens yet")

    def failing_io(self) -> contextlib.AbstractContextManager[Any]:
        """Within the block, every write of the engine fails with an OSError."""
        raise NotImplementedError


class Files(Engine):
    name = "files"

    def __init__(self, root: Path) -> None:
        self.path = root / "store"

    def open(self, *, readonly: bool = False) -> Storage:
        # Small data files, so a few keys already span several of them.
        if readonly:
            return FileStorage(self.path, readonly=True)
        return FileStorage(self.path, file_size=3)

    def open_shared(self) -> Storage:
        return SharedFileStorage(self.path, file_size=3)

    @contextlib.contextmanager
    def failing_io(self) -> Iterator[None]:
        with failing("write", 1), failing("pwrite", 1):
            yield


class Memory(Engine):
    name = "memory"
    has_io = False

    def __init__(self) -> None:
        self.store = MemoryStore("contract")

    def open(self, *, readonly: bool = False) -> Storage:
        return MemoryStorage(self.store, readonly=readonly)

    def open_shared(self) -> Storage:
        return MemoryStorage(self.store, shared=True)

    def failing_io(self) -> contextlib.AbstractContextManager[Any]:
        pytest.skip("the memory engine does no I/O that could fail")


ENGINES = {"files": Files, "memory": Memory}
