from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tastypy


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
