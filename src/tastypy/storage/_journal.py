"""The journal: one append per sync, checked on replay.

A commit is its record lines followed by a commit line::

    ["key", value]                          set key (in place, or at the end if new)
    ["key"]                                 delete key
    {"commit": 7, "records": 2, "crc32": 1234567}

``crc32`` covers the bytes of the record lines (newlines included); ``commit``
numbers run on from 1 in each journal file. With ``gzipped=True`` each commit
is one gzip member, and concatenated members are a valid gzip file.

Replaying stops at the last complete, valid commit. Anything after it is a
*torn tail* (a commit whose write a crash interrupted): it is reported so the
writer can cut it away. A bad commit followed by a good one cannot be a torn
write: that is damage, raised as :class:`CorruptStoreError`.
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
_RECORD_KEY = re.compile(rb'^\["((?:[^"\\\n]|\\.)*)"', re.MULTILINE)
_DELETE = re.compile(rb'\["(?:[^"\\\n]|\\.)*"\]')
_DELETE_LINE = re.compile(rb'^\["(?:[^"\\\n]|\\.)*"\]$', re.MULTILINE)
_COMMIT_NUMBER = re.compile(rb'\{"commit":(\d{1,18}),"records":\d+,"crc32":\d+\}')


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

    With *strict*, damage raises :class:`CorruptStoreError`; otherwise it is
    listed in ``Replay.problems`` and replay stops there.
    """
    result = Replay()
    pieces = _gzip_members(raw) if gzipped else _plain_commits(raw)
    first_bad: str | None = None
    for _start, end, text, lineno in pieces:
        if first_bad is None:
            problem = _check_commit(text, result.commits + 1)
            if problem is None:
                assert text is not None
                result.ops.extend(text.split(b"\n")[:-2])
                result.texts.append(text)
                result.commits += 1
                result.end = end
                continue
            first_bad = f"{path}:{lineno}: commit {result.commits + 1} {problem}"
        # After the last good commit. A crash leaves only a prefix of one
        # commit; an intact later commit, or an intact commit line numbered
        # beyond the next commit, means the bytes in between were damaged.
        if _check_commit(text, None) is None or _highest_commit(text) > result.commits + 1:
            message = f"{first_bad} (a later commit is intact, so this is damage)"
            if strict:
                raise CorruptStoreError(message)
            result.problems.append(message)
            break
    result.torn = len(raw) - result.end if not result.problems else 0
    return result


def _highest_commit(text: bytes | None) -> int:
    """The highest commit number that still reads as one in *text* (0 if none)."""
    numbers = [int(m) for m in _COMMIT_NUMBER.findall(text or b"")]
    return max(numbers, default=0)


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


def _plain_commits(raw: bytes) -> Iterator[tuple[int, int, bytes | None, int]]:
    """(start, end, text, first line number) of each commit in a plain journal.

    Record lines start with ``[`` and commit lines with ``{``, so we can jump
    from commit line to commit line without looking at every record.
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
            yield start, len(raw), None, first
            return
        text = raw[start:end]
        yield start, end, text, first
        first += text.count(b"\n")
        start = end


def _gzip_members(raw: bytes) -> Iterator[tuple[int, int, bytes | None, int]]:
    """(start, end, text, first line number) of each gzip member.

    An unreadable member yields ``None``; scanning resumes at the next member
    header, so damage in the middle cannot pass for a torn tail.
    """
    view = memoryview(raw)
    pos = 0
    lineno = 1
    while pos < len(raw):
        inflater = zlib.decompressobj(31)
        try:
            text = inflater.decompress(view[pos:])
            complete = inflater.eof
        except zlib.error:
            complete = False
        if not complete:
            following = raw.find(_GZIP_MAGIC, pos + 1)
            end = len(raw) if following < 0 else following
            yield pos, end, None, lineno
            pos = end
            continue
        end = len(raw) - len(inflater.unused_data)
        yield pos, end, text, lineno
        lineno += text.count(b"\n")
        pos = end


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
        self._fd = _fs.open_fd(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._tail_dirty = _fs.fstat_size(self._fd) != end

    def append(self, records: list[bytes]) -> None:
        """Durably append one commit; on failure the journal is as before."""
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
