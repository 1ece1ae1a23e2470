"""The engine contract: every storage engine, one suite (the fsspec way).

The tests in this folder take the ``engine`` fixture and so run once per
engine in :data:`_engines.ENGINES`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tastypy.storage import Storage

from _engines import Engine, Files, Memory, Postgres


@pytest.fixture(params=["files", "memory", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """One engine's fresh store; every storage opened through it is closed afterwards."""
    made: Engine
    if request.param == "files":
        made = Files(tmp_path)
    elif request.param == "memory":
        made = Memory()
    else:
        made = Postgres(request.getfixturevalue("pg_server"), request.getfixturevalue("pg_name"))
    opened: list[Storage] = []
    real_open = made.open

    def tracked(*, readonly: bool = False) -> Storage:
        storage = real_open(readonly=readonly)
        opened.append(storage)
        return storage

    real_open_shared = made.open_shared

    def tracked_shared() -> Storage:
        storage = real_open_shared()
        opened.append(storage)
        return storage

    made.open = tracked  # type: ignore[method-assign]
    made.open_shared = tracked_shared  # type: ignore[method-assign]
    yield made
    for storage in opened:
        storage.close()
