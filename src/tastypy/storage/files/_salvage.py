"""What of a damaged store is intact: the scan behind ``verify`` and ``repair``.

A data file is checked as a whole (its size and CRC-32 in the manifest), so
when it fails its check none of its lines can be trusted: those that still
read as records are *unchecked*, the others unreadable. A journal commit is
checked as a whole too (its CRC-32), and is intact or not.

The salvage, exactly: the records of every data file that passes its check,
in manifest order; then every intact commit of the journal, in order,
including commits after a damaged one (their values are right, but a key
they do not touch keeps the value it had before the damaged commit).
Nothing of a damaged data file or commit is applied, unless *accept_edits*:
then each of its lines that reads as a record is taken as it reads (it is
what someone who edits the files by hand wants). A damaged record is lost
only if no later intact commit sets or deletes its key again. A torn last
commit (an interrupted sync) is not lost: it never completed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from ..._codec import is_record
from ...errors import CorruptStoreError
from ..damage import ContentChecks, Damage
from ..damage import readable_key as _readable_key
from . import _fs
from ._chunks import CHUNKS, parse_records, split_chunk
from ._commits import check_commit, plain_commits, torn_in_place
from ._manifest import MANIFEST, ChunkEntry, Manifest
from ._pieces import gzip_pieces, inflate_what_we_can, split_damaged
from ._sidelog import side_log_name

__all__ = ["Salvage", "salvage"]


@dataclass
class Salvage:
    """The intact part of a store, and what is not."""

    manifest: Manifest
    meta: dict[str, Any]  # the manifest's meta, bad settings left out
    data: dict[str, Any] = field(default_factory=dict)  # in store order
    lost: list[Damage] = field(default_factory=list)  # what the salvage does not hold
    accepted: list[Damage] = field(default_factory=list)  # unchecked lines taken as they read
    superseded: int = 0  # damaged records whose keys a later intact commit set again
    caveats: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def salvage(
    store: Path,
    manifest: Manifest,
    files: dict[str, bytes],
    journal_raw: bytes | None,
    *,
    checks: ContentChecks,
    accept_edits: bool = False,
) -> Salvage:
    """Scan a store's bytes (as :func:`read_snapshot` read them) for what is intact.

    The settings of *checks* are checked first; its ``fix`` then makes of the
    salvage what the layers above would (a tracker applies its logged tries).
    """
    scan = _Scan(store, manifest, accept_edits)
    scan.settings(checks.settings)
    # First what passes its check, so that an unchecked line (a hand edit,
    # taken with accept_edits) never replaces an intact record, wherever it is.
    read = [(entry, scan.read_chunk(entry, files.get(entry.file))) for entry in manifest.chunks]
    for _entry, outcome in read:
        if outcome[0] == "intact":
            scan.intact.update(key for key, _ in outcome[1])
        elif outcome[0] == "checked":
            scan.intact.update(r[0] for r in map(_loads, outcome[1]) if is_record(r))
    for entry, outcome in read:
        scan.chunk(entry, outcome)
    scan.journal(journal_raw)
    checks.fix(scan)
    return scan.finish()


class _Scan:
    def __init__(self, store: Path, manifest: Manifest, accept_edits: bool) -> None:
        self.store = store
        self.manifest = manifest
        self.accept = accept_edits
        self.result = Salvage(manifest, dict(manifest.meta))
        self.data = self.result.data
        self.damages: list[Damage] = []
        self.open: dict[str, list[int]] = {}  # key -> its damages not yet superseded
        self.dropped: set[int] = set()
        self.intact: set[str] = set()  # keys of data files that pass their check

    # -- reporting ---------------------------------------------------------------

    def lose(self, damage: Damage) -> None:
        if damage.key is not None:
            self.open.setdefault(damage.key, []).append(len(self.damages))
        self.damages.append(damage)

    def touched(self, key: str) -> None:
        """An intact commit set or deleted *key*: its earlier damage costs nothing."""
        for index in self.open.pop(key, ()):
            self.dropped.add(index)

    def finish(self) -> Salvage:
        result = self.result
        result.lost = [d for i, d in enumerate(self.damages) if i not in self.dropped]
        result.superseded = len(self.dropped)
        if result.superseded:
            result.notes.append(
                f"{result.superseded} damaged record(s) were set or deleted again by a "
                "later intact commit, so nothing of them is lost (a key set again sits "
                "where that commit put it)"
            )
        return result

    # -- settings -------------------------------------------------------------------

    def settings(self, settings: tuple[tuple[str, int], ...]) -> None:
        meta = self.result.meta
        for name, low in settings:
            value = meta.get(name)
            if value is not None and (type(value) is not int or value < low):
                del meta[name]
                self.lose(
                    Damage(
                        self.store / MANIFEST,
                        None,
                        None,
                        f"setting meta.{name} is {value!r}, not a whole number >= {low}; "
                        "the default applies",
                        records=0,
                    )
                )

    # -- data files -----------------------------------------------------------------

    def read_chunk(self, entry: ChunkEntry, raw: bytes | None) -> tuple[str, Any]:
        """A data file as ``("intact", pairs)``, ``("checked", lines)`` (its checksum
        holds but a line does not read), ``("damaged", raw)`` or ``("missing", None)``."""
        where = self.store / CHUNKS / entry.file
        if raw is None:
            return "missing", None
        try:
            lines = split_chunk(where, entry, raw, self.manifest.gzipped)
        except CorruptStoreError:
            return "damaged", raw
        try:
            return "intact", parse_records(where, lines)
        except CorruptStoreError:
            return "checked", lines

    def chunk(self, entry: ChunkEntry, outcome: tuple[str, Any]) -> None:
        where = self.store / CHUNKS / entry.file
        kind, read = outcome
        if kind == "missing":
            self.lose(
                Damage(
                    where,
                    None,
                    None,
                    f"missing: its {entry.records} records",
                    False,
                    entry.records,
                )
            )
        elif kind == "damaged":
            self.damaged_chunk(where, entry, read)
        elif kind == "checked":
            self.lines(where, read, checked=True)
        else:
            for lineno, (key, value) in enumerate(read, 1):
                if key in self.data:
                    self.lose(Damage(where, lineno, key, "also in an earlier data file"))
                else:
                    self.data[key] = value

    def damaged_chunk(self, where: Path, entry: ChunkEntry, raw: bytes) -> None:
        text = inflate_what_we_can(raw) if self.manifest.gzipped else raw
        lines = text.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        self.lines(where, lines, checked=False)
        if len(lines) < entry.records:
            missing = entry.records - len(lines)
            self.lose(
                Damage(
                    where,
                    None,
                    None,
                    f"{missing} of its {entry.records} records are gone",
                    records=missing,
                )
            )

    def lines(self, where: Path, lines: list[bytes], *, checked: bool) -> None:
        why = "unchecked: its file fails its checksum"
        for lineno, line in enumerate(lines, 1):
            record = _loads(line)
            if not is_record(record):
                self.lose(Damage(where, lineno, _readable_key(line), "unreadable line"))
            elif record[0] in self.data:
                self.lose(Damage(where, lineno, record[0], "also in an earlier data file"))
            elif not checked and record[0] in self.intact:
                # The line held some record (the count says so) that is not
                # saved; the key it reads as is, from the intact file.
                self.lose(
                    Damage(
                        where, lineno, record[0], "not taken: an intact data file holds this key"
                    )
                )
            elif checked:
                self.data[record[0]] = record[1]
            elif self.accept:
                self.data[record[0]] = record[1]
                self.result.accepted.append(Damage(where, lineno, record[0], why, unchecked=True))
            else:
                self.lose(Damage(where, lineno, record[0], why, unchecked=True))

    # -- the journal ------------------------------------------------------------------

    def journal(self, raw: bytes | None) -> None:
        path = self.store / self.manifest.journal
        if raw is None:
            self.lose(
                Damage(
                    path, None, None, "missing: every sync since the last compaction", records=None
                )
            )
            return
        last = 0  # number of the last commit applied
        damaged_at: str | None = None  # the first damaged commit, once seen
        applied_after: list[int] = []
        pieces = list(gzip_pieces(raw) if self.manifest.gzipped else plain_commits(raw))
        for index, (start, _end, text, first_line, cut_short) in enumerate(pieces):
            if text is not None and check_commit(text, None) is None:
                body, lineno = text, first_line
            elif index == len(pieces) - 1 and (
                cut_short
                or (not self.manifest.gzipped and torn_in_place(raw, start, iter(()), last + 1))
            ):
                self.result.notes.append(
                    f"{path}: a torn last commit ({len(raw) - start} bytes) from an "
                    "interrupted sync; it never completed, so nothing of it is lost"
                )
                return
            else:
                damaged, tail = split_damaged(text)
                where = f"{path}:{first_line}" if first_line else f"{path} (at byte {start})"
                damaged_at = damaged_at or where
                self.damaged_commit(path, first_line, damaged)
                if tail is None:
                    continue
                body = tail
                lineno = first_line + damaged.count(b"\n") if first_line and damaged else 0
            number = orjson.loads(body[body.rfind(b"\n", 0, len(body) - 1) + 1 :])["commit"]
            if type(number) is not int or number <= last:
                self.damaged_commit(path, lineno, body, f"repeats commit {number!r}: not applied")
                continue
            last = number
            if damaged_at is not None:
                applied_after.append(number)
            self.apply(path, lineno, body.split(b"\n")[:-2])
        if applied_after and not self.accept:  # accepted, the damaged commit was applied
            first, end = applied_after[0], applied_after[-1]
            which = f"commit {first} comes" if first == end else f"commits {first}-{end} come"
            self.result.caveats.append(
                f"{which} after the damaged commit at {damaged_at} and "
                f"{'was' if first == end else 'were'} applied: keys the damaged commit "
                "changed and later ones do not keep their values from before it"
            )

    def apply(self, path: Path, lineno: int, lines: list[bytes]) -> None:
        """Apply the records of an intact commit (lines a writer never writes are lost)."""
        for offset, line in enumerate(lines):
            record = _loads(line)
            if type(record) is not list or len(record) not in (1, 2) or type(record[0]) is not str:
                # Its checksum holds, so it was written like this: not by tastypy.
                at = lineno + offset if lineno else None
                self.lose(Damage(path, at, _readable_key(line), "not a record (intact commit)"))
                continue
            key = record[0]
            self.touched(key)
            if len(record) == 2:
                self.data[key] = record[1]
            else:
                self.data.pop(key, None)

    def damaged_commit(
        self, path: Path, lineno: int, text: bytes | None, reason: str | None = None
    ) -> None:
        """Report (or, accepting edits, apply) the lines of a commit that is not intact."""
        why = reason or "unchecked: its commit fails its checksum"
        if text is None:
            self.lose(Damage(path, lineno or None, None, "unreadable commit", records=None))
            return
        lines = text.split(b"\n")
        for offset, line in enumerate(lines):
            at = lineno + offset if lineno else None
            if line.startswith(b"{") or (not line and offset == len(lines) - 1):
                continue  # a commit line, or the end
            record = _loads(line)
            if type(record) is list and len(record) in (1, 2) and type(record[0]) is str:
                verb = "set" if len(record) == 2 else "delete"
                if self.accept and reason is None:
                    self.touched(record[0])
                    if len(record) == 2:
                        self.data[record[0]] = record[1]
                    else:
                        self.data.pop(record[0], None)
                    self.result.accepted.append(
                        Damage(path, at, record[0], f"{verb}, {why}", True)
                    )
                else:
                    self.lose(Damage(path, at, record[0], f"{verb}, {why}", reason is None))
            else:
                self.lose(
                    Damage(path, at, _readable_key(line), "unreadable line in a damaged commit")
                )

    # -- what the layers above fix (tastypy.storage.damage.Salvaging) -----------------

    @property
    def meta(self) -> dict[str, Any]:
        return self.result.meta

    def side_log_path(self, name: str) -> Path:
        return self.store / side_log_name(name)

    def read_side_log(self, name: str) -> bytes | None:
        try:
            return _fs.read_file(self.side_log_path(name))
        except FileNotFoundError:
            return None

    def restored(self, key: str, source: Path, why: str) -> None:
        """*key* was lost but is back, from *source*: with what *why* says only.

        Its damage, if one names it, then costs no record; else one of the
        records of a stretch that is gone was this one.
        """
        named = [i for i in self.open.get(key, ()) if self.damages[i].records]
        if named:
            for i in named:
                old = self.damages[i]
                self.damages[i] = replace(old, reason=f"{old.reason}; {why}", records=0)
            return
        for i, damage in enumerate(self.damages):
            if damage.key is None and damage.records and i not in self.dropped:
                self.damages[i] = replace(damage, records=damage.records - 1)
                break
        self.lose(Damage(source, None, key, why, records=0))


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
