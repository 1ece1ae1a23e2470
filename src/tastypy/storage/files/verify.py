"""``tastypy.verify(path)``: check every file of a store without changing any."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import CorruptStoreError, NotAStoreError
from ...tracker._records import bad_records
from ...tracker._tries import NAME as TRIES
from . import _fs
from ._chunks import CHUNKS, load_chunk
from ._damage import Damage, bad_settings, lost_records
from ._journal import apply_ops, replay
from ._layout import find_leftovers, lost_manifest
from ._lock import LOCK_FILE
from ._manifest import MANIFEST, Manifest
from ._sidelog import side_log_name
from ._snapshot import read_snapshot
from ._store_path import store_path

__all__ = ["SHOWN", "Damage", "VerifyReport", "verify"]

SHOWN = 10  # damaged records listed by str(); the rest are counted


@dataclass
class VerifyReport:
    """What :func:`verify` found.

    Attributes
    ----------
    path
        The store.
    problems
        Damage: each entry names the file (and line where one can be named).
        Opening the store for use would raise :class:`CorruptStoreError`.
    notes
        Things a writable open repairs by itself: a torn last commit left by a
        crash, leftover files of an interrupted compaction.
    records
        Intact records: what ``tastypy.repair`` saves (all of them, for a
        healthy store).
    damaged
        Each record, or stretch of a file, that is not intact and would be
        lost: a :class:`Damage` naming the file, the line (where known) and
        the key (where it can still be read). Empty for a healthy store, and
        when the manifest itself cannot be read.
    """

    @property
    def lost(self) -> int:
        """Records that would be lost: what the entries of ``damaged`` cost (at least)."""
        return lost_records(self.damaged)[0]

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: int = 0
    damaged: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if no damage was found (notes do not count)."""
        return not self.problems

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        """The report as lines (a path holding a line break stays in its line)."""
        if self.ok:
            lines = [f"{self.path}: OK, {self.records} records"]
        elif not self.damaged and not self.records:  # e.g. no readable manifest: no count
            lines = [f"{self.path}: DAMAGED"]
        else:
            count, exact = lost_records(self.damaged)
            lost = f"{'' if exact else 'at least '}{count} records lost"
            lines = [f"{self.path}: DAMAGED, {self.records} records intact, {lost}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  damaged: {d.shown(self.path)}" for d in self.damaged[:SHOWN]]
        if len(self.damaged) > SHOWN:
            lines.append(f"  ... and {len(self.damaged) - SHOWN} more damaged")
        lines += [f"  note: {n}" for n in self.notes]
        return lines


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
    report.problems.extend(bad_settings(store, manifest.meta))
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
    report.problems += _record_problems(store, manifest.meta, data)
    report.records = len(data)
    if report.problems:  # count what is intact, and name what is not
        # Imported here: only a damaged store needs the salvage scan.
        from ._salvage import salvage  # noqa: PLC0415

        found = salvage(store, manifest, files, journal_raw)
        report.records, report.damaged = len(found.data), found.lost
    _leftovers(store, manifest, report)
    _files_changed_in_place(store, manifest.journal, report)
    return report


def _record_problems(store: Path, meta: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """A tracker's task records whose ``_tries`` or ``_done`` it cannot count by."""
    return bad_records(store, data) if meta.get("kind") == "tracker" else []


def _files_changed_in_place(store: Path, journal: str, report: VerifyReport) -> None:
    """The files a writer appends to or rewrites where they are: what it would refuse.

    Each must be a regular file with no other hard link, or the writable
    open (which refuses it) would fail where verify said OK.
    """
    for name in (LOCK_FILE, side_log_name(TRIES), journal):
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
    for entry in debris:
        what = "journal" if entry.parent == store else "file of an interrupted compaction"
        report.notes.append(f"{entry}: leftover {what} (removed on the next writable open)")
    report.problems += [str(exc) for exc in strangers]
