"""``tastypy.verify`` and ``tastypy.repair``: the engine's check of its files, and ours.

Above both the storage and the tracker layers: the engine checks the files,
commits and side logs; the POD and the tracker add what their settings and
records must be (:data:`CHECKS`), so the engine never needs to know them.
"""

from __future__ import annotations

import os

from .storage import engines
from .storage.damage import ContentChecks, RepairReport, VerifyReport
from .tracker import _maintenance

__all__ = ["CHECKS", "repair", "verify"]

CHECKS = ContentChecks(
    settings=(("sync_at", 1), *_maintenance.SETTINGS),  # the POD's, then the tracker's
    side_logs=_maintenance.SIDE_LOGS,
    problems=_maintenance.record_problems,
    fix=_maintenance.fix_salvage,
)


def verify(path: str | os.PathLike[str]) -> VerifyReport:
    """Read every file of the store at *path* and report each problem found.

    Never writes, never takes the lock: safe while another process writes to
    the store (a compaction under our feet is retried).

    Raises
    ------
    NotAStoreError
        If *path* does not exist or holds no tastypy store.
    CorruptStoreError
        If *path* holds a store's data files or journal but no manifest.
    """
    return engines.verify(path, checks=CHECKS)


def repair(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    in_place: bool = False,
    accept_edits: bool = False,
    timeout: float | None = 0.0,
) -> RepairReport:
    """Save every intact record of the store at *path* into a new store.

    A healthy store (``verify(path).ok``) is left alone and nothing is
    written. Otherwise the salvage goes to *output* (default
    ``<path>.repaired``), which must not exist; the original is not changed.
    With *in_place*, the salvage is built at ``<path>.repaired`` and then
    swapped in by two renames: the original becomes ``<path>.damaged``, the
    salvage ``<path>``. A crash between the renames leaves both under those
    names (nothing is lost; rename the ``.repaired`` one to *path*). With
    *accept_edits*, lines of damaged files that still read as records are
    taken as they read (hand edits are kept) and listed in ``accepted``.
    What is saved, exactly: the records of every data file that passes its
    check, then every intact journal commit in order, then (trackers) the
    tries logged in ``tries.jsonl``. The new store keeps the kind and
    settings (``file_size``, ``gzipped``, ``sync_at``, ``max_tries``) of the
    damaged one.

    Raises
    ------
    NotAStoreError
        If *path* holds no store.
    CorruptStoreError
        If the manifest cannot be read (it says which files make up the
        store and holds their checksums: nothing can be checked without it).
    PathExistsError
        If the output (or, with *in_place*, ``<path>.damaged``) exists.
    LockedError
        With *in_place*, if another process holds the store (after *timeout*).
    OSError
        If writing the new store fails; what was written of it is removed.

    Notes
    -----
    Without *in_place* it only reads *path*, never locks it. With
    *in_place* it holds the store's lock from start to end.
    """
    return engines.repair(
        path,
        output,
        in_place=in_place,
        accept_edits=accept_edits,
        timeout=timeout,
        checks=CHECKS,
    )
