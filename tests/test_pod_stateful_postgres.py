"""The POD's model-based test again, on the PostgreSQL engine (see test_pod_stateful.py).

The machine is the same as on the memory engine; each run is a new store of
the session's real server, and the committed state is read back by a
read-only open of it. Every writable open is shared here, so a second open
is not refused: the rule that checks that is the memory machine's.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from tastypy import POD, StoreClosedError
from tastypy._window import Window
from tastypy.storage.postgres import PostgresStorage

from _postgres import Server
from test_pod_stateful import BOUNDED, SYNC_ATS, Model, PODMachine, same


class PostgresPODMachine(PODMachine):
    """The POD on a store of the session's PostgreSQL server, driven alongside the model."""

    url: ClassVar[str] = ""
    reader_url: ClassVar[str] = ""  # the Unix socket, no password to check: quicker to open
    names = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.name = self._new_name()
        self.readers: dict[
            str, PostgresStorage
        ] = {}  # one per store: a connection is slow to make

    def _new_name(self) -> str:
        return f"machine-{os.getpid()}-{next(self.names)}"

    def committed(self, where: Any = None) -> list[tuple[str, Any]]:
        name = self.name if where is None else where
        reader = self.readers.get(name)
        if reader is None:
            reader = self.readers[name] = PostgresStorage(self.reader_url, name, readonly=True)
        return list(reader.load().items())

    def teardown(self) -> None:
        super().teardown()
        for reader in self.readers.values():
            reader.close()

    def check_whole(self, records: int) -> None:
        assert len(self.committed()) == records

    @initialize(sync_at=SYNC_ATS)
    def open_store(self, sync_at: int) -> None:  # type: ignore[override]
        self.pod = POD(self.url, name=self.name, sync_at=sync_at)
        self.model = Model(sync_at=sync_at)
        assert self.store.sync_at == sync_at
        assert self.store.path is None
        assert self.store.shared
        with pytest.raises(AttributeError, match="file_size"):
            _ = self.store.file_size

    @rule(sync_at=st.none() | SYNC_ATS)
    def close_and_reopen(self, sync_at: int | None) -> None:
        old = self.store
        old.close()
        with pytest.raises(StoreClosedError):
            old["a"] = 1
        self.model.sync()  # close() syncs first
        self.pod = POD(self.url, name=self.name, sync_at=sync_at)
        self.model.held = False
        if sync_at is not None:
            self.model.sync_at = sync_at
        assert self.store.sync_at == self.model.sync_at  # stored with the data
        self.refs.clear()

    @rule()
    def copy_elsewhere(self) -> None:  # type: ignore[override]
        old, old_states = self.name, self.model.disk_states()
        self.name = self._new_name()
        self.store.copy(self.url, name=self.name)
        self.model.sync()  # everything is written to the new place, hold or not
        left = self.committed(old)  # left as of its last sync
        assert any(same(left, state) for state in old_states), (left, old_states)


PostgresPODMachine.TestCase.settings = BOUNDED


class _OnTheServer:
    """The session's server, for the machines' test cases (a fixture they all take)."""

    @pytest.fixture(autouse=True)
    def _server(self, pg_server: Server) -> None:
        PostgresPODMachine.url = pg_server.url()
        PostgresPODMachine.reader_url = pg_server.socket_url()


class TestPODStatefulOnPostgres(_OnTheServer, PostgresPODMachine.TestCase):  # type: ignore[misc,valid-type]
    pass


class SmallWindowMachine(PostgresPODMachine):
    """The same, with a window of 3 values read 2 keys a page: values come and go all the time.

    A store served on demand keeps few values in memory (``_window.py``);
    the values that must stay (dirty, or reachable by the program) stay
    whatever the bound, so nested mutation and handed-out values work as
    with everything cached.
    """

    def __init__(self) -> None:
        super().__init__()
        self._bounds = Window.capacity, Window.page_size
        Window.capacity, Window.page_size = 3, 2

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            Window.capacity, Window.page_size = self._bounds


SmallWindowMachine.TestCase.settings = BOUNDED


class TestPODStatefulOnPostgresSmallWindow(_OnTheServer, SmallWindowMachine.TestCase):  # type: ignore[misc,valid-type]
    pass
