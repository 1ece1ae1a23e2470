"""The file engine's verify: check every file of a store without changing any.

``tastypy.verify`` calls it with the checks of the layers above (the
settings they keep, their side logs, what their records must be): see
:class:`tastypy.storage.damage.ContentChecks`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import CorruptStoreError, NotAStoreError
from ..damage import ContentChecks, VerifyReport
from . import _fs
from ._chunks import CHUNKS, load_chunk
from ._journal import apply_ops, replay
from ._layout import find_leftovers, lost_manifest
from ._lock import LOCK_FILE
from ._manifest import MANIFEST, Manifest
from ._sidelog import side_log_name
from ._snapshot import read_snapshot
from ._store_path import store_path

__all__ = ["bad_settings", "verify"]


def verify(path: str | os.PathLike[str], *, checks: ContentChecks) -> VerifyReport:
    """Read every file of the store at *path* and report each problem found.

    *checks* are the layers above's: their settings, side logs and records
    are checked too. Never writes, never takes the lock: safe while another
    process writes to the store (a compaction under our feet is retried).

    Raises
    ------
    NotAStoreError
        If *path* does not exist or holds no tastypy store.
    CorruptStoreError
        If *path* holds a store's data files or journal but no manifest.
    """
    store = store_path(path)
    if not (store / MANIFEST).is_file():
        lost = lost_manifest(store) if store.is_dir() else None
        if lost is not None:
            raise lost
        what = "does not exist" if not store.exists() else "is not a tastypy store"
        raise NotAStoreError(f"{store} {what} (no {MANIFEST})")
    report = VerifyReport(store)
    try:
        manifest, files, journal_raw = read_snapshot(store, missing_ok=True)
    except CorruptStoreError as exc:
        report.problems.append(str(exc))
        return report
    report.problems.extend(bad_settings(store, manifest.meta, checks.settings))
    data: dict[str, Any] = {}
    hashes: dict[str, int] = {}
    for entry in manifest.chunks:
        where = store / CHUNKS / entry.file
        raw = files.get(entry.file)
        if raw is None:
            report.problems.append(f"{where} is missing but {MANIFEST} names it")
            continue
        try:
            load_chunk(where, entry, raw, manifest.gzipped, into=data, hashes=hashes)
        except CorruptStoreError as exc:
            report.problems.append(str(exc))
    journal = store / manifest.journal
    if journal_raw == b"" and manifest.journal_empty and not journal.exists():
        report.notes.append(
            f"{journal} is missing; {MANIFEST} records it as empty, so nothing is lost "
            "(a writable open recreates it)"
        )
    if journal_raw is None:
        report.problems.append(f"{journal} is missing but {MANIFEST} names it")
    else:
        rep = replay(
            journal, journal_raw, manifest.gzipped, strict=False, first=manifest.journal_first
        )
        report.problems += rep.problems
        try:
            apply_ops(journal, rep.ops, data, hashes)
        except CorruptStoreError as exc:
            report.problems.append(str(exc))
        if rep.torn:
            report.notes.append(
                f"{journal}: a torn last commit ({rep.torn} bytes) from an interrupted "
                "sync; it is discarded (a writable open cuts it off)"
            )
    report.problems += checks.problems(store, manifest.meta, data)
    report.records = len(data)
    if report.problems:  # count what is intact, and name what is not
        # Imported here: only a damaged store needs the salvage scan.
        from ._salvage import salvage  # noqa: PLC0415

        found = salvage(store, manifest, files, journal_raw, checks=checks)
        report.records, report.damaged = len(found.data), found.lost
    _leftovers(store, manifest, report)
    _files_changed_in_place(store, manifest.journal, checks.side_logs, report)
    return report


def bad_settings(
    store: Path, meta: dict[str, Any], settings: tuple[tuple[str, int], ...]
) -> list[str]:
    """Problems with the *settings* (name, minimum) the layers above keep in the meta."""
    problems = []
    for name, low in settings:
        value = meta.get(name)
        if value is not None and (type(value) is not int or value < low):
            problems.append(
                f"{store / MANIFEST}: field meta.{name} must be a whole number >= {low}, "
                f"not {value!r}"
            )
    return problems


def _files_changed_in_place(
    store: Path, journal: str, side_logs: tuple[str, ...], report: VerifyReport
) -> None:
    """The files a writer appends to or rewrites where they are: what it would refuse.

    Each must be a regular file with no other hard link, or the writable
    open (which refuses it) would fail where verify said OK.
    """
    for name in (LOCK_FILE, *map(side_log_name, side_logs), journal):
        try:
            found = os.lstat(store / name)
        except FileNotFoundError:
            continue
        refused = _fs.own_file_problem(store / name, found, writing=True)  # the open's rule
        if refused is not None and str(refused) not in report.problems:
            report.problems.append(str(refused))


def _leftovers(store: Path, manifest: Manifest, report: VerifyReport) -> None:
    """Debris a writable open removes (notes), and strangers it refuses (problems)."""
    try:
        debris, strangers = find_leftovers(store, manifest)
    except OSError as exc:  # e.g. a compaction removed a file under our feet
        report.notes.append(f"{store}: could not list its files: {exc}")
        return
    following = f"{manifest.generation + 1:08d}"
    for entry in debris:
        if entry.name.startswith((following, f"journal-{following}")):
            # A writer that has the store open may be folding in a thread.
            report.notes.append(
                f"{entry}: a file of the next generation, which no manifest names yet: a "
                "compaction in progress, if a writer has the store open; else left by an "
                "interrupted one (removed on the next writable open)"
            )
            continue
        what = "journal" if entry.parent == store else "file of an interrupted compaction"
        report.notes.append(f"{entry}: leftover {what} (removed on the next writable open)")
    report.problems += [str(exc) for exc in strangers]
