"""Compaction: fold the journal into the data files, copy-on-write.

:func:`plan` works out which data files the journal's records change;
:func:`write_generation` writes those files anew (and a fresh journal) under
the next generation's names. Nothing here touches the manifest: the caller
makes the new generation real by replacing ``manifest.json`` atomically, and
then deletes the files the old generation no longer needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import CorruptStoreError
from . import _fs
from ._chunks import CHUNKS, Chunk, Fold, chunk_name, split_chunk, write_chunk
from ._durable import fsync_dir, unlink_quietly, write_new_file
from ._journal import Replay, is_delete, journal_keys, replay
from ._layout import journal_name
from ._manifest import Manifest

__all__ = ["Generation", "discard", "fold_journal", "plan", "write_generation"]


@dataclass
class Generation:
    """A new generation whose files are on disk but not yet in the manifest."""

    number: int
    journal: str
    chunks: list[Chunk] = field(default_factory=list)  # the whole new chunk list
    written: list[Chunk] = field(default_factory=list)  # the chunks written anew
    obsolete: list[str] = field(default_factory=list)  # old files they replace


# Big sets and dicts are built this many items at a time: a fold runs in a
# thread beside the writer's syncs, and one C call over a million keys would
# hold the GIL (and so stall a sync) for a tenth of a second or more.
_SLICE = 8192


def plan(chunks: list[Chunk], replayed: Replay) -> tuple[Fold, dict[int, set[str]]]:
    """Reduce a replayed journal to its net effect; find the chunks it changes.

    Returns the fold, and for the ``id()`` of every chunk that must be
    rewritten, the keys of that chunk the fold touches.
    """
    ops = replayed.ops
    keys, deletes = journal_keys(replayed.texts, len(ops))
    touched: set[str] = set()
    for at in range(0, len(keys), _SLICE):  # see _SLICE
        touched.update(keys[at : at + _SLICE])
    affected: dict[int, set[str]] = {}
    in_chunks: set[str] = set()
    for chunk in chunks:
        hits = touched.intersection(chunk.keys)
        if hits:
            in_chunks |= hits
            affected[id(chunk)] = hits
    fold = Fold(in_chunks)
    if deletes:
        fold.apply(zip(keys, [None if is_delete(line) else line for line in ops], strict=True))
    else:  # sets only: the last line of each key wins, in the place of its first
        final: dict[str, bytes] = {}
        for at in range(0, len(keys), _SLICE):
            final.update(zip(keys[at : at + _SLICE], ops[at : at + _SLICE], strict=True))
        fold.take_sets(final, touched)
    if fold.appends and chunks:
        affected.setdefault(id(chunks[-1]), set())  # appends first fill up the last chunk
    return fold, affected


def write_generation(
    directory: Path,
    number: int,
    chunks: list[Chunk],
    fold: Fold,
    affected: dict[int, set[str]],
    *,
    file_size: int,
    gzipped: bool,
    durable: bool,
    before_write: Callable[[], None] | None = None,
) -> Generation:
    """Write generation *number*'s changed chunks and empty journal; fsync them.

    On failure every file written is removed again and the error propagates.
    *before_write*, if given, is called before each file is written (a fold
    in a process of its own checks that its writer still lives).
    """
    new = Generation(number, journal_name(number, gzipped))
    chunk_dir = directory / CHUNKS
    appends = iter(fold.appends.items())

    def emit(records: dict[str, bytes]) -> None:
        if before_write is not None:
            before_write()
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
            lines = split_chunk(where, chunk.entry, _fs.read_file(where), gzipped)
            records = fold.rewrite(chunk, lines, affected[id(chunk)])
            if index == last:
                records.update(itertools.islice(appends, max(0, file_size - len(records))))
            if records:
                emit(records)
        while batch := dict(itertools.islice(appends, file_size)):
            emit(batch)
        # No manifest names the next generation's journal yet: a file by that
        # name is debris of an earlier, failed compaction.
        if before_write is not None:
            before_write()
        unlink_quietly(directory / new.journal)
        write_new_file(directory / new.journal, b"", durable=durable)
        if new.written and durable:
            fsync_dir(chunk_dir)
        if durable:  # the new journal's entry, before the manifest names it
            fsync_dir(directory)
    except BaseException:
        discard(directory, new)
        raise
    return new


def discard(directory: Path, new: Generation) -> None:
    """Remove the files of a generation that will not be installed."""
    for chunk in new.written:
        unlink_quietly(directory / CHUNKS / chunk.entry.file)
    unlink_quietly(directory / new.journal)


def fold_journal(
    path: Path,
    manifest: Manifest,
    chunks: list[Chunk],
    raw: bytes,
    commits: int,
    *,
    durable: bool,
    before_write: Callable[[], None] | None = None,
) -> Generation | None:
    """Write the next generation: *chunks* with the journal *raw* folded in.

    *raw* is the journal as its writer wrote it, *commits* commits, every one
    synced: a journal that no longer reads back whole is not folded in. None
    if the journal changes nothing. The manifest naming the new generation is
    the caller's to write.
    """
    replayed = replay(path / manifest.journal, raw, manifest.gzipped, first=manifest.journal_first)
    if replayed.torn or replayed.commits != commits:
        raise CorruptStoreError(
            f"{path / manifest.journal}: holds {replayed.commits} valid "
            f"commits of the {commits} written; not compacting it"
        )
    if not replayed.ops:
        return None
    fold, affected = plan(chunks, replayed)
    return write_generation(
        path,
        manifest.generation + 1,
        chunks,
        fold,
        affected,
        file_size=manifest.file_size,
        gzipped=manifest.gzipped,
        durable=durable,
        before_write=before_write,
    )
