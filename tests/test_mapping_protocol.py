"""CPython's own mapping conformance suite, ``test.mapping_tests``, run against the POD.

``BasicTestMappingProtocol`` is the part of the suite that any mapping must
pass (``dict`` and ``UserDict`` run the larger subclasses, which also test
``fromkeys``, ``copy`` and comparisons a POD does not offer). It runs three
times on the file engine: with default settings, with ``sync_at=1`` and
``file_size=2`` (a sync after nearly every operation, spread over many data
files), and gzipped; then on the memory engine and on the PostgreSQL
engine, syncing constantly.

Every POD the suite creates lives in its own temporary directory. When a test
ends, each POD is closed and opened again, and must hold exactly what it held
in memory: the suite's operations must also have reached the disk intact.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
from test import mapping_tests

from tastypy import POD
from tastypy.storage.memory import MemoryStorage, MemoryStore

from _postgres import Server


class TestPODMappingProtocol(mapping_tests.BasicTestMappingProtocol):
    """The suite with default settings."""

    pod_settings: ClassVar[dict[str, Any]] = {}

    def type2test(self, *args: Any, **kwargs: Any) -> POD:
        """A fresh POD in a fresh directory, holding ``dict(*args, **kwargs)``."""
        tmp = tempfile.TemporaryDirectory(prefix="tastypy-mapping-")
        self.addCleanup(tmp.cleanup)
        pod = POD(Path(tmp.name) / "store", **self.pod_settings)
        self.addCleanup(self._close_and_check_reopened, pod)  # runs before tmp.cleanup
        pod.update(dict(*args, **kwargs))
        return pod

    def _reference(self) -> dict[str, Any]:
        # The suite's default reference holds the tuple (1, 2, 3), which JSON
        # stores as an array: a POD gives it back as a list once reloaded.
        # These values are all their own JSON round trip. The suite puts the
        # values of the first items in sets (test_read), so those must be
        # hashable; the last item is held out as the key "not in the mapping".
        return {
            "1": "2",
            "key1": "value1",
            "none": None,
            "number": 2.5,
            "nested": {"a": [1, 2.5, None, True, "x"], "b": {}},
        }

    def _close_and_check_reopened(self, pod: POD) -> None:
        if pod.closed:
            return
        path = pod.path
        in_memory = list(pod.items())
        pod.close()
        reopened = POD(path)
        try:
            assert list(reopened.items()) == in_memory
            assert (reopened.file_size, reopened.gzipped) == (pod.file_size, pod.gzipped)
        finally:
            reopened.close()


class TestPODMappingProtocolSyncingConstantly(TestPODMappingProtocol):
    """The suite again, syncing after nearly every operation, two values per data file."""

    pod_settings: ClassVar[dict[str, Any]] = {"sync_at": 1, "file_size": 2}


class TestPODMappingProtocolGzipped(TestPODMappingProtocol):
    """The suite again, with gzip-compressed data files."""

    pod_settings: ClassVar[dict[str, Any]] = {"gzipped": True}


class TestPODMappingProtocolInMemory(mapping_tests.BasicTestMappingProtocol):
    """The suite on the memory engine, syncing after nearly every operation."""

    _reference = TestPODMappingProtocol._reference

    def type2test(self, *args: Any, **kwargs: Any) -> POD:
        store = MemoryStore("mapping")
        pod = POD(storage=MemoryStorage(store), sync_at=1)
        self.addCleanup(self._close_and_check_reopened, pod, store)
        pod.update(dict(*args, **kwargs))
        return pod

    def _close_and_check_reopened(self, pod: POD, store: MemoryStore) -> None:
        if pod.closed:
            return
        in_memory = list(pod.items())
        pod.close()
        reopened = POD(storage=MemoryStorage(store, readonly=True))
        assert list(reopened.items()) == in_memory
        reopened.close()


class TestPODMappingProtocolOnPostgres(mapping_tests.BasicTestMappingProtocol):
    """The suite on the PostgreSQL engine (the session's real server), syncing constantly."""

    _reference = TestPODMappingProtocol._reference
    url = ""
    names = itertools.count()

    @pytest.fixture(autouse=True)
    def _server(self, pg_server: Server) -> None:
        type(self).url = pg_server.url()

    def type2test(self, *args: Any, **kwargs: Any) -> POD:
        name = f"mapping-{os.getpid()}-{next(self.names)}"
        pod = POD(self.url, name=name, sync_at=1)
        self.addCleanup(self._close_and_check_reopened, pod, name)
        pod.update(dict(*args, **kwargs))
        return pod

    def _close_and_check_reopened(self, pod: POD, name: str) -> None:
        if pod.closed:
            return
        in_memory = list(pod.items())
        pod.close()
        reopened = POD(self.url, name=name, readonly=True)
        assert list(reopened.items()) == in_memory
        reopened.close()
