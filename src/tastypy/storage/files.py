"""The local directory engine.

Layout (see ``docs/FORMAT.md``)::

    my.pod/
      manifest.json                 settings, generation, list of data files
      chunks/00000012-000003.jsonl  up to file_size lines ``["key", value]``
      lock                          flock'ed while open for writing

A commit is copy-on-write: every data file the commit touches is written
anew under a fresh name, fsynced, and then a new manifest naming the new
files atomically replaces the old one. Only after that are the old files
deleted. A crash at any instant therefore leaves either the old or the new
manifest, and every file either names. Files not named by the manifest are
leftovers of an interrupted commit and are removed on the next writable open.
"""

from __future__ import annotations

import gzip
import itertools
import logging
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..errors import CorruptStoreError, LockedError, NotAStoreError, ReadOnlyError, SettingsError
from ._durable import DirSyncError, fsync_dir, unlink_quietly, write_new_file
from ._lock import StoreLock
from ._manifest import MANIFEST, ChunkEntry, Manifest, read_manifest

__all__ = ["DEFAULT_FILE_SIZE", "FileStorage"]

log = logging.getLogger(__name__)

DEFAULT_FILE_SIZE = 1000
CHUNKS = "chunks"
_FRESH_DIR_ENTRIES = {"lock", CHUNKS, MANIFEST + ".tmp"}
_READ_RETRIES = 50


class _Chunk:
    """In-memory view of one data file: its entry and each key's line hash."""

    __slots__ = ("entry", "hashes")

    def __init__(self, entry: ChunkEntry, hashes: dict[str, int]) -> None:
        self.entry = entry
        self.hashes = hashes  # key -> hash(line), in file order


class FileStorage:
    """A store in a local directory; implements :class:`tastypy.storage.Storage`.

    Parameters
    ----------
    path
        The store directory, created (with parents) if missing.
    file_size, gzipped
        Settings of a new store; for an existing store, ``None`` means "as
        stored" and a different explicit value raises :class:`SettingsError`.
    readonly
        Never write, never lock; the store must exist.
    durable
        ``fsync`` data and directories before a commit returns (default).
    timeout
        Seconds to wait for another writer's lock (``None``: forever).

    Notes
    -----
    Not thread-safe: the owning :class:`PersistentOrderedDict` serializes
    calls. One writer per store across processes (an OS lock); any number of
    read-only readers, which retry if a concurrent commit deletes a file
    under them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        file_size: int | None = None,
        gzipped: bool | None = None,
        readonly: bool = False,
        durable: bool = True,
        timeout: float | None = 0.0,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.durable = durable
        self._pid = os.getpid()
        self._lock: StoreLock | None = None
        self._chunks: list[_Chunk] = []
        self._where: dict[str, _Chunk] = {}
        self._dir_sync_owed = False  # a rename whose directory fsync failed
        if readonly:
            if not (self.path / MANIFEST).exists():
                what = "does not exist" if not self.path.exists() else "is not a tastypy store"
                raise NotAStoreError(f"{self.path} {what} (no {MANIFEST})")
            self._manifest = read_manifest(self.path)
        else:
            self._manifest = self._open_for_writing(file_size, gzipped, timeout)
        try:
            _check_setting(self.path, "file_size", file_size, self._manifest.file_size)
            _check_setting(self.path, "gzipped", gzipped, self._manifest.gzipped)
        except BaseException:
            self.close()
            raise

    # -- settings -----------------------------------------------------------

    @property
    def file_size(self) -> int:
        return self._manifest.file_size

    @property
    def gzipped(self) -> bool:
        return self._manifest.gzipped

    @property
    def meta(self) -> dict[str, Any]:
        """Free-form settings of the layer above (kind, sync_at, ...)."""
        return dict(self._manifest.meta)

    def set_meta(self, meta: dict[str, Any]) -> None:
        """Durably replace the free-form settings."""
        self._check_writable()
        if meta != self._manifest.meta:
            old = self._manifest.meta
            self._manifest.meta = dict(meta)
            try:
                self._manifest.write(self.path, durable=self.durable)
            except BaseException:
                self._manifest.meta = old
                raise

    # -- the Storage protocol -------------------------------------------------

    def load(self) -> Iterator[tuple[str, Any]]:
        """Yield every ``(key, value)`` in order, checking every file.

        Raises
        ------
        CorruptStoreError
            Naming the file (and line) that is damaged.
        """
        if self.readonly:
            raw = self._snapshot_files()
        else:
            self._manifest = read_manifest(self.path)
        self._chunks, self._where = [], {}
        where = self._where
        for entry in self._manifest.chunks:
            data = raw[entry.file] if self.readonly else self._read_file(entry)
            lines = self._split(entry, data)
            chunk = _Chunk(entry, {})
            self._chunks.append(chunk)
            hashes = chunk.hashes
            for lineno, line in enumerate(lines, 1):
                key, value = self._parse(entry, lineno, line)
                if key in where:
                    raise CorruptStoreError(
                        f"{self._chunk_path(entry)}:{lineno}: key {key!r} appears twice"
                    )
                hashes[key] = hash(line)
                where[key] = chunk
                yield key, value

    def commit(self, changes: Sequence[tuple[str, bytes | None]]) -> None:
        """Apply *changes* atomically and durably.

        ``(key, encoded_value)`` sets a key (in place if it exists, else at the
        end); ``(key, None)`` deletes it (a missing key is ignored). Setting a
        key to the bytes it already has writes nothing.
        """
        self._check_writable()
        appends: dict[str, bytes] = {}
        updates: dict[str, bytes] = {}
        deletes: set[str] = set()
        where = self._where
        for key, value in changes:
            if value is None:
                if appends.pop(key, None) is None and key in where and key not in deletes:
                    deletes.add(key)
                    updates.pop(key, None)
                continue
            line = b"[" + orjson.dumps(key) + b"," + value + b"]"
            if key in appends:
                appends[key] = line
            elif key in where and key not in deletes:
                if hash(line) == where[key].hashes[key]:
                    updates.pop(key, None)
                else:
                    updates[key] = line
            else:
                appends[key] = line
        if self._dir_sync_owed:
            fsync_dir(self.path)
            self._dir_sync_owed = False
        if appends or updates or deletes:
            self._rewrite(appends, updates, deletes)

    def close(self) -> None:
        """Release the write lock. Idempotent."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- opening --------------------------------------------------------------

    def _open_for_writing(
        self, file_size: int | None, gzipped: bool | None, timeout: float | None
    ) -> Manifest:
        if self.path.exists() and not self.path.is_dir():
            raise NotAStoreError(f"{self.path} is a file, not a store directory")
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        if created and self.durable:
            fsync_dir(self.path.parent)
        self._lock = StoreLock(self.path, timeout)
        try:
            if (self.path / MANIFEST).exists():
                manifest = read_manifest(self.path)
                self._remove_leftovers(manifest)
                return manifest
            return self._create(file_size, gzipped)
        except BaseException:
            self.close()
            raise

    def _create(self, file_size: int | None, gzipped: bool | None) -> Manifest:
        strangers = sorted(set(os.listdir(self.path)) - _FRESH_DIR_ENTRIES)
        chunk_dir = self.path / CHUNKS
        if strangers or (chunk_dir.is_dir() and os.listdir(chunk_dir)):
            listed = ", ".join(strangers[:3]) or f"{CHUNKS}/"
            raise NotAStoreError(
                f"{self.path} is not empty and not a tastypy store (no {MANIFEST}; found "
                f"{listed}); refusing to write into it. Choose a new or empty directory."
            )
        chunk_dir.mkdir(exist_ok=True)
        manifest = Manifest(
            file_size=DEFAULT_FILE_SIZE if file_size is None else file_size,
            gzipped=bool(gzipped),
        )
        manifest.write(self.path, durable=self.durable)
        return manifest

    def _remove_leftovers(self, manifest: Manifest) -> None:
        """Delete data files no manifest names: debris of interrupted commits."""
        keep = {c.file for c in manifest.chunks}
        chunk_dir = self.path / CHUNKS
        chunk_dir.mkdir(exist_ok=True)
        for name in os.listdir(chunk_dir):
            if name not in keep:
                log.debug("removing leftover %s", chunk_dir / name)
                os.unlink(chunk_dir / name)

    # -- reading --------------------------------------------------------------

    def _chunk_path(self, entry: ChunkEntry) -> Path:
        return self.path / CHUNKS / entry.file

    def _read_file(self, entry: ChunkEntry) -> bytes:
        try:
            return self._chunk_path(entry).read_bytes()
        except FileNotFoundError:
            raise CorruptStoreError(
                f"{self._chunk_path(entry)} is missing but {self.path / MANIFEST} names it"
            ) from None

    def _snapshot_files(self) -> dict[str, bytes]:
        """Read the manifest and all its files; retry if a writer replaced them."""
        for _ in range(_READ_RETRIES):
            self._manifest = read_manifest(self.path)
            try:
                return {c.file: self._chunk_path(c).read_bytes() for c in self._manifest.chunks}
            except FileNotFoundError:
                time.sleep(0.01)  # a concurrent commit replaced the generation
        raise CorruptStoreError(f"{self.path}: data files named by {MANIFEST} keep vanishing")

    def _split(self, entry: ChunkEntry, data: bytes) -> list[bytes]:
        where = self._chunk_path(entry)
        if len(data) != entry.nbytes or zlib.crc32(data) != entry.crc32:
            raise CorruptStoreError(
                f"{where}: size or checksum differs from {MANIFEST} (file damaged or truncated)"
            )
        if self._manifest.gzipped:
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

    @staticmethod
    def _parse_error(path: Path, lineno: int, why: str) -> CorruptStoreError:
        return CorruptStoreError(f"{path}:{lineno}: {why}")

    def _parse(self, entry: ChunkEntry, lineno: int, line: bytes) -> tuple[str, Any]:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise self._parse_error(self._chunk_path(entry), lineno, f"bad JSON ({exc})") from None
        if type(record) is not list or len(record) != 2 or type(record[0]) is not str:
            raise self._parse_error(self._chunk_path(entry), lineno, 'not a ["key", value] pair')
        return record[0], record[1]

    # -- writing --------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            raise ReadOnlyError(f"{self.path} is open read-only")
        if self._lock is None:
            raise LockedError(f"{self.path}: storage is closed")
        if os.getpid() != self._pid:
            raise LockedError(
                f"{self.path} was opened by process {self._pid}; this forked child "
                "may not write to it (open it in the child instead)"
            )

    def _rewrite(
        self, appends: dict[str, bytes], updates: dict[str, bytes], deletes: set[str]
    ) -> None:
        affected = {id(self._where[k]) for k in (*updates, *deletes)}
        if appends and self._chunks:
            affected.add(id(self._chunks[-1]))
        generation = self._manifest.generation + 1
        written: list[_Chunk] = []
        try:
            new_chunks = self._write_chunks(
                generation,
                affected,
                appends=appends,
                updates=updates,
                deletes=deletes,
                written=written,
            )
            if written and self.durable:
                fsync_dir(self.path / CHUNKS)
            self._write_manifest(generation, new_chunks)
        except DirSyncError:
            # The new manifest is in place: keep its files, owe the fsync.
            self._dir_sync_owed = True
            self._adopt(new_chunks, written, affected, deletes)
            raise
        except BaseException:
            for chunk in written:
                unlink_quietly(self._chunk_path(chunk.entry))
            raise
        self._adopt(new_chunks, written, affected, deletes)

    def _write_chunks(
        self,
        generation: int,
        affected: set[int],
        *,
        appends: dict[str, bytes],
        updates: dict[str, bytes],
        deletes: set[str],
        written: list[_Chunk],
    ) -> list[_Chunk]:
        """Write the affected chunks anew; return the new chunk list.

        Every file written is appended to *written* as soon as it exists, so
        the caller can remove them all if anything fails.
        """
        file_size = self._manifest.file_size
        pending = iter(appends.items())
        new_chunks: list[_Chunk] = []
        last = len(self._chunks) - 1
        for index, chunk in enumerate(self._chunks):
            if id(chunk) not in affected:
                new_chunks.append(chunk)
                continue
            old_lines = self._split(chunk.entry, self._read_file(chunk.entry))
            records = {
                k: updates.get(k, line)
                for k, line in zip(chunk.hashes, old_lines, strict=True)
                if k not in deletes
            }
            if index == last:
                records.update(itertools.islice(pending, max(0, file_size - len(records))))
            if records:
                new_chunks.append(self._write_chunk(generation, len(written), records))
                written.append(new_chunks[-1])
        while batch := dict(itertools.islice(pending, file_size)):
            new_chunks.append(self._write_chunk(generation, len(written), batch))
            written.append(new_chunks[-1])
        return new_chunks

    def _write_chunk(self, generation: int, serial: int, records: dict[str, bytes]) -> _Chunk:
        lines = list(records.values())
        data = b"\n".join(lines) + b"\n"
        if self.gzipped:
            data = gzip.compress(data, compresslevel=6, mtime=0)
        name = f"{generation:08d}-{serial:06d}.jsonl" + (".gz" if self.gzipped else "")
        path = self.path / CHUNKS / name
        try:
            write_new_file(path, data, durable=self.durable)
        except FileExistsError:  # debris of an earlier failed commit of this generation
            os.unlink(path)
            write_new_file(path, data, durable=self.durable)
        entry = ChunkEntry(name, len(lines), len(data), zlib.crc32(data))
        return _Chunk(entry, {k: hash(line) for k, line in records.items()})

    def _write_manifest(self, generation: int, new_chunks: list[_Chunk]) -> None:
        manifest = self._manifest
        old = manifest.chunks
        manifest.chunks = [c.entry for c in new_chunks]
        manifest.generation = generation
        try:
            manifest.write(self.path, durable=self.durable)
        except DirSyncError:
            raise
        except BaseException:
            manifest.chunks, manifest.generation = old, generation - 1
            raise

    def _adopt(
        self,
        new_chunks: list[_Chunk],
        written: list[_Chunk],
        affected: set[int],
        deletes: set[str],
    ) -> None:
        """The new generation is on disk: bring memory in line, then tidy up."""
        obsolete = [c for c in self._chunks if id(c) in affected]
        self._chunks = new_chunks
        where = self._where
        for key in deletes:
            del where[key]
        for chunk in written:
            for key in chunk.hashes:
                where[key] = chunk
        if self._dir_sync_owed:
            return  # the old manifest may still be what a power loss leaves: keep its files
        for chunk in obsolete:
            try:
                os.unlink(self._chunk_path(chunk.entry))
            except OSError as exc:  # harmless: removed as a leftover on next open
                log.warning("could not remove obsolete %s: %s", chunk.entry.file, exc)


def _check_setting(path: Path, name: str, asked: object, stored: object) -> None:
    if asked is not None and asked != stored:
        raise SettingsError(
            f"{path} was created with {name}={stored!r}, but {name}={asked!r} was asked for; "
            f"omit {name} to use the stored value, or use pod.copy(new_path, {name}=...) "
            "to rewrite the store with the new setting"
        )
