"""The journal: one append per sync, checked on replay.

A commit is its record lines followed by a commit line::

    ["key", value]                          set key (in place, or at the end if new)
    ["key"]                                 delete key
    {"commit": 7, "records": 2, "crc32": 1234567}

``crc32`` covers the bytes of the record lines (newlines included); ``commit``
numbers run on from 1 in each journal file. With ``gzipped=True`` each commit
is one gzip member, and concatenated members are a valid gzip file.

Replaying stops at the last complete, valid commit. If what follows is an
incomplete append (no complete commit line; a gzip member cut short or that
does not decompress, with no intact member after it; a last commit holding
zeros or bytes that are not UTF-8, which is what a power cut leaves of
sectors that never reached the disk), that is a *torn tail* left by a crash:
it is reported so the writer can cut it away. Anything else (a complete
commit of readable text that fails its count, checksum or number, last or
not; any bad commit followed by an intact one) is damage, raised as
:class:`CorruptStoreError`.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import CorruptStoreError
from . import _fs
from ._durable import datasync

__all__ = ["Journal", "Replay", "apply_ops", "commit_bytes", "is_delete", "journal_keys", "replay"]

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b\x08"
_COMMIT_LINE = re.compile(rb'\{"commit":(\d{1,18}),"records":(\d{1,18}),"crc32":(\d{1,10})\}\n')

_RECORD_KEY = re.compile(rb'^\["((?:[^"\\\n]|\\.)*)"', re.MULTILINE)
_DELETE = re.compile(rb'\["(?:[^"\\\n]|\\.)*"\]')
_DELETE_LINE = re.compile(rb'^\["(?:[^"\\\n]|\\.)*"\]$', re.MULTILINE)


@dataclass
class Replay:
    """What a journal file holds: its valid commits and where they end."""

    ops: list[bytes] = field(default_factory=list)  # record lines of valid commits, in order
    texts: list[bytes] = field(default_factory=list)  # the valid commits, whole
    commits: int = 0
    end: int = 0  # byte offset just past the last valid commit
    torn: int = 0  # bytes after it (a torn tail), 0 if none
    problems: list[str] = field(default_factory=list)  # damage, when not raising


def commit_bytes(records: list[bytes], number: int, gzipped: bool) -> bytes:
    """Encode one commit of *records* (lines without newline)."""
    body = b"\n".join(records) + b"\n" if records else b""
    trailer = orjson.dumps({"commit": number, "records": len(records), "crc32": zlib.crc32(body)})
    data = body + trailer + b"\n"
    if gzipped:
        # Level 1: a sync is latency-bound; compaction recompresses chunks at 6.
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
        data = compressor.compress(data) + compressor.flush()
    return data


def replay(path: Path, raw: bytes, gzipped: bool, *, strict: bool = True) -> Replay:
    """Check and split the journal bytes *raw* into commits.

    Only an incomplete final append is a torn tail: trailing bytes holding
    no complete commit line (plain), or a gzip member cut short. Anything
    else that fails its checks (a complete commit line whose count, CRC-32 or
    number is wrong, a gzip member that does not decompress) is damage, last
    commit or not: with *strict* it raises :class:`CorruptStoreError` naming
    the file and line; otherwise it is listed in ``Replay.problems`` and
    replay stops there.
    """
    result = Replay()
    pieces = _gzip_members(raw) if gzipped else _plain_commits(raw)
    for _start, end, text, lineno, cut_short in pieces:
        problem = _check_commit(text, result.commits + 1)
        if problem is None:
            assert text is not None
            result.ops.extend(text.split(b"\n")[:-2])
            result.texts.append(text)
            result.commits += 1
            result.end = end
            continue
        if cut_short or (
            not gzipped and _torn_in_place(raw, result.end, pieces, result.commits + 1)
        ):
            # An append a crash interrupted: cut short, or (power loss) with
            # sectors that never reached the disk read back as zeros or garbage.
            result.torn = len(raw) - result.end
            break
        message = (
            f"{path}:{lineno}: commit {result.commits + 1} {problem} (not an incomplete "
            "last append, so no crash can have left it like this: the file is damaged)"
        )
        if strict:
            raise CorruptStoreError(message)
        result.problems.append(message)
        break
    return result


def apply_ops(path: Path, ops: list[bytes], data: dict[str, Any], hashes: dict[str, int]) -> None:
    """Apply replayed record lines to *data* (dict semantics) and *hashes*."""
    for number, line in enumerate(ops, 1):
        try:
            record = orjson.loads(line)
            key = record[0]
            if type(key) is not str:
                raise TypeError
            if len(record) == 2:
                data[key] = record[1]
                hashes[key] = hash(line)
            elif len(record) == 1:
                data.pop(key, None)
                hashes.pop(key, None)
            else:
                raise TypeError
        except (orjson.JSONDecodeError, IndexError, TypeError):
            # Its commit's checksum held, so it was written like this: a bug, not a crash.
            raise CorruptStoreError(f"{path}: record {number} is not a record") from None


def journal_keys(texts: list[bytes], count: int) -> tuple[list[str], bool]:
    """The key of each record in the commit *texts*, and whether any is a delete.

    Compaction needs only keys; decoding every value would allocate (and
    make the GC walk) objects per record for nothing. Regular expressions
    over whole commits do it at C speed.
    """
    found: list[bytes] = []
    deletes = False
    for text in texts:
        found += _RECORD_KEY.findall(text)  # commit lines start with "{": no match
        # A delete ends in '"]' like a set of a string: look closer only then.
        deletes = deletes or (b'"]\n' in text and _DELETE_LINE.search(text) is not None)
    if len(found) != count:  # cannot happen for commits that passed their checksum
        raise CorruptStoreError("journal records do not all start with a key")
    # JSON strings hold no raw newline, so one decode and split serves all keys.
    keys = b"\n".join(found).decode().split("\n") if found else []
    if "\\" in "".join(keys):
        keys = [k if "\\" not in k else orjson.loads(f'"{k}"') for k in keys]
    return keys, deletes


def is_delete(line: bytes) -> bool:
    """Whether a record line is a delete, ``["key"]`` (a set ends with a value)."""
    return line.endswith(b'"]') and _DELETE.fullmatch(line) is not None


def _plain_commits(raw: bytes) -> Iterator[tuple[int, int, bytes | None, int, bool]]:
    """(start, end, text, first line number, cut short) of each commit in a plain journal.

    Record lines start with ``[`` and commit lines with ``{``, so we can jump
    from commit line to commit line without looking at every record. Bytes
    after the last complete (newline-terminated) commit line are a commit cut
    short.
    """
    start = 0
    first = 1
    while start < len(raw):
        if raw.startswith(b"{", start):
            at = start
        else:
            found = raw.find(b"\n{", start)
            at = found + 1 if found >= 0 else -1
        end = raw.find(b"\n", at) + 1 if at >= 0 else 0
        if end <= 0:  # no (terminated) commit line follows: cannot be complete
            yield start, len(raw), None, first, True
            return
        text = raw[start:end]
        yield start, end, text, first, False
        first += text.count(b"\n")
        start = end


def _gzip_members(raw: bytes) -> Iterator[tuple[int, int, bytes | None, int, bool]]:
    """(start, end, text, first line number, cut short) of each gzip member.

    A member that ends before its gzip trailer, or that does not decompress,
    yields ``None`` and ends the scan; it counts as cut short (a torn append)
    unless an intact member follows it.
    """
    pos = 0
    lineno = 1
    while pos < len(raw):
        text, end, state = _inflate_member(raw, pos)
        if state == _BAD:
            # Garbled by a power cut mid-append (zeroed or garbage sectors),
            # unless an intact member follows: then it is damage.
            yield pos, len(raw), None, lineno, not _intact_member_after(raw, pos + 1)
            return
        if state == _SHORT:  # every byte read, and the member is not complete
            # Cut short by a crash, unless an intact member follows: then a
            # damaged byte made this member swallow the ones after it.
            yield pos, len(raw), None, lineno, not _intact_member_after(raw, pos + 1)
            return
        assert text is not None
        yield pos, end, text, lineno, False
        lineno += text.count(b"\n")
        pos = end


_WHOLE, _SHORT, _BAD = "whole", "short", "bad"
_FIRST_READ = 512
_MAX_READ = 1 << 20


def _inflate_member(raw: bytes, pos: int) -> tuple[bytes | None, int, str]:
    """Decompress the gzip member at *pos*: (text, end, _WHOLE / _SHORT / _BAD).

    The inflater is fed in blocks that double in size. Fed the whole rest of
    the file at once, it would copy everything after the member's end into
    ``unused_data``, for every member: replay would be quadratic. This way
    each member costs at most about twice its size plus one small block.
    """
    view = memoryview(raw)
    inflater = zlib.decompressobj(31)
    parts: list[bytes] = []
    at, step = pos, _FIRST_READ
    while at < len(raw):
        piece = view[at : at + step]
        try:
            parts.append(inflater.decompress(piece))
        except zlib.error:
            return None, len(raw), _BAD
        at += len(piece)
        if inflater.eof:
            return b"".join(parts), at - len(inflater.unused_data), _WHOLE
        step = min(2 * step, _MAX_READ)
    return None, len(raw), _SHORT


def _intact_member_after(raw: bytes, start: int) -> bool:
    """Whether a complete gzip member starts anywhere in *raw* from *start* on."""
    at = raw.find(_GZIP_MAGIC, start)
    while at >= 0:
        if _inflate_member(raw, at)[2] == _WHOLE:
            return True
        at = raw.find(_GZIP_MAGIC, at + 1)
    return False


def _torn_in_place(
    raw: bytes,
    good_end: int,
    later: Iterator[tuple[int, int, bytes | None, int, bool]],
    expected: int,
) -> bool:
    """Whether the bad bytes after *good_end* are an append torn by a power loss.

    A power cut can keep some sectors of an append that was never synced and
    not others, which then read back as zeros or garbage; the commit line
    may have survived. tastypy only ever writes UTF-8 text without NUL
    bytes, so zeros or bytes that are not UTF-8 are that tear's mark, while
    a hand edit (or any change that keeps the text readable) is damage. So is
    anything followed by an intact commit, or reaching past the commit line
    of commit *expected*: only the last append can be torn.
    """
    rest = raw[good_end:]
    if b"\0" not in rest:
        try:
            rest.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return False
    if any(int(m[1]) > expected for m in _COMMIT_LINE.finditer(rest)):
        return False  # it spans a later commit's line: more than the last append
    if any(_check_commit(text, None) is None for _s, _e, text, _l, _c in later):
        return False
    return not _intact_commit_inside(rest)


def _intact_commit_inside(rest: bytes) -> bool:
    """Whether a whole, valid commit ends somewhere in *rest* (after garbage, say).

    Damage over a commit line merges its commit with the next into one bad
    piece; the later commit, intact, shows that this was no torn append.
    """
    for match in _COMMIT_LINE.finditer(rest):
        records, crc = int(match[2]), int(match[3])
        before = rest[: match.start()]
        if records == 0 or not before.endswith(b"\n"):
            continue
        # The body is the last `records` lines; the first may have lost its
        # start to the damage, so try each place a record line can begin.
        first_end = len(before) - 1
        for _ in range(records - 1):
            first_end = before.rfind(b"\n", 0, first_end)
            if first_end < 0:
                break
        if first_end < 0:
            continue
        line_start = before.rfind(b"\n", 0, first_end) + 1
        at = before.find(b'["', line_start, first_end)
        while at >= 0:
            if zlib.crc32(before[at:]) == crc:
                return True
            at = before.find(b'["', at + 1, first_end)
    return False


def _check_commit(text: bytes | None, number: int | None) -> str | None:
    """Why *text* is not a valid commit numbered *number* (any, if None)."""
    if text is None:
        return "is unreadable"
    if not text.endswith(b"\n"):
        return "is incomplete"
    cut = text.rfind(b"\n", 0, len(text) - 1) + 1
    try:
        trailer = orjson.loads(text[cut:])
        records, crc, found = trailer["records"], trailer["crc32"], trailer["commit"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "has no valid commit line"
    body = text[:cut]
    if number is not None and found != number:
        return f"is numbered {found!r}"
    if body.count(b"\n") != records or zlib.crc32(body) != crc:
        return "fails its checksum"
    return None


class Journal:
    """The writer's handle on the current journal file.

    Appends go at a known offset with ``pwrite``; a failed append is cut off
    again, so a later append never lands after garbage.
    """

    def __init__(self, path: Path, end: int, commits: int, gzipped: bool, durable: bool) -> None:
        self.path = path
        self.gzipped = gzipped
        self.durable = durable
        self.end = end
        self.commits = commits
        self._fd = _fs.open_inside(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._tail_dirty = _fs.fstat_size(self._fd) != end

    def append(self, records: list[bytes]) -> None:
        """Durably append one commit; on failure the journal is as before."""
        self._check_still_named()
        data = commit_bytes(records, self.commits + 1, self.gzipped)
        if self._tail_dirty:
            self.cut()
        try:
            view = memoryview(data)
            offset = self.end
            while view:
                written = _fs.pwrite(self._fd, view, offset)
                view = view[written:]
                offset += written
            if self.durable:
                datasync(self._fd)
        except BaseException:
            self._tail_dirty = True
            try:
                self.cut()
            except OSError as exc:
                log.warning("could not cut a failed commit off %s: %s", self.path, exc)
            raise
        self.end += len(data)
        self.commits += 1

    def _check_still_named(self) -> None:
        """Refuse to append to a journal that its path no longer names.

        Deleted (or replaced) under us, the file we hold open is no longer
        the one the manifest names: commits to it would vanish at the next
        open. One ``fstat`` and one ``stat``, about a microsecond each.
        """
        held = _fs.fstat(self._fd)
        try:
            named = _fs.stat(self.path)
        except FileNotFoundError:
            named = None
        if named is None or (named.st_ino, named.st_dev) != (held.st_ino, held.st_dev):
            what = "deleted" if named is None else "replaced by another file"
            raise CorruptStoreError(
                f"{self.path} was {what} while this store was open for writing; nothing "
                "was written, since a commit to it would be lost. The changes are still "
                "in memory: pod.copy(new_path) saves everything to a new store."
            )

    def cut(self) -> None:
        """Cut the file back to the end of the last good commit."""
        _fs.ftruncate(self._fd, self.end)
        if self.durable:
            datasync(self._fd)
        self._tail_dirty = False

    def close(self) -> None:
        if self._fd >= 0:
            _fs.close(self._fd)
            self._fd = -1
