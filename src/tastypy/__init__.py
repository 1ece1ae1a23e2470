"""tastypy: persistent ordered dicts that survive crashes.

See the README for the user's manual.
"""

from __future__ import annotations

import logging

from .errors import (
    CorruptStoreError,
    DuplicateKeyError,
    LockedError,
    NotAStoreError,
    ReadOnlyError,
    SettingsError,
    StoreClosedError,
    TastypyError,
)
from .pod import POD, PersistentOrderedDict
from .storage.verify import VerifyReport, verify
from .tracker import ProgressTracker, Tracker

__all__ = [
    "POD",
    "CorruptStoreError",
    "DuplicateKeyError",
    "LockedError",
    "NotAStoreError",
    "PersistentOrderedDict",
    "ProgressTracker",
    "ReadOnlyError",
    "SettingsError",
    "StoreClosedError",
    "TastypyError",
    "Tracker",
    "VerifyReport",
    "verify",
]

__version__ = "0.1.0.dev0"

# A library configures no logging: without the program's own configuration,
# tastypy's warnings (failed tasks, torn tails) are not printed.
logging.getLogger(__name__).addHandler(logging.NullHandler())
