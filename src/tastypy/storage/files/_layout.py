"""Which files make up a store directory, and making or tidying one.

A store directory holds ``manifest.json``, ``chunks/``, one journal named by
the manifest, ``lock``, and for trackers ``tries.jsonl``. Anything else the
manifest does not name is debris of an interrupted compaction or creation.
"""

from __future__ import annotations

import logging
import re
import stat
from pathlib import Path

from ...errors import CorruptStoreError, NotAStoreError
from . import _fs
from ._chunks import CHUNKS
from ._durable import fsync_dir, unlink_quietly, write_new_file
from ._manifest import MANIFEST, MAX_GENERATION, Manifest

__all__ = [
    "JOURNAL_NAME",
    "create_store",
    "journal_name",
    "lost_manifest",
    "refuse_strangers",
    "remove_leftovers",
    "remove_new_store",
]

log = logging.getLogger(__name__)

# \Z, not $: "$" also matches before a final newline, and a name may hold one.
JOURNAL_NAME = re.compile(r"journal-\d{8}\.jsonl(\.gz)?\Z")
_CHUNK_NAME = re.compile(r"\d{8}-\d{6}\.jsonl(\.gz)?\Z")
# What a directory may hold before its manifest exists (an interrupted creation).
# A shared store's writers add their commit lock and registry (docs/SHARED.md).
_FRESH_DIR_ENTRIES = {
    "lock",
    CHUNKS,
    MANIFEST + ".tmp",
    "commit.lock",
    "compact.lock",
    "writers",
    "claims",
}


def journal_name(generation: int, gzipped: bool) -> str:
    """The journal's name in *generation*.

    Raises
    ------
    CorruptStoreError
        If *generation* needs more than the 8 digits of the name (only a
        manifest edited to claim it can get there: a compaction would write
        a store that no longer opens).
    """
    if not 0 <= generation <= MAX_GENERATION:
        raise CorruptStoreError(
            f"generation {generation} would need more than the 8 digits of the store's file "
            "names; not compacting (pod.copy(new_path) writes the data to a new store)"
        )
    return f"journal-{generation:08d}.jsonl" + (".gz" if gzipped else "")


def lost_manifest(path: Path) -> CorruptStoreError | None:
    """The error for a directory holding a store's data but no manifest, if it does.

    An empty journal is what an interrupted creation leaves: it holds no data
    and may be reused. A journal with bytes in it, or data files, may be all
    that is left of a store: never delete or overwrite them.
    """
    found = []
    for name in sorted(_fs.listdir(path)):
        if JOURNAL_NAME.match(name):
            entry = (path / name).lstat()  # a link is not followed, not even to size it
            if not stat.S_ISREG(entry.st_mode):
                raise _fs.not_a_file(path / name, entry.st_mode)
            if entry.st_size:
                found.append(f"{name} ({entry.st_size:,} bytes)")
    chunk_dir = path / CHUNKS
    if chunk_dir.is_dir() and not chunk_dir.is_symlink():
        count = sum(1 for name in _fs.listdir(chunk_dir) if _CHUNK_NAME.match(name))
        if count:
            found.append(f"{count} data file{'s' if count > 1 else ''} in {CHUNKS}/")
    if not found:
        return None
    return CorruptStoreError(
        f"{path}: {MANIFEST} is missing, but the directory holds a store's data "
        f"({', '.join(found)}); refusing to open it, so as not to lose that data. "
        f"Restore {MANIFEST} (e.g. from a backup), or move the directory away to "
        "start a new store there."
    )


def refuse_strangers(path: Path) -> None:
    """Refuse a directory holding anything but debris of an interrupted creation.

    Raises
    ------
    CorruptStoreError
        If it holds a store's data but no manifest (see :func:`lost_manifest`).
    NotAStoreError
        If it holds anything else.
    """
    lost = lost_manifest(path)
    if lost is not None:
        raise lost
    entries = set(_fs.listdir(path)) - _FRESH_DIR_ENTRIES
    strangers = sorted(name for name in entries if not JOURNAL_NAME.match(name))
    chunk_dir = path / CHUNKS
    if chunk_dir.is_symlink() or (chunk_dir.exists() and not chunk_dir.is_dir()):
        strangers.append(CHUNKS)  # data files written there would land elsewhere
    if strangers or (chunk_dir.is_dir() and _fs.listdir(chunk_dir)):
        listed = ", ".join(strangers[:3]) or f"{CHUNKS}/"
        raise NotAStoreError(
            f"{path} is not empty and not a tastypy store (no {MANIFEST}; found "
            f"{listed}); refusing to write into it. Choose a new or empty directory."
        )


def create_store(path: Path, file_size: int, gzipped: bool, *, durable: bool) -> Manifest:
    """Lay out an empty store in *path* (held locked by the caller)."""
    refuse_strangers(path)
    if not (path / CHUNKS).is_dir():
        _fs.mkdir(path / CHUNKS)
    manifest = Manifest(file_size=file_size, gzipped=gzipped)
    manifest.journal = journal_name(0, gzipped)
    manifest.journal_empty = True
    unlink_quietly(path / manifest.journal)
    write_new_file(path / manifest.journal, b"", durable=durable)
    if durable:  # the journal's and chunks/' entries, before a manifest names them
        fsync_dir(path)
    manifest.write(path, durable=durable)
    return manifest


def find_leftovers(path: Path, manifest: Manifest) -> tuple[list[Path], list[CorruptStoreError]]:
    """Entries no manifest names: debris of interrupted compactions, and strangers.

    Returns the debris (files and links, which a writer deletes) and an error
    for each entry that is neither (a directory, FIFO or device: nothing
    tastypy makes, so never deleted).
    """
    keep = {c.file for c in manifest.chunks}
    chunk_dir = path / CHUNKS
    names = _fs.listdir(chunk_dir) if chunk_dir.is_dir() else []
    entries = [chunk_dir / name for name in names if name not in keep]
    entries += [
        path / name
        for name in _fs.listdir(path)
        if (JOURNAL_NAME.match(name) and name != manifest.journal) or name == MANIFEST + ".tmp"
    ]
    debris: list[Path] = []
    strangers: list[CorruptStoreError] = []
    for entry in entries:
        mode = entry.lstat().st_mode
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            debris.append(entry)
        else:
            strangers.append(_fs.not_a_file(entry, mode))
    return debris, strangers


def remove_leftovers(path: Path, manifest: Manifest) -> None:
    """Delete files no manifest names: debris of interrupted compactions.

    Only files are debris (a link is removed, never what it points to); a
    directory, FIFO or device there is nothing tastypy makes.

    Raises
    ------
    CorruptStoreError
        Naming the first entry that is not a file or a link.
    """
    chunk_dir = path / CHUNKS
    if not chunk_dir.is_dir():
        _fs.mkdir(chunk_dir)
    debris, strangers = find_leftovers(path, manifest)
    if strangers:
        raise strangers[0]
    for entry in debris:
        log.debug("removing leftover %s", entry)
        _fs.unlink(entry)


def remove_new_store(target: Path, existed: bool) -> None:
    """Undo the creation of a store at *target* (the directory too, if it is new)."""
    if not existed:
        _fs.rmtree(target)
        return
    for name in _fs.listdir(target):
        if name in _FRESH_DIR_ENTRIES or JOURNAL_NAME.match(name) or name == MANIFEST:
            entry = target / name
            if entry.is_dir() and not entry.is_symlink():  # never empty a link's target
                _fs.rmtree(entry)
            else:
                unlink_quietly(entry)
