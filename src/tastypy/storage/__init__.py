"""Storage engines: how a store's bytes reach the disk (or stay in memory).

This package's top level is the engine-neutral protocol only
(:mod:`.protocol`); the engines are :mod:`.files` and :mod:`.memory`, and
:mod:`.engines` picks one for a target.
"""

from __future__ import annotations

from ._merge import Merge
from .protocol import CAPABILITIES, Claims, Counts, OnDemand, Shared, Storage

__all__ = ["CAPABILITIES", "Claims", "Counts", "Merge", "OnDemand", "Shared", "Storage"]
