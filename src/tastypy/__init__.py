"""tastypy: persistent ordered dicts that survive crashes.

See the README for the user's manual.
"""

from __future__ import annotations

from .errors import (
    CorruptStoreError,
    LockedError,
    NotAStoreError,
    ReadOnlyError,
    SettingsError,
    StoreClosedError,
    TastypyError,
)
from .pod import POD, PersistentOrderedDict
from .storage.verify import VerifyReport, verify

__all__ = [
    "POD",
    "CorruptStoreError",
    "LockedError",
    "NotAStoreError",
    "PersistentOrderedDict",
    "ReadOnlyError",
    "SettingsError",
    "StoreClosedError",
    "TastypyError",
    "VerifyReport",
    "verify",
]

__version__ = "0.1.0.dev0"
