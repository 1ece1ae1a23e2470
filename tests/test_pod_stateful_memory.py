"""The POD's model-based test again, on the memory engine (see test_pod_stateful.py).

The machine is the same; what differs is how the store is opened, reopened
and copied (an engine object instead of a path), and how the committed state
is read back (a read-only open of the same :class:`MemoryStore`).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from tastypy import POD, LockedError, StoreClosedError
from tastypy.storage.memory import MemoryStorage, MemoryStore

from test_pod_stateful import BOUNDED, SYNC_ATS, Model, PODMachine, same


class MemoryPODMachine(PODMachine):
    """The POD on a :class:`MemoryStorage`, driven alongside the same model."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = MemoryStore("machine")

    def committed(self, where: Any = None) -> list[tuple[str, Any]]:
        reader = MemoryStorage(self.memory if where is None else where, readonly=True)
        try:
            return list(reader.load().items())
        finally:
            reader.close()

    def check_whole(self, records: int) -> None:
        assert len(self.committed()) == records

    @initialize(sync_at=SYNC_ATS)
    def open_store(self, sync_at: int) -> None:  # type: ignore[override]
        self.pod = POD(storage=MemoryStorage(self.memory), sync_at=sync_at)
        self.model = Model(sync_at=sync_at)
        assert self.store.sync_at == sync_at
        assert self.store.path is None
        with pytest.raises(AttributeError, match="file_size"):
            _ = self.store.file_size

    @rule(sync_at=st.none() | SYNC_ATS)
    def close_and_reopen(self, sync_at: int | None) -> None:
        old = self.store
        with pytest.raises(LockedError):  # one writer per store, as with files
            MemoryStorage(self.memory)
        old.close()
        with pytest.raises(StoreClosedError):
            old["a"] = 1
        self.model.sync()  # close() syncs first
        self.pod = POD(storage=MemoryStorage(self.memory), sync_at=sync_at)
        self.model.held = False
        if sync_at is not None:
            self.model.sync_at = sync_at
        assert self.store.sync_at == self.model.sync_at  # stored with the data
        self.refs.clear()

    @rule()
    def copy_elsewhere(self) -> None:  # type: ignore[override]
        old, old_states = self.memory, self.model.disk_states()
        self.memory = MemoryStore(f"copy of {old.name}")
        self.store.copy(MemoryStorage(self.memory))
        self.model.sync()  # everything is written to the new place, hold or not
        left = self.committed(old)  # left as of its last sync
        assert any(same(left, state) for state in old_states), (left, old_states)


MemoryPODMachine.TestCase.settings = BOUNDED
TestPODStatefulOnMemory = MemoryPODMachine.TestCase
