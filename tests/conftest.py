from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tastypy

from _postgres import Server, find_bin


@pytest.fixture
def open_pods() -> Iterator[list[tastypy.POD]]:
    """PODs a test opened; closed at teardown so no lock outlives the test."""
    pods: list[tastypy.POD] = []
    yield pods
    for pod in pods:
        if not pod.closed:
            pod.close()


@pytest.fixture
def make_pod(tmp_path: Path, open_pods: list[tastypy.POD]) -> Callable[..., tastypy.POD]:
    """``make_pod(name="store", **settings)`` opens a POD under tmp_path."""

    def make(name: str = "store", **settings: object) -> tastypy.POD:
        pod = tastypy.POD(tmp_path / name, **settings)  # type: ignore[arg-type]
        open_pods.append(pod)
        return pod

    return make


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """A real PostgreSQL server for the session (``tests/_postgres.py``), stopped at the end.

    Without PostgreSQL on the machine the tests that need it skip, except
    under CI (``CI`` set), where they fail: CI must run them.
    """
    bin_dir = find_bin()
    if bin_dir is None:
        message = "no PostgreSQL here (initdb not found; set TASTYPY_TEST_PG_BIN)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = Server(bin_dir)
    try:
        yield server
    finally:
        server.close()


_pg_names = itertools.count()


@pytest.fixture
def pg_name() -> str:
    """A store name no other test of this session uses."""
    return f"t{os.getpid()}-{next(_pg_names)}"
