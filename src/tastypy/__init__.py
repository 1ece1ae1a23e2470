"""tastypy: persistent ordered dicts that survive crashes.

See the README for the user's manual.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import (
    ConnectionFailedError,
    CorruptStoreError,
    DuplicateKeyError,
    LockedError,
    NotAStoreError,
    PathExistsError,
    ReadOnlyError,
    SettingsError,
    StoreClosedError,
    TastypyError,
)
from .pod import POD, PersistentOrderedDict
from .tracker._tracker import ProgressTracker, Tracker

if TYPE_CHECKING:
    from ._verify_repair import repair, verify
    from .storage.damage import RepairReport, VerifyReport

__all__ = [
    "POD",
    "ConnectionFailedError",
    "CorruptStoreError",
    "DuplicateKeyError",
    "LockedError",
    "NotAStoreError",
    "PathExistsError",
    "PersistentOrderedDict",
    "ProgressTracker",
    "ReadOnlyError",
    "RepairReport",
    "SettingsError",
    "StoreClosedError",
    "TastypyError",
    "Tracker",
    "VerifyReport",
    "repair",
    "verify",
]

__version__ = "0.1.0.dev0"

# verify, repair and their reports are imported when first used: a program
# that never checks or repairs a store does not pay for their import.
_LAZY = {
    "verify": "._verify_repair",
    "repair": "._verify_repair",
    "VerifyReport": ".storage.damage",
    "RepairReport": ".storage.damage",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


# No handler on "tastypy" itself: a warning that data was discarded or could
# not be written (a torn tail cut off, a failed compaction or exit sync) must
# reach the user, and Python's last-resort handler prints WARNING and above to
# stderr when the program configured no logging. The tracker's reports of
# failed tasks are routine and stay quiet unless logging is configured.
logging.getLogger("tastypy.tracker.run").addHandler(logging.NullHandler())
