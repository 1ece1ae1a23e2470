"""What :mod:`tastypy.storage.files._salvage` reports: a :class:`Damage`, and what it costs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._manifest import MANIFEST

__all__ = ["SETTINGS", "Damage", "bad_settings", "lost_records"]

SETTINGS = (("sync_at", 1), ("max_tries", 0))  # the meta settings checked, and their minimum


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

    def shown(self, store: Path | None) -> str:
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


def bad_settings(store: Path, meta: dict[str, Any]) -> list[str]:
    """Problems with the settings the POD and the tracker keep in the manifest's meta."""
    problems = []
    for name, low in SETTINGS:
        value = meta.get(name)
        if value is not None and (type(value) is not int or value < low):
            problems.append(
                f"{store / MANIFEST}: field meta.{name} must be a whole number >= {low}, "
                f"not {value!r}"
            )
    return problems
