"""What the writers of a shared store have claimed, read from their logs (``docs/SHARED.md``).

Each writer's file in ``writers/`` is its claims log: after its first line
(the writer), one JSON line per claim, ``{"claim": key, "tries": n}``, and per
release, ``{"release": key}``. Only its writer appends to it, under the
store's commit lock. :class:`Fleet` is one shared open's view of all of
them: it remembers how far it has read each log and reads only what was
added since, so keeping up costs a ``stat`` of the directory and an
``fstat`` per log.

A key is *held* by the writer whose log claims it last without releasing it
since, while that writer is alive (its log locked: :mod:`._writers`). A
claim of a dead writer is void at once; the tries its log counts are not.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from . import _fs
from ._writers import JOINED, WRITERS, check_directory, writer_id

__all__ = ["Fleet", "claim_line", "count_claims", "release_line", "reset_line"]

log = logging.getLogger(__name__)

_MAX_KEY = 1 << 20  # characters; a key longer than that in a log is not tastypy's


def claim_line(key: str, tries: int, new: bool = False) -> bytes:
    """A claim of *key*, its *tries* th try; *new*: no record of it was committed then."""
    if new:
        return orjson.dumps({"claim": key, "tries": tries, "new": True}) + b"\n"
    return orjson.dumps({"claim": key, "tries": tries}) + b"\n"


def release_line(key: str) -> bytes:
    return orjson.dumps({"release": key}) + b"\n"


def reset_line(key: str) -> bytes:
    """The tries this log's claims gave *key* count no more (``reset_tries``)."""
    return orjson.dumps({"reset": key}) + b"\n"


@dataclass
class _Log:
    """One writer's log, as far as this open has read it."""

    fd: int
    offset: int = 0  # bytes read so far (whole lines only)
    first: bool = True  # the describing line is still to be skipped
    held: set[str] = field(default_factory=set)  # claimed, not released since
    tries: dict[str, int] = field(default_factory=dict)  # key -> most tries a line gives
    fresh: set[str] = field(default_factory=set)  # held, claimed with no record committed
    dead: bool = False
    warned: bool = False


class Fleet:
    """The claims of every writer of the store at *store* but this open's own (*me*)."""

    def __init__(self, store: Path, me: str) -> None:
        self._dir = store / WRITERS
        self._me = me
        self._logs: dict[str, _Log] = {}
        self._joined = -1  # the size of writers/.joined when last listed
        self._joined_path = str(self._dir / JOINED)
        self._most: dict[str, int] = {}  # key -> the most tries any log read counts
        # key -> the writers whose logs hold it (some maybe dead). A set, not
        # the last claimer: logs are read in no particular order, so a dead
        # writer's old claim may be read after a live one's newer claim.
        self.holders: dict[str, set[str]] = {}

    def refresh(self) -> None:
        """Read what every log gained since (the commit lock is held).

        ``writers/`` is listed again only when ``.joined`` grew, which every
        writer does once its log is in place and before it claims anything
        (the directory's modification time ticks too coarsely: two writers
        registering within one tick would leave it unchanged, and a log
        missed is a claim missed). A log deleted since (its writer closed, or
        was settled after it died) holds nothing any more.
        """
        try:
            joined = os.stat(self._joined_path).st_size
        except FileNotFoundError:
            joined = -1
        if joined != self._joined or joined < 0:
            self._list()
            self._joined = joined  # only once listed: a failed listing is tried again
        gone = []
        for writer, entry in self._logs.items():
            found = _fs.fstat(entry.fd)
            if found.st_nlink == 0:
                gone.append(writer)
            elif not entry.dead and found.st_size > entry.offset:
                self._read(writer, entry)
        for writer in gone:
            self._drop(writer)

    def holder(self, key: str) -> str | None:
        """The live writer other than this open that holds *key*, if any."""
        writers = self.holders.get(key)
        if not writers:
            return None
        for writer in sorted(writers):
            entry = self._logs.get(writer)
            if entry is None or entry.dead or key not in entry.held:
                writers.discard(writer)
                continue
            if _alive(entry.fd):
                return writer
            self._read(writer, entry)  # whatever it wrote before it died, as dead() does
            entry.dead = True
            writers.discard(writer)
        return None

    def tries(self, key: str) -> int:
        """The most tries any writer's log (alive or dead) counts for *key*."""
        return self._most.get(key, 0)

    def all_claimed(self) -> dict[str, tuple[int, bool]]:
        """Every key a log counts tries for: the most counted, and :meth:`claimed_new`."""
        fresh = set().union(*(entry.fresh for entry in self._logs.values()))
        return {key: (tries, key in fresh) for key, tries in self._most.items()}

    def claimed_new(self, key: str) -> bool:
        """Whether a log's claim of *key*, not released, found no record of it committed.

        Its tries then count even with the record missing (its writer died
        before committing it); otherwise a missing record was deleted since,
        and the claim's tries no longer matter.
        """
        return any(key in entry.fresh for entry in self._logs.values())

    def _recount(self) -> None:
        """The most tries per key, once a log is no longer counted."""
        merged: dict[str, int] = {}
        for entry in self._logs.values():
            for key, tries in entry.tries.items():
                if tries > merged.get(key, 0):
                    merged[key] = tries
        self._most = merged

    def dead(self) -> dict[str, dict[str, int]]:
        """The logs of writers found dead: writer -> {key: tries} (maybe empty).

        One that counts nothing (every claim released or reset) is only to be
        removed; the others' tries are to be settled first.
        """
        gone = {}
        for writer, entry in self._logs.items():
            if not entry.dead and not _alive(entry.fd):
                entry.dead = True
                self._read(writer, entry)  # whatever it wrote before it died
            if entry.dead:  # counting nothing, it is only to be removed
                gone[writer] = dict(entry.tries)
        return gone

    def forget(self, writer: str) -> None:
        """Remove a dead writer's log, once what it counts is settled in the records."""
        entry = self._logs.pop(writer, None)
        if entry is None:
            return
        with contextlib.suppress(OSError):
            _fs.unlink(self._dir / f"{writer}.jsonl")
        _fs.close(entry.fd)
        for key in entry.held:
            self.holders.get(key, set()).discard(writer)
        self._recount()

    def close(self) -> None:
        for entry in self._logs.values():
            _fs.close(entry.fd)
        self._logs.clear()

    def _list(self) -> None:
        # Only a missing writers/ means no writers: any other failure (out of
        # file descriptors, say) must not pass for "nobody holds anything".
        try:
            check_directory(self._dir)
            names = _fs.listdir(self._dir)
        except FileNotFoundError:
            names = []
        present = set()
        for name in names:
            writer = writer_id(name)
            if writer is None or writer == self._me:
                continue
            present.add(writer)
            if writer not in self._logs:
                try:
                    fd = _fs.open_inside(self._dir / name, os.O_RDONLY)
                except FileNotFoundError:  # its writer closed meanwhile
                    continue
                self._logs[writer] = _Log(fd)
        for writer in set(self._logs) - present:  # removed: settled by whoever removed it
            self._drop(writer)

    def _drop(self, writer: str) -> None:
        """Forget a log whose file is gone: its claims hold nothing now."""
        entry = self._logs.pop(writer)
        _fs.close(entry.fd)
        for key in entry.held:
            self.holders.get(key, set()).discard(writer)
        self._recount()

    def _read(self, writer: str, entry: _Log) -> None:
        size = _fs.fstat_size(entry.fd)
        if size <= entry.offset:
            return
        self._apply_all(writer, entry, os.pread(entry.fd, size - entry.offset, entry.offset))

    def _apply_all(self, writer: str, entry: _Log, raw: bytes) -> None:
        whole = raw[: raw.rfind(b"\n") + 1]  # a line being written (or torn) waits
        entry.offset += len(whole)
        lines = whole.split(b"\n")[:-1]
        if entry.first and lines:
            lines = lines[1:]
            entry.first = False
        if not lines:
            return
        try:  # one parse for them all; a bad line sends each to its own
            records = orjson.loads(b"[" + b",".join(lines) + b"]")
        except orjson.JSONDecodeError:
            records = None
        if type(records) is not list or len(records) != len(lines):
            for line in lines:
                self._apply(writer, entry, line)
            return
        for record, line in zip(records, lines, strict=True):
            # A record counts here only if it is its own line exactly as a writer
            # writes it (damaged lines joined by "," could make up another).
            if not _written_as(record, line) or not self._apply_record(writer, entry, record):
                self._apply(writer, entry, line)  # the careful path, line by line

    def _released(self, writer: str, entry: _Log, key: str) -> None:
        """*writer* ended its claim of *key*: it holds it no more, and its tries are
        committed in the record (a release follows that commit), which now alone
        counts them (so that ``reset_tries`` holds).
        """
        entry.held.discard(key)
        entry.fresh.discard(key)
        found = self.holders.get(key)
        if found is not None:
            found.discard(writer)
        self._uncount(entry, key)

    def _uncount(self, entry: _Log, key: str) -> None:
        """The tries *entry*'s claims gave *key* count no more."""
        counted = entry.tries.pop(key, None)
        if counted is not None and self._most.get(key) == counted:
            most = max((other.tries.get(key, 0) for other in self._logs.values()), default=0)
            if most:
                self._most[key] = most
            else:
                del self._most[key]

    def _apply_record(self, writer: str, entry: _Log, record: object) -> bool:
        """Apply one parsed line of *writer*'s log; False if it is no claim or release."""
        if type(record) is not dict:
            return False
        claimed = record.get("claim")
        if type(claimed) is str:
            tries = record.get("tries")
            if type(tries) is not int or not 0 <= tries < 1 << 62 or len(claimed) > _MAX_KEY:
                return False
            if record.get("new") is True:
                entry.fresh.add(claimed)
            else:
                entry.fresh.discard(claimed)
            entry.held.add(claimed)
            self.holders.setdefault(claimed, set()).add(writer)
            if tries > entry.tries.get(claimed, 0):
                entry.tries[claimed] = tries
                if tries > self._most.get(claimed, 0):
                    self._most[claimed] = tries
            return True
        released = record.get("release")
        if type(released) is str and claimed is None and len(released) <= _MAX_KEY:
            self._released(writer, entry, released)
            return True
        reset = record.get("reset")
        if type(reset) is str and claimed is None and released is None:
            self._uncount(entry, reset)
            return True
        return False

    def _apply(self, writer: str, entry: _Log, line: bytes) -> None:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if self._apply_record(writer, entry, record):
            return
        if not entry.warned:  # a power cut's garbage, or a hand edit: skipped
            entry.warned = True
            log.warning("%s: skipping a line that is no claim or release", self._dir / writer)


def _written_as(record: object, line: bytes) -> bool:
    """Whether *line* is *record* exactly as a writer writes it."""
    try:
        return orjson.dumps(record) == line
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: no writer's line
        return False


def count_claims(store: Path, writer: str) -> tuple[int, int]:
    """How many tasks *writer*'s log holds now, and how many claims it made in all."""
    try:
        raw = _fs.read_file(store / WRITERS / f"{writer}.jsonl")
    except (OSError, ValueError):  # gone meanwhile, or not a file
        return 0, 0
    held: set[str] = set()
    tried: set[tuple[str, object]] = set()  # a claim written again (after a commit) is one
    for line in raw[: raw.rfind(b"\n") + 1].split(b"\n")[1:-1]:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if type(record) is not dict:
            continue
        if type(record.get("claim")) is str:
            held.add(record["claim"])
            tries = record.get("tries")
            tried.add((record["claim"], tries if type(tries) is int else None))
        elif type(record.get("release")) is str:
            held.discard(record["release"])
    return len(held), len(tried)


def _alive(fd: int) -> bool:
    """Whether the writer whose log *fd* reads still holds its lock."""
    try:
        _fs.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    _fs.flock(fd, fcntl.LOCK_UN)
    return False
