"""Storage engines: how a store's bytes reach the disk (or stay in memory).

This package's top level is the engine-neutral protocol only
(:mod:`.protocol`); the engines are :mod:`.files` and :mod:`.memory`,
:mod:`.engines` picks one for a target (and answers what the layers above
ask of a target without opening it), and :mod:`.damage` holds what verify and
repair report, and the hooks through which the layers above add their checks.
Nothing here imports the layers above (tests/test_layers.py checks it).
"""

from __future__ import annotations

from ._merge import Merge
from .protocol import CAPABILITIES, Claims, Counts, OnDemand, Shared, Storage

__all__ = ["CAPABILITIES", "Claims", "Counts", "Merge", "OnDemand", "Shared", "Storage"]
