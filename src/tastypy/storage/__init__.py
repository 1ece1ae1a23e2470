"""Storage engines: how a store's bytes reach the disk (or stay in memory).

This package's top level is the engine-neutral protocol only
(:mod:`.protocol`); the engines are :mod:`.files` and :mod:`.memory`, and
:mod:`.engines` picks one for a target.
"""

from __future__ import annotations

from .protocol import CAPABILITIES, ChangesSince, Claims, Counts, OnDemand, Storage

__all__ = ["CAPABILITIES", "ChangesSince", "Claims", "Counts", "OnDemand", "Storage"]
