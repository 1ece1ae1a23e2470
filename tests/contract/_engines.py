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
from tastypy.storage.postgres import PostgresStorage

from _faults import failing
from _postgres import Server


class Engine:
    """How the contract tests reach one engine's store."""

    name = "?"
    has_io = True  # whether failing_io() can make a commit fail
    exclusive = True  # whether a second writable open is refused (LockedError)

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


class Postgres(Engine):
    """A store of the session's real PostgreSQL server; every writable open is shared."""

    name = "postgres"
    exclusive = False

    def __init__(self, server: Server, store: str) -> None:
        self.server = server
        self.url = server.url()
        self.store = store

    def open(self, *, readonly: bool = False) -> Storage:
        return PostgresStorage(self.url, self.store, readonly=readonly)

    def open_shared(self) -> Storage:
        return PostgresStorage(self.url, self.store)

    @contextlib.contextmanager
    def failing_io(self) -> Iterator[None]:
        """Every write of the engine's tables fails: a trigger raises, on the server."""
        tables = ("records", "stores", "side_logs")
        self.server.psql(
            "CREATE FUNCTION tastypy.injected() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;"
            + "".join(
                f"CREATE TRIGGER injected BEFORE INSERT OR UPDATE OR DELETE ON tastypy.{table} "
                "FOR EACH ROW EXECUTE FUNCTION tastypy.injected();"
                for table in tables
            )
        )
        try:
            yield
        finally:
            self.server.psql("DROP FUNCTION tastypy.injected() CASCADE")


ENGINES = {"files": Files, "memory": Memory, "postgres": Postgres}
