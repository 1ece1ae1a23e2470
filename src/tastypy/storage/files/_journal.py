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
import reprlib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ...errors import CorruptStoreError
from . import _fs
from ._chunks import line_hash
from ._commits import check_commit, gzip_members, plain_commits, torn_in_place
from ._durable import datasync

__all__ = [
    "Journal",
    "Replay",
    "apply_ops",
    "commit_bytes",
    "is_delete",
    "journal_keys",
    "journal_records",
    "renumbered",
    "replay",
    "split_record",
    "write_tail",
]

log = logging.getLogger(__name__)


_RECORD_KEY = re.compile(rb'^\["((?:[^"\\\n]|\\.)*)"', re.MULTILINE)
_DELETE = re.compile(rb'\["(?:[^"\\\n]|\\.)*"\]')
_DELETE_LINE = re.compile(rb'^\["(?:[^"\\\n]|\\.)*"\]$', re.MULTILINE)


@dataclass
class Replay:
    """What a journal file holds: its valid commits and where they end."""

    ops: list[bytes] = field(default_factory=list)  # record lines of valid commits, in order
    ends: list[int] = field(default_factory=list)  # byte offset just past each valid commit
    texts: list[bytes] = field(default_factory=list)  # the valid commits, whole
    commits: int = 0
    end: int = 0  # byte offset just past the last valid commit
    torn: int = 0  # bytes after it (a torn tail), 0 if none
    problems: list[str] = field(default_factory=list)  # damage, when not raising


def commit_bytes(records: list[bytes], number: int, gzipped: bool) -> bytes:
    """Encode one commit of *records* (lines without newline)."""
    body = b"\n".join(records) + b"\n" if records else b""
    return _commit_of(body, len(records), number, gzipped)


def _commit_of(body: bytes, records: int, number: int, gzipped: bool) -> bytes:
    """One commit of the record lines *body* (newlines included), numbered *number*."""
    trailer = orjson.dumps({"commit": number, "records": records, "crc32": zlib.crc32(body)})
    data = body + trailer + b"\n"
    if gzipped:
        # Level 1: a sync is latency-bound; compaction recompresses chunks at 6.
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
        data = compressor.compress(data) + compressor.flush()
    return data


def renumbered(path: Path, raw: bytes, gzipped: bool, *, first: int, to: int) -> tuple[bytes, int]:
    """The whole commits *raw*, numbered from *first*, numbered from *to* instead; and their count.

    For the commits made while a compaction folded the ones before them:
    they open the new journal. Checked as :func:`replay` checks them;
    anything but whole, valid commits raises :class:`CorruptStoreError`.
    """
    rep = replay(path, raw, gzipped, first=first)
    if rep.torn:
        raise CorruptStoreError(
            f"{path}: commits {first} to {first + rep.commits} are followed by {rep.torn} "
            "bytes that are no commit; not compacting"
        )
    out = []
    for number, text in enumerate(rep.texts, to):
        cut = text.rfind(b"\n", 0, len(text) - 1) + 1
        out.append(_commit_of(text[:cut], text.count(b"\n", 0, cut), number, gzipped))
    return b"".join(out), rep.commits


def replay(
    path: Path, raw: bytes, gzipped: bool, *, strict: bool = True, first: int = 1
) -> Replay:
    """Check and split the journal bytes *raw* into commits.

    Only an incomplete final append is a torn tail: trailing bytes holding
    no complete commit line (plain), or a gzip member cut short. Anything
    else that fails its checks (a complete commit line whose count, CRC-32 or
    number is wrong, a gzip member that does not decompress) is damage, last
    commit or not: with *strict* it raises :class:`CorruptStoreError` naming
    the file and line; otherwise it is listed in ``Replay.problems`` and
    replay stops there. *first* is the number the first commit of *raw*
    must have.
    """
    result = Replay()
    pieces = gzip_members(raw) if gzipped else plain_commits(raw)
    for _start, end, text, lineno, cut_short in pieces:
        problem = check_commit(text, first + result.commits)
        if problem is None:
            assert text is not None
            result.ops.extend(text.split(b"\n")[:-2])
            result.texts.append(text)
            result.commits += 1
            result.end = end
            result.ends.append(end)
            continue
        if cut_short or (
            not gzipped and torn_in_place(raw, result.end, pieces, first + result.commits)
        ):
            # An append a crash interrupted: cut short, or (power loss) with
            # sectors that never reached the disk read back as zeros or garbage.
            result.torn = len(raw) - result.end
            break
        message = (
            f"{path}:{lineno}: commit {first + result.commits} {problem} (not an incomplete "
            "last append, so no crash can have left it like this: the file is damaged)"
        )
        if strict:
            raise CorruptStoreError(message)
        result.problems.append(message)
        break
    return result


def apply_ops(path: Path, ops: list[bytes], data: dict[str, Any], hashes: dict[str, int]) -> None:
    """Apply replayed record lines to *data* (dict semantics) and *hashes*.

    Only the exact forms tastypy writes are records: ``["key", value]`` and
    ``["key"]`` (compaction finds keys and deletes by their bytes, so a
    line that merely parses to the same thing would be folded in wrong).
    """
    for number, line in enumerate(ops, 1):
        key, record = _record(path, number, line)
        if len(record) == 2:
            data[key] = record[1]
            hashes[key] = line_hash(line)
        else:
            data.pop(key, None)
            hashes.pop(key, None)


def journal_keys(texts: list[bytes], count: int) -> tuple[list[str], bool]:
    """The key of each record in the commit *texts*, and whether any is a delete.

    Compaction needs only keys; decoding every value would allocate (and
    make the GC walk) objects per record for nothing. Regular expressions
    over whole commits do it at C speed.
    """
    keys: list[str] = []
    deletes = False
    escaped = False
    for text in texts:
        found = _RECORD_KEY.findall(text)  # commit lines start with "{": no match
        # A delete ends in '"]' like a set of a string: look closer only then.
        deletes = deletes or (b'"]\n' in text and _DELETE_LINE.search(text) is not None)
        if found:
            # JSON strings hold no raw newline, so one decode and split serves
            # a commit's keys. One commit at a time: a background fold must
            # not hold the GIL for one long call (the syncs wait for it).
            joined = b"\n".join(found)
            escaped = escaped or b"\\" in joined
            keys += joined.decode().split("\n")
    if len(keys) != count:  # cannot happen for commits that passed their checksum
        raise CorruptStoreError("journal records do not all start with a key")
    if escaped:
        keys = [k if "\\" not in k else orjson.loads(f'"{k}"') for k in keys]
    return keys, deletes


def is_delete(line: bytes) -> bool:
    """Whether a record line is a delete, ``["key"]`` (a set ends with a value)."""
    return line.endswith(b'"]') and _DELETE.fullmatch(line) is not None


class Journal:
    """The writer's handle on the current journal file.

    Appends go at a known offset with ``pwrite``; a failed append is cut off
    again, so a later append never lands after garbage.
    """

    def __init__(  # noqa: PLR0917  # the journal's state, as the writer holds it
        self,
        path: Path,
        end: int,
        commits: int,
        gzipped: bool,
        durable: bool,
        first: int = 1,
    ) -> None:
        self.path = path
        self.first = first  # the number of the file's first commit
        self.gzipped = gzipped
        self.durable = durable
        self.end = end
        self.commits = commits
        self._fd = _fs.open_inside(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._tail_dirty = _fs.fstat_size(self._fd) != end

    def append(self, records: list[bytes]) -> None:
        """Durably append one commit; on failure the journal is as before."""
        self._check_still_named()
        data = commit_bytes(records, self.first + self.commits, self.gzipped)
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

    def read_range(self, start: int, stop: int) -> bytes:
        """The file's bytes from *start* to *stop*."""
        parts = []
        while start < stop:
            part = os.pread(self._fd, stop - start, start)
            if not part:
                break
            parts.append(part)
            start += len(part)
        return b"".join(parts)

    def read_after(self) -> bytes:
        """The bytes after the last commit this handle knows of (others' commits, shared)."""
        return self.read_range(self.end, _fs.fstat_size(self._fd))

    def stat(self) -> os.stat_result:
        """The file's status (its size, and whether it was deleted: ``st_nlink``)."""
        return _fs.fstat(self._fd)

    def unlinked(self) -> bool:
        """Whether the file was deleted (another writer's compaction replaced it)."""
        return _fs.fstat(self._fd).st_nlink == 0

    def advance(self, nbytes: int, commits: int, *, check_tail: bool = True) -> None:
        """Others appended *commits* commits, *nbytes* long: append after them.

        Without *check_tail* (read without the commit lock, while another
        writer may be appending) whether a torn tail follows is left for the
        next advance under the lock to tell.
        """
        self.end += nbytes
        self.commits += commits
        if check_tail:
            self._tail_dirty = _fs.fstat_size(self._fd) != self.end

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


def journal_records(
    changes: Iterable[tuple[str, bytes | None]],
    hashes: dict[str, int],
    written: list[tuple[str, bytes | None]] | None = None,
) -> tuple[list[bytes], dict[str, int | None]]:
    """The journal records of a batch, and each changed key's line hash once it is applied.

    *hashes* maps each stored key to the hash of its current line; a change
    that leaves a key's line as it is gives no record. The second result maps
    each key the batch changes to its new line's hash, ``None`` if it ends
    deleted: the caller applies it to *hashes* once the commit is durable.
    Hashes are ints, so these dicts stay out of the cyclic GC's way even for
    a big commit. *written*, if given, receives each change that gives a
    record, in order (a shared writer's merge needs them).
    """
    dumps = orjson.dumps
    records: list[bytes] = []
    batch: dict[str, int | None] = {}
    for key, value in changes:
        # The key's line as of the changes seen so far (None: absent).
        now = batch[key] if key in batch else hashes.get(key)
        if value is None:
            if now is not None:
                records.append(b"[" + dumps(key) + b"]")
                batch[key] = None
                if written is not None:
                    written.append((key, None))
            continue
        line = b"".join((b"[", dumps(key), b",", value, b"]"))
        digest = line_hash(line)
        if digest != now:
            records.append(line)
            batch[key] = digest
            if written is not None:
                written.append((key, value))
    return records, batch


def _record(path: Path, number: int, line: bytes) -> tuple[str, list[Any]]:
    """The key and the parsed record of a replayed line, which must be as tastypy writes it.

    Only the exact forms tastypy writes are records: ``["key", value]`` and
    ``["key"]`` (compaction finds keys and deletes by their bytes).
    """
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        # Its commit's checksum held, so it was written like this: a bug, not a crash.
        raise CorruptStoreError(f"{path}: record {number} is not JSON ({exc})") from None
    size = len(record) if type(record) is list and line.startswith(b'["') else 0
    key = record[0] if size else None
    if type(key) is not str or size not in (1, 2) or (size == 1) != is_delete(line):
        raise CorruptStoreError(
            f'{path}: record {number} is not a ["key", value] or ["key"] line '
            f"({reprlib.repr(line[:80])})"
        )
    return key, record


def split_record(path: Path, number: int, line: bytes) -> tuple[str, bytes | None, int | None]:
    """A replayed record line as ``(key, value bytes or None if a delete, line hash)``.

    Checked as :func:`apply_ops` checks it (*number* is its place, for messages).
    """
    key, record = _record(path, number, line)
    if len(record) == 1:
        return key, None, None
    head = orjson.dumps(key)
    if line[1 : 1 + len(head)] == head and line[1 + len(head) : 2 + len(head)] == b",":
        blob = line[2 + len(head) : -1]
    else:  # the key written otherwise than tastypy writes it: encode the value anew
        blob = orjson.dumps(record[1])
    return key, blob, line_hash(line)


def write_tail(path: Path, tail: bytes, *, durable: bool) -> None:
    """Put *tail* (whole commits) into the new, empty journal at *path*, durably."""
    fd = _fs.open_inside(path, os.O_WRONLY)
    try:
        view, offset = memoryview(tail), 0
        while offset < len(tail):
            offset += _fs.pwrite(fd, view[offset:], offset)
        if durable:
            datasync(fd)
    finally:
        _fs.close(fd)
