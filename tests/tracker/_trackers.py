"""Checks shared by the tracker tests: a reopen, a brute-force recount, a store's files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import tastypy
from tastypy import ProgressTracker

OpenTracker = Callable[..., ProgressTracker]


def reopen(
    tracker: ProgressTracker, open_pods: list[tastypy.POD], **settings: Any
) -> ProgressTracker:
    """Close *tracker* (syncing it) and open its store again."""
    tracker.close()
    again = ProgressTracker(tracker.path, **settings)
    open_pods.append(again)
    return again


def brute_counts(tracker: ProgressTracker) -> dict[str, int]:
    """Recount done/tried/aborted/exhausted from scratch over ``tracker.items()``."""
    limit = tracker.max_tries or 0
    counts = dict.fromkeys(("done", "tried", "aborted", "exhausted"), 0)
    for _key, record in tracker.items():
        tries = record.get("_tries")
        tries = tries if type(tries) is int else 0
        done = bool(record.get("_done"))
        counts["done"] += done
        counts["tried"] += tries > 0
        counts["aborted"] += bool(record.get("_aborted"))
        counts["exhausted"] += (not done) and bool(limit) and tries >= limit
    return counts


def assert_counts(tracker: ProgressTracker) -> dict[str, int]:
    """The tracker's incremental counts equal a brute-force recount.

    The tracker is asked first: reading ``items()`` touches every record, which
    would hide counts that had gone stale.
    """
    counted = {
        "done": tracker.num_done(),
        "tried": tracker.num_tried(),
        "aborted": tracker.num_aborted(),
        "exhausted": tracker.num_exhausted(),
    }
    fractions = (tracker.fraction_done(), tracker.fraction_tried(), tracker.fraction_aborted())
    expected = brute_counts(tracker)
    assert counted == expected
    n = len(tracker)
    assert fractions == tuple(
        (expected[name] / n if n else 0.0) for name in ("done", "tried", "aborted")
    )
    return counted


def store_files(path: Path) -> dict[str, bytes]:
    """Every file of a store, by relative name, with its bytes."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }
