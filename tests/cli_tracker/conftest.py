"""Stores the tracker command tests start from."""

from __future__ import annotations

from pathlib import Path

import pytest

import tastypy

from _tracker_commands import KEYS, STATES, _work


@pytest.fixture
def tracker_store(tmp_path: Path) -> Path:
    """A tracker with tasks in every state: see STATES (max_tries 2)."""
    path = tmp_path / "jobs.tracker"
    with tastypy.Tracker(path, max_tries=2) as tracker:
        tracker.add_many(KEYS)
        tracker.run(_work, [*STATES["done"][:3], *STATES["failed"], "task-07"], progress=False)
        tracker.run(_work, ["task-07"], progress=False)  # its second try: exhausted
        tracker.mark_done("task-03")  # done without a try
        tracker.abort("task-08")
    return path


@pytest.fixture
def pod_store(tmp_path: Path) -> Path:
    path = tmp_path / "plain.pod"
    with tastypy.POD(path) as pod:
        pod["a"] = {"x": 1}
        pod["b"] = [1, 2]
    return path
