"""Compaction: fold the journal into the data files, copy-on-write.

:func:`plan` works out which data files the journal's records change;
:func:`write_generation` writes those files anew (and a fresh journal) under
the next generation's names. Nothing here touches the manifest: the caller
makes the new generation real by replacing ``manifest.json`` atomically, and
then deletes the files the old generation no longer needs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from ._chunks import CHUNKS, Chunk, Fold, chunk_name, split_chunk, write_chunk
from ._durable import fsync_dir, unlink_quietly, write_new_file
from ._journal import record_key

__all__ = ["Generation", "discard", "journal_name", "plan", "write_generation"]


def journal_name(generation: int, gzipped: bool) -> str:
    return f"journal-{generation:08d}.jsonl" + (".gz" if gzipped else "")


@dataclass
class Generation:
    """A new generation whose files are on disk but not yet in the manifest."""

    number: int
    journal: str
    chunks: list[Chunk] = field(default_factory=list)  # the whole new chunk list
    written: list[Chunk] = field(default_factory=list)  # the chunks written anew
    obsolete: list[str] = field(default_factory=list)  # old files they replace


def plan(chunks: list[Chunk], ops: list[bytes]) -> tuple[Fold, set[int]]:
    """Reduce journal record lines to their net effect; find the chunks it changes.

    Returns the fold and the ``id()`` of every chunk that must be rewritten.
    """
    keys = list(map(record_key, ops))
    touched = {key for key, _ in keys}
    affected: set[int] = set()
    in_chunks: set[str] = set()
    for chunk in chunks:
        hit = touched.intersection(chunk.keys)
        if hit:
            in_chunks |= hit
            affected.add(id(chunk))
    fold = Fold(in_chunks)
    for (key, is_delete), line in zip(keys, ops, strict=True):
        if is_delete:
            fold.remove(key)
        else:
            fold.put(key, line)
    if fold.appends and chunks:
        affected.add(id(chunks[-1]))  # appends first fill up the last chunk
    return fold, affected


def write_generation(
    directory: Path,
    number: int,
    chunks: list[Chunk],
    fold: Fold,
    affected: set[int],
    *,
    file_size: int,
    gzipped: bool,
    durable: bool,
) -> Generation:
    """Write generation *number*'s changed chunks and empty journal; fsync them.

    On failure every file written is removed again and the error propagates.
    """
    new = Generation(number, journal_name(number, gzipped))
    chunk_dir = directory / CHUNKS
    appends = iter(fold.appends.items())

    def emit(records: dict[str, bytes]) -> None:
        name = chunk_name(number, len(new.written), gzipped)
        entry = write_chunk(
            chunk_dir, name, list(records.values()), gzipped=gzipped, durable=durable
        )
        new.written.append(Chunk(entry, list(records)))
        new.chunks.append(new.written[-1])

    try:
        last = len(chunks) - 1
        for index, chunk in enumerate(chunks):
            if id(chunk) not in affected:
                new.chunks.append(chunk)
                continue
            new.obsolete.append(chunk.entry.file)
            where = chunk_dir / chunk.entry.file
            records = fold.rewrite(
                chunk, split_chunk(where, chunk.entry, where.read_bytes(), gzipped)
            )
            if index == last:
                records.update(itertools.islice(appends, max(0, file_size - len(records))))
            if records:
                emit(records)
        while batch := dict(itertools.islice(appends, file_size)):
            emit(batch)
        # No manifest names the next generation's journal yet: a file by that
        # name is debris of an earlier, failed compaction.
        unlink_quietly(directory / new.journal)
        write_new_file(directory / new.journal, b"", durable=durable)
        if new.written and durable:
            fsync_dir(chunk_dir)
    except BaseException:
        discard(directory, new)
        raise
    return new


def discard(directory: Path, new: Generation) -> None:
    """Remove the files of a generation that will not be installed."""
    for chunk in new.written:
        unlink_quietly(directory / CHUNKS / chunk.entry.file)
    unlink_quietly(directory / new.journal)
