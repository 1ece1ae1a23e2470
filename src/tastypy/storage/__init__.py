"""Storage engines: how a store's bytes reach the disk (or stay in memory).

This package's top level is the engine-neutral protocol only
(:mod:`.protocol`); the engines are :mod:`.files` and :mod:`.memory`,
:mod:`.engines` picks one for a target (and answers what the layers above
ask of a target without opening it), and :mod:`.damage` holds what verify and
repair report, and the hooks through which the layers above add their checks.
Nothing here imports the layers above (tests/test_layers.py checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .protocol import CAPABILITIES, Claims, Counts, OnDemand, Shared, Storage

if TYPE_CHECKING:
    from ._merge import Merge

__all__ = ["CAPABILITIES", "Claims", "Counts", "Merge", "OnDemand", "Shared", "Storage"]


def __getattr__(name: str) -> Any:
    # Merge is needed only by shared stores: imported when first asked for.
    if name == "Merge":
        from ._merge import Merge  # noqa: PLC0415

        return Merge
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
