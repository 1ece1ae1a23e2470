"""What ``verify`` and ``repair`` report, and the hooks by which the layers above check contents.

Engine-neutral. An engine checks its own files: records, commits, side
logs. What the records and the meta *mean* (a tracker's try counts, the
POD's ``sync_at``) is the business of the layers above, which hand their
checks to the engine's verify and repair as a :class:`ContentChecks`.
``tastypy.verify`` and ``tastypy.repair`` compose the two.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

__all__ = [
    "SHOWN",
    "ContentChecks",
    "Damage",
    "RepairReport",
    "Salvaging",
    "VerifyReport",
    "lost_records",
    "readable_key",
]

SHOWN = 10  # damaged records listed by str(); the rest are counted

_KEY = re.compile(rb'\["((?:[^"\\\n]|\\.)*)"')


@dataclass(frozen=True)
class Damage:
    """A record, or a stretch of a file, that is not intact.

    ``file`` and ``line`` (1-based; ``None`` where no line can be named) say
    where; ``key`` is the record's key where it can still be read; ``reason``
    says what is wrong with it. ``unchecked``: the line reads as a record,
    but the check of its file or commit fails, so it may be a hand edit
    (``repair(..., accept_edits=True)`` takes such lines as they read).
    ``records``: how many records it costs (1 for a line, the shortfall for
    a stretch of a data file that is gone, 0 for what costs no record: a
    setting, a try count, a record saved with a field reset; ``None`` where
    the number cannot be known: a journal or commit that cannot be read).
    """

    file: Path
    line: int | None
    key: str | None
    reason: str
    unchecked: bool = False
    records: int | None = 1

    def __str__(self) -> str:
        return self.shown(None)

    def shown(self, store: Path | str | None) -> str:
        """One line; the file named relative to *store* if it is inside it."""
        name = self.file
        if store is not None and name.is_relative_to(store):
            name = name.relative_to(store)
        where = f"{name}:{self.line}" if self.line is not None else str(name)
        what = f" {self.key!r}" if self.key is not None else ""
        return f"{where}{what}: {self.reason}"


def lost_records(damages: list[Damage]) -> tuple[int, bool]:
    """How many records *damages* cost, and whether that number is exact (else: at least)."""
    known = [d.records for d in damages if d.records is not None]
    return sum(known), len(known) == len(damages)


def readable_key(line: bytes) -> str | None:
    """The key at the start of a line that is not a valid ``["key", ...]`` line, if readable."""
    match = _KEY.match(line)
    if match is None:
        return None
    try:
        key = orjson.loads(b'"' + match[1] + b'"')
    except orjson.JSONDecodeError:
        return None
    return key if type(key) is str else None


# -- the hooks of the layers above ----------------------------------------------------


class Salvaging(Protocol):
    """A salvage in progress, as the layers above see it when they fix what it found."""

    @property
    def data(self) -> dict[str, Any]:
        """The intact records so far, in store order (changed in place by the fix)."""

    @property
    def meta(self) -> dict[str, Any]:
        """The store's meta, settings that failed their check left out (the fix may drop more)."""

    @property
    def store(self) -> Path:
        """The store, as damage names it."""

    def lose(self, damage: Damage) -> None:
        """Report *damage* (a lost record, or one saved with a field reset)."""

    def restored(self, key: str, source: Path, why: str) -> None:
        """*key*, lost, is back in :attr:`data`, from *source*: *why* says with what."""

    def side_log_path(self, name: str) -> Path:
        """Where side log *name* is (what damage to it names)."""

    def read_side_log(self, name: str) -> bytes | None:
        """Side log *name*'s bytes, or None if there is none.

        Raises ``CorruptStoreError`` if it is not a file one may read (a link).
        """


def _no_problems(store: Path, meta: dict[str, Any], data: dict[str, Any]) -> list[str]:
    return []


def _no_fix(found: Salvaging) -> None:
    return None


@dataclass(frozen=True)
class ContentChecks:
    """What the layers above check in a store, handed to an engine's verify and repair.

    Attributes
    ----------
    settings
        The meta settings kept by the layers above, each a whole number at
        least its minimum: ``(name, minimum)``. One that is not is damage;
        repair drops it (the default applies).
    side_logs
        The side logs the layers above write (verify checks they are files
        a writer may append to).
    problems
        ``problems(store, meta, data)``: what is wrong with the decoded
        records of an otherwise whole store, one line each (verify).
    fix
        ``fix(salvage)``: what the layers above make of a salvage before it
        is reported and written (repair): apply their side logs, reset
        unusable fields, each change reported through :meth:`Salvaging.lose`.
    """

    settings: tuple[tuple[str, int], ...] = ()
    side_logs: tuple[str, ...] = ()
    problems: Callable[[Path, dict[str, Any], dict[str, Any]], list[str]] = _no_problems
    fix: Callable[[Salvaging], None] = _no_fix


# -- the reports ----------------------------------------------------------------------


@dataclass
class VerifyReport:
    """What :func:`tastypy.verify` found.

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

    path: Path | str  # a str: a store that is no directory (a PostgreSQL URL#name)
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


@dataclass
class RepairReport:
    """What :func:`tastypy.repair` did.

    Attributes
    ----------
    path
        The damaged store.
    output
        Where the salvage was written (with *in_place*, *path* itself);
        ``None`` if the store was healthy and nothing was written.
    original
        With *in_place*, where the damaged original now is.
    records
        Records in the salvaged store.
    lost
        What could not be saved: each :class:`Damage` names the file, the
        line (where known) and the key (where readable).
    accepted
        With *accept_edits*: lines that failed their check and were taken as
        they read.
    caveats
        What the salvage may hold differently (values as of before a damaged
        commit).
    notes
        Harmless findings (a torn last commit, leftovers).
    """

    path: Path
    output: Path | None = None
    original: Path | None = None
    records: int = 0
    lost: list[Damage] = field(default_factory=list)
    accepted: list[Damage] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True if nothing was lost (the exit status of ``tastypy repair`` is then 0)."""
        return not self.lost

    def lines(self, shown: int | None = SHOWN) -> list[str]:
        """The report as lines; at most *shown* of each list (``None``: all)."""
        if self.output is None:
            head = f"{self.path}: nothing to repair (OK, {self.records} records)"
        else:
            moved = f"; the damaged original is now {self.original}" if self.original else ""
            head = f"{self.path}: saved {self.records} records into {self.output}{moved}"
            if self.complete:
                head += "; nothing was lost"
            else:
                count, exact = lost_records(self.lost)
                entries = f"{len(self.lost)} entr{'y' if len(self.lost) == 1 else 'ies'}"
                head += f"; {'' if exact else 'at least '}{count} records NOT saved ({entries}):"
        out = [head]
        out += _listed("not saved", self.lost, shown, self.path)
        out += _listed("accepted unchecked", self.accepted, shown, self.path)
        out += [f"  caveat: {c}" for c in self.caveats]
        out += [f"  note: {n}" for n in self.notes]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _listed(label: str, items: list[Damage], shown: int | None, store: Path) -> list[str]:
    cut = items if shown is None else items[:shown]
    out = [f"  {label}: {d.shown(store)}" for d in cut]
    if len(items) > len(cut):
        out.append(f"  ... and {len(items) - len(cut)} more ({label})")
    return out
