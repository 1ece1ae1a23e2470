"""tastypy: persistent ordered dicts that survive crashes.

See the README for the user's manual.
"""

from __future__ import annotations

import logging

from ._verify_repair import repair, verify
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
from .storage.damage import RepairReport, VerifyReport
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

# repair()'s salvage scan is imported when repair is first called (see
# tastypy.storage.engines.repair): a program that never repairs a store does
# not pay for its import.

# No handler on "tastypy" itself: a warning that data was discarded or could
# not be written (a torn tail cut off, a failed compaction or exit sync) must
# reach the user, and Python's last-resort handler prints WARNING and above to
# stderr when the program configured no logging. The tracker's reports of
# failed tasks are routine and stay quiet unless logging is configured.
logging.getLogger("tastypy.tracker.run").addHandler(logging.NullHandler())
