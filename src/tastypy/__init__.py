"""tastypy: persistent ordered dicts that survive crashes.

See the README for the user's manual.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import (
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
from .storage.files.verify import VerifyReport, verify
from .tracker._tracker import ProgressTracker, Tracker

__all__ = [
    "POD",
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

if TYPE_CHECKING:
    from .storage.files.repair import RepairReport, repair


def __getattr__(name: str) -> Any:
    # repair() and its salvage scan are imported when first asked for: a
    # program that never repairs a store should not pay for their import.
    if name in ("repair", "RepairReport"):
        from .storage.files import repair as module  # noqa: PLC0415

        return getattr(module, name)
    raise AttributeError(f"module 'tastypy' has no attribute {name!r}")


# No handler on "tastypy" itself: a warning that data was discarded or could
# not be written (a torn tail cut off, a failed compaction or exit sync) must
# reach the user, and Python's last-resort handler prints WARNING and above to
# stderr when the program configured no logging. The tracker's reports of
# failed tasks are routine and stay quiet unless logging is configured.
logging.getLogger("tastypy.tracker.run").addHandler(logging.NullHandler())
