"""Helpers shared by test modules."""

from __future__ import annotations

from pathlib import Path

import tastypy


def reopen(pod: tastypy.POD, **settings: object) -> tastypy.POD:
    """Close *pod* (syncing it) and open its store again."""
    pod.close()
    return tastypy.POD(pod.path, **settings)  # type: ignore[arg-type]


def on_disk(path: Path) -> list[tuple[str, object]]:
    """The store's synced contents, in order, read without locking."""
    reader = tastypy.POD(path, readonly=True)
    try:
        return list(reader.items())
    finally:
        reader.close()
