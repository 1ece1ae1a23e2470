"""Reading a whole store without a lock, while a writer may be compacting it."""

from __future__ import annotations

import time
from pathlib import Path

from ...errors import CorruptStoreError
from . import _fs
from ._chunks import CHUNKS
from ._manifest import MANIFEST, Manifest, read_manifest

__all__ = ["read_snapshot"]

_READ_RETRIES = 50


def read_snapshot(
    path: Path, *, missing_ok: bool = False
) -> tuple[Manifest, dict[str, bytes], bytes | None]:
    """The manifest and the bytes of every file it names, read without a lock.

    If a file is missing because a writer compacted meanwhile, start over with
    the new manifest. A missing journal that the manifest records as empty
    reads as empty: the state as of that manifest. A file that stays missing raises
    :class:`CorruptStoreError`, or with *missing_ok* is left out (the journal
    as ``None``).
    """
    for attempt in range(_READ_RETRIES):
        manifest = read_manifest(path)
        files: dict[str, bytes] = {}
        missing: list[str] = []
        for entry in manifest.chunks:
            try:
                files[entry.file] = _fs.read_file(path / CHUNKS / entry.file)
            except FileNotFoundError:
                missing.append(f"{CHUNKS}/{entry.file}")
        try:
            journal: bytes | None = _fs.read_file(path / manifest.journal)
        except FileNotFoundError:
            journal = None
            if manifest.journal_empty:
                journal = b""  # it held nothing when this manifest was written
            else:
                missing.append(manifest.journal)
        if not missing:
            return manifest, files, journal
        if attempt >= 2 and read_manifest(path).generation == manifest.generation:
            if missing_ok:
                return manifest, files, journal
            raise CorruptStoreError(f"{path / missing[0]} is missing but {MANIFEST} names it")
        time.sleep(0.01)  # a writer compacted meanwhile: read the new generation
    raise CorruptStoreError(f"{path}: files named by {MANIFEST} keep vanishing")
