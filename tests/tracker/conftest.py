"""Fixtures of the tracker tests: trackers under tmp_path, closed at teardown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy import ProgressTracker

from _trackers import OpenTracker


@pytest.fixture
def open_tracker(tmp_path: Path, open_pods: list[tastypy.POD]) -> OpenTracker:
    """``open_tracker(name="tracker", **settings)`` opens a tracker under tmp_path.

    Every tracker opened this way is closed at teardown.
    """

    def open_(name: str | Path = "tracker", **settings: Any) -> ProgressTracker:
        tracker = ProgressTracker(tmp_path / name, **settings)
        open_pods.append(tracker)
        return tracker

    return open_


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "tracker"
