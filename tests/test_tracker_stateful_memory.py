"""The tracker's model-based test again, on the memory engine (see test_tracker_stateful.py).

The machine is the same; what differs is where the store is. A
:class:`MemoryStore` outlives each open of it, so closing the tracker and
opening a new :class:`MemoryStorage` of the same store is what reopening the
directory is on files: the records, ``max_tries`` and the tries log must come
back as they were. The machine has no rule that kills a process or reads
files, so every rule runs here too; the plain examples of
test_tracker_stateful.py that do (a SIGKILLed writer's tries.jsonl) stay on
files.
"""

from __future__ import annotations

import pytest

from tastypy import LockedError, ProgressTracker
from tastypy.storage.memory import MemoryStorage, MemoryStore

from test_tracker_stateful import TrackerMachine


class MemoryTrackerMachine(TrackerMachine):
    """The tracker on a :class:`MemoryStorage`, driven alongside the same dict of records."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = MemoryStore("tracker machine")

    def open_store(self, max_tries: int | None) -> ProgressTracker:
        if self.tracker is not None:  # closed by close_and_reopen; its store is free again
            assert self.tracker.closed
        tracker = ProgressTracker(
            storage=MemoryStorage(self.memory), sync_at=self.sync_at, max_tries=max_tries
        )
        assert tracker.path is None
        with pytest.raises(LockedError):  # one writer per store, as with files
            MemoryStorage(self.memory)
        return tracker


MemoryTrackerMachine.TestCase.settings = TrackerMachine.TestCase.settings
TestTrackerCountsOnMemory = MemoryTrackerMachine.TestCase
