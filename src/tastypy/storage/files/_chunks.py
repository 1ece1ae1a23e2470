"""Data files ("chunks"): up to ``file_size`` lines ``["key", value]`` each.

A chunk is never modified: compaction writes a changed chunk anew under a
fresh name (``<generation>-<serial>.jsonl``), and the manifest says which
files make up the store.
"""

from __future__ import annotations

import gzip
import operator
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..._codec import is_record
from ...errors import CorruptStoreError
from . import _fs
from ._durable import write_new_file
from ._manifest import MANIFEST, ChunkEntry

__all__ = [
    "CHUNKS",
    "Chunk",
    "Fold",
    "chunk_name",
    "line_hash",
    "line_hashes",
    "load_chunk",
    "parse_records",
    "split_chunk",
    "write_chunk",
]

CHUNKS = "chunks"

# A writer keeps the hash of every stored line (to write nothing for a value
# set to what it was). Python's hash has 64 bits: an int of three 30-bit
# digits, 48 bytes with its allocation; 60 bits fit in two, 32 bytes. That
# is 16 MB less for a store of a million keys, for a chance of 2**-60 that
# a changed line looks unchanged.
_LINE_HASH_MASK = (1 << 60) - 1


def line_hash(line: bytes) -> int:
    """The hash a writer keeps of a stored line."""
    return hash(line) & _LINE_HASH_MASK


def line_hashes(lines: Iterable[bytes]) -> Iterator[int]:
    """:func:`line_hash` of each of *lines*, at C speed."""
    return map(_LINE_HASH_MASK.__and__, map(hash, lines))


class Chunk:
    """A data file and, in memory, the keys it holds (in file order)."""

    __slots__ = ("entry", "keys")

    def __init__(self, entry: ChunkEntry, keys: list[str]) -> None:
        self.entry = entry
        self.keys = keys


class LazyChunk(Chunk):
    """A data file whose keys are read only when first asked for.

    For a shared writer following another's compaction: it has every value
    already, and needs a data file's keys only to compact, which it does
    with the files of the generation it follows still in place.
    """

    __slots__ = ("_keys", "_load")

    def __init__(self, entry: ChunkEntry, load: Callable[[], list[str]]) -> None:
        self.entry = entry
        self._load: Callable[[], list[str]] | None = load
        self._keys: list[str] = []

    @property
    def keys(self) -> list[str]:
        if self._load is not None:
            self._keys, self._load = self._load(), None
        return self._keys

    @keys.setter
    def keys(self, keys: list[str]) -> None:
        self._keys, self._load = keys, None


_MAX_SERIAL = 999_999  # the 6 digits of the file names


def chunk_name(generation: int, serial: int, gzipped: bool) -> str:
    """The name of data file *serial* of *generation*.

    Raises
    ------
    CorruptStoreError
        If *serial* needs more than the 6 digits of the name: a store of more
        than a million data files (a compaction would write names that the
        manifest refuses on the next open).
    """
    if not 0 <= serial <= _MAX_SERIAL:
        raise CorruptStoreError(
            f"a store of more than {_MAX_SERIAL + 1:,} data files is not supported; not "
            "compacting (pod.copy(new_path, file_size=...) with a larger file_size "
            "writes the data to fewer files)"
        )
    return f"{generation:08d}-{serial:06d}.jsonl" + (".gz" if gzipped else "")


def split_chunk(where: Path, entry: ChunkEntry, data: bytes, gzipped: bool) -> list[bytes]:
    """Check *data* against its manifest entry and split it into lines."""
    if len(data) != entry.nbytes or zlib.crc32(data) != entry.crc32:
        raise CorruptStoreError(
            f"{where}: size or checksum differs from {MANIFEST} (file damaged or truncated)"
            + _first_bad_line(data, gzipped)
        )
    if gzipped:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptStoreError(f"{where}: not a valid gzip file ({exc})") from None
    lines = data.split(b"\n")
    if lines.pop() != b"" or len(lines) != entry.records:
        raise CorruptStoreError(
            f"{where}: holds {len(lines)} records, {MANIFEST} says {entry.records}"
        )
    return lines


def _first_bad_line(data: bytes, gzipped: bool) -> str:
    """Point at the first line that no longer parses, if any, to help a human."""
    try:
        text = gzip.decompress(data) if gzipped else data
    except (OSError, EOFError, zlib.error):
        return ""
    for lineno, line in enumerate(text.split(b"\n")[:-1], 1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return f"; first unreadable line: {lineno}"
        if not is_record(record):
            return f"; first unreadable line: {lineno}"
    return ""


def parse_records(where: Path, lines: list[bytes]) -> list[Any]:
    """Parse chunk lines into ``[key, value]`` pairs, naming the bad line if any."""
    try:
        # One C-level parse of the whole chunk is far faster than a loop.
        pairs: list[Any] = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        pairs = []
    if (
        len(pairs) == len(lines)
        and set(map(type, pairs)) <= {list}
        and set(map(len, pairs)) <= {2}
        and set(map(type, map(_first, pairs))) <= {str}
    ):
        return pairs
    for lineno, line in enumerate(lines, 1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise CorruptStoreError(f"{where}:{lineno}: bad JSON ({exc})") from None
        if not is_record(record):
            raise CorruptStoreError(f'{where}:{lineno}: not a ["key", value] pair')
    raise CorruptStoreError(f"{where}: lines do not split into records")


_first = operator.itemgetter(0)


def load_chunk(
    where: Path,
    entry: ChunkEntry,
    raw: bytes,
    gzipped: bool,
    *,
    into: dict[str, Any],
    hashes: dict[str, int],
) -> Chunk:
    """Check and parse one data file into the dict *into*; note each line's hash."""
    lines = split_chunk(where, entry, raw, gzipped)
    pairs = parse_records(where, lines)
    keys = list(map(_first, pairs))
    before = len(into)
    into.update(pairs)
    if len(into) != before + len(keys):
        raise CorruptStoreError(f"{where}: holds a key that an earlier data file holds too")
    hashes.update(zip(keys, line_hashes(lines), strict=True))
    return Chunk(entry, keys)


def write_chunk(
    directory: Path, name: str, lines: list[bytes], *, gzipped: bool, durable: bool
) -> ChunkEntry:
    """Write a new data file of *lines*; return its manifest entry."""
    data = b"\n".join(lines) + b"\n"
    if gzipped:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path = directory / name
    try:
        write_new_file(path, data, durable=durable)
    except FileExistsError:  # debris of an earlier, failed compaction of this generation
        _fs.unlink(path)
        write_new_file(path, data, durable=durable)
    return ChunkEntry(name, len(lines), len(data), zlib.crc32(data))


class Fold:
    """A sequence of sets and deletes, reduced to its net effect on the chunks.

    ``updates``: keys still at their place in the chunks, with new lines;
    ``deletes``: keys removed from the chunks; ``appends``: keys that end up
    after everything in the chunks, in order (new keys, and keys deleted then
    set again). This is exactly Python's dict semantics.
    """

    def __init__(self, in_chunks: set[str]) -> None:
        self.in_chunks = in_chunks
        self.updates: dict[str, bytes] = {}
        self.deletes: set[str] = set()
        self.appends: dict[str, bytes] = {}

    def apply(self, records: Iterable[tuple[str, bytes | None]]) -> None:
        """Fold in ``(key, line)`` sets and ``(key, None)`` deletes, in order."""
        in_chunks, updates, deletes, appends = (
            self.in_chunks,
            self.updates,
            self.deletes,
            self.appends,
        )
        for key, line in records:
            if line is None:
                if appends.pop(key, None) is None and key in in_chunks:
                    deletes.add(key)
                    updates.pop(key, None)
            elif key in appends or key not in in_chunks or key in deletes:
                appends[key] = line
            else:
                updates[key] = line

    def take_sets(self, final: dict[str, bytes], touched: set[str]) -> None:
        """Fold in the net effect of sets only: each key's last line, in order.

        *final* becomes ``updates`` as it is (no copy): its keys that are not
        in the chunks are only ever looked up through ``appends``.
        """
        self.updates = final
        in_chunks = self.in_chunks
        if len(touched) > len(in_chunks):  # a Python loop, not one long C call (see plan())
            self.appends = {k: line for k, line in final.items() if k not in in_chunks}

    def rewrite(self, chunk: Chunk, old_lines: list[bytes], hits: set[str]) -> dict[str, bytes]:
        """The records *chunk* holds after the fold, in order.

        *hits* are the chunk's keys that the fold touches; only they need
        looking at, the rest is copied at C speed.
        """
        records = dict(zip(chunk.keys, old_lines, strict=True))
        for key in hits:
            if key in self.deletes:
                del records[key]
            elif key in self.updates:
                records[key] = self.updates[key]
        return records
