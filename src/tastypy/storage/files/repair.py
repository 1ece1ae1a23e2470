"""The file engine's repair: save what is intact in a damaged store into one that opens.

What is saved, exactly (see :mod:`tastypy.storage.files._salvage`): the records of
every data file that passes its check, then every intact journal commit in
order, then what the ``fix`` of the layers above's checks makes of it
(``tastypy.repair``: a tracker's tries logged in ``tries.jsonl``). The new
store keeps the meta (kind, settings) and ``file_size`` and ``gzipped`` of
the damaged one.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from ..._codec import encode_value
from ...errors import CorruptStoreError, NotAStoreError, PathExistsError
from ..damage import ContentChecks, RepairReport
from . import _fs
from ._durable import fsync_dir
from ._engine import FileStorage
from ._layout import lost_manifest
from ._lock import StoreLock
from ._manifest import MANIFEST
from ._salvage import salvage
from ._snapshot import read_snapshot
from .verify import verify

__all__ = ["repair"]

REPAIRED = ".repaired"  # suffix of the new store's default path
DAMAGED = ".damaged"  # suffix the original gets with in_place=True
BUILDING = ".repairing-"  # ".<output>.repairing-XXXXXXXX": a repair still being built


def repair(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    in_place: bool = False,
    accept_edits: bool = False,
    timeout: float | None = 0.0,
    checks: ContentChecks,
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
    *checks* are the layers above's (``tastypy.repair`` gives them): see
    :class:`tastypy.storage.damage.ContentChecks`.

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
    store = Path(path)
    _check_is_store(store)
    if in_place and store.is_symlink():
        # The store the link names is the one to replace; the link then
        # names the repaired store, and the original sits beside it.
        store = Path(os.path.realpath(store))
    named = store if store.name else store.absolute()  # "." has no name to extend
    target = Path(output) if output is not None else named.with_name(named.name + REPAIRED)
    if in_place and output is not None:
        raise ValueError("in_place=True writes <path>.repaired; do not pass output too")
    lock = StoreLock(store, timeout) if in_place else None
    try:
        return _repair(store, target, in_place=in_place, accept_edits=accept_edits, checks=checks)
    finally:
        if lock is not None:
            lock.release()


def _repair(
    store: Path, target: Path, *, in_place: bool, accept_edits: bool, checks: ContentChecks
) -> RepairReport:
    checked = verify(store, checks=checks)
    report = RepairReport(store, records=checked.records, notes=list(checked.notes))
    if checked.ok:
        return report
    named = store.absolute()
    original = named.with_name(named.name + DAMAGED) if in_place else None
    for taken in (target, original):
        if taken is not None and (taken.exists() or taken.is_symlink()):
            raise PathExistsError(
                f"{taken} already exists; repair never overwrites anything: move it away, "
                "or choose another output"
            )
    try:
        manifest, files, journal = read_snapshot(store, missing_ok=True)
    except CorruptStoreError as exc:
        raise CorruptStoreError(
            f"cannot repair {store}: {exc}. {MANIFEST} lists the data files and their "
            "checksums, so nothing can be checked without it: restore it (e.g. from a "
            "backup)"
        ) from None
    found = salvage(store, manifest, files, journal, checks=checks, accept_edits=accept_edits)
    parent = target.absolute().parent
    report.notes += _remove_half_built(parent, target.name)
    # Built under a temporary name, renamed to *target* only once it verifies:
    # a repair killed midway never leaves a half-made store under a final name.
    build = parent / f".{target.name}{BUILDING}{os.urandom(4).hex()}"
    try:
        _write(build, found.data, manifest.file_size, manifest.gzipped, found.meta, checks=checks)
        _fs.replace(build, target.absolute())
        fsync_dir(parent)
    except BaseException as exc:
        # What is there under the temporary name is ours, and half done.
        with contextlib.suppress(OSError):
            _fs.rmtree(build)
        if isinstance(exc, OSError) and exc.filename is not None:
            exc.filename = str(target)  # the temporary name means nothing to the caller
        raise
    if original is not None:
        # Two renames, each durable before the next: a crash between them
        # leaves the original at <path>.damaged and the salvage at <path>.repaired.
        # Absolute paths: "." cannot be renamed, but the directory it names can.
        _fs.replace(named, original)
        fsync_dir(named.parent)
        _fs.replace(target.absolute(), named)
        fsync_dir(named.parent)
        target = store
    report.output, report.original, report.records = target, original, len(found.data)
    report.lost, report.accepted, report.caveats = found.lost, found.accepted, found.caveats
    report.notes = [n for n in report.notes if "torn" not in n] + found.notes
    return report


def _remove_half_built(parent: Path, name: str) -> list[str]:
    """Remove what an interrupted repair to *name* left under its temporary name."""
    notes: list[str] = []
    try:
        entries = sorted(_fs.listdir(parent))
    except OSError:
        return notes
    for entry in entries:
        if entry.startswith(f".{name}{BUILDING}"):
            _fs.rmtree(parent / entry)
            notes.append(
                f"removed {parent / entry}: a half-built repair left by an interrupted run"
            )
    return notes


def _write(
    target: Path,
    data: dict[str, Any],
    file_size: int,
    gzipped: bool,
    meta: dict[str, Any],
    *,
    checks: ContentChecks,
) -> None:
    """Write *data* as a new store at *target*, compacted, and check that it verifies."""
    encoded = ((k, encode_value(v, keep=False, key=k)) for k, v in data.items())
    new = FileStorage(target, file_size=file_size, gzipped=gzipped, new=True)
    try:
        new.set_meta(meta)
        new.commit(encoded)
        new.compact()
    except BaseException:
        # The build has failed and is being removed: the engine's warning that
        # its compaction at close failed too would only mislead.
        engine_log = logging.getLogger("tastypy.storage.files._engine")
        level = engine_log.level
        engine_log.setLevel(logging.ERROR)
        try:
            new.discard()
        finally:
            engine_log.setLevel(level)
        raise
    new.close()
    if not verify(target, checks=checks).ok:  # never hand out a salvage that does not open
        raise CorruptStoreError(f"{target}: the repaired store does not verify (a bug)")


def _check_is_store(store: Path) -> None:
    if (store / MANIFEST).is_file():
        return
    lost = lost_manifest(store) if store.is_dir() else None
    if lost is not None:
        raise lost
    what = "does not exist" if not store.exists() else "is not a tastypy store"
    raise NotAStoreError(f"{store} {what} (no {MANIFEST})")
