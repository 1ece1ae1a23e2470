"""A store directory written by several processes at once (``docs/SHARED.md``).

Each :class:`SharedFileStorage` is one writer. Writers share the store lock
(``flock(LOCK_SH)``, so a plain writer and they exclude each other), name
themselves in ``writers/``, and take the commit lock around every commit:
there a writer first *catches up*, reading what the others committed since
its last commit, then appends its own commit and ``fdatasync``s it before
letting go. A sync returns the :class:`~tastypy.storage.Merge` that turns
the writer's memory into the store.

What a writer commits is what it changed: records are computed against the
line hashes of what this open last saw (its baseline), before catching up,
so a value it only read is never written back over another writer's change.
The baseline moves to the store's state only when the POD takes the merge,
that is after a successful commit; until then what was caught up is kept
aside (``_theirs``).

Compaction runs under the commit lock, after catching up, and numbers the
new journal's commits on from the old one's (``journal_first``). A writer
that sees a new generation and had seen every commit folded in loads only the
data files new to it; one that had not reloads the store (rare: it missed a
whole compaction between two of its syncs).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from .._merge import Merge, merge
from ._chunks import CHUNKS, Chunk, LazyChunk, line_hash, load_chunk
from ._claim_locks import ClaimLocks
from ._claims import Fleet
from ._commit_lock import COMPACT_LOCK, CommitLock
from ._compaction import discard, fold_journal
from ._engine import FileStorage
from ._journal import Journal, journal_records, replay, split_record
from ._manifest import MANIFEST, ChunkEntry, Manifest, read_manifest
from ._mounts import check_local
from ._shared_claims import WriterClaims
from ._store_path import store_path
from ._writers import WriterEntry, live_writers

__all__ = ["SharedFileStorage"]

log = logging.getLogger(__name__)

# (key, value bytes or None for a delete, hash of its line or None)
Theirs = tuple[str, "bytes | None", "int | None"]


class SharedFileStorage(WriterClaims, FileStorage):
    """One of several writers of the store at *path*; declares the "shared" capability.

    Takes :class:`FileStorage`'s arguments but *readonly* (a reader is a
    plain read-only :class:`FileStorage`). Raises
    :class:`~tastypy.errors.LockedError` if a plain writer has the store.
    """

    _SHARED = True
    capabilities = frozenset({"shared", "claims"})

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        file_size: int | None = None,
        gzipped: bool | None = None,
        durable: bool = True,
        timeout: float | None = 0.0,
        new: bool = False,
    ) -> None:
        check_local(store_path(path))  # before anything is made there
        super().__init__(
            path, file_size=file_size, gzipped=gzipped, durable=durable, timeout=timeout, new=new
        )
        self._theirs: list[Theirs] = []  # caught up, not yet merged by the POD
        self._manifest_path = str(self.path / MANIFEST)
        self._manifest_seen: tuple[int, ...] | None = None
        self._compact_due = False  # a sync's commit asked for a compaction
        self._settled = True  # every try this open's claims counted is committed
        self._held: set[str] = set()  # keys this open claimed and has not released
        self._tries: dict[str, int] = {}  # key -> tries this open's claims counted
        self._fresh: set[str] = set()  # held keys claimed "new", not said committed since
        self._taking: str | None = None  # taken, neither claimed nor untaken yet
        try:
            live_writers(self.path, reap=True)  # the files of writers that died go
            self._writer: WriterEntry | None = WriterEntry(self.path)
        except BaseException:
            self.close()
            raise
        self._fleet = Fleet(self.path, self._writer.id)
        self._compact_lock = CommitLock(self.path, COMPACT_LOCK)
        self._claim_locks = ClaimLocks(self.path)

    def __repr__(self) -> str:
        return f"<SharedFileStorage {str(self.path)!r}>"

    # -- the protocol, under the commit lock -----------------------------------------

    def load(self) -> dict[str, Any]:
        """Everything as of the last commit of any writer (a new dict); the baseline too."""
        assert self._commit_lock is not None
        with self._commit_lock.held():
            self._manifest_seen = _identity(self._manifest_path)
            data = super().load()
            self._theirs = []
            assert self._journal is not None  # what was published before may be stale
            self._commit_lock.publish(self._manifest.generation, self._journal.end)
            return data

    def set_meta(self, meta: dict[str, Any]) -> None:
        """Durably replace the layer above's settings (the latest manifest's)."""
        self._check_writable()
        assert self._commit_lock is not None
        with self._commit_lock.held():
            self._catch_up()
            super().set_meta(meta)

    def commit(self, changes: Iterable[tuple[str, bytes | None]]) -> None:
        """:meth:`sync`, merge not wanted (a copy into a new store has nothing to merge)."""
        self.sync(changes)

    def sync(self, changes: Iterable[tuple[str, bytes | None]]) -> Merge:
        """Commit what of *changes* this open changed, on top of the others' commits.

        Returns how to merge the others' changes into the caller's memory. A
        raising *changes* commits nothing and catches up on nothing; a
        failed commit leaves the store as it was and what was caught up kept
        aside for the next sync.
        """
        self._check_writable()
        if self._journal is None:
            self.load()
        assert self._journal is not None
        assert self._commit_lock is not None
        mine: list[tuple[str, bytes | None]] = []
        lock = self._commit_lock
        free = None  # whether a catch-up without the lock worked (None: not tried)
        if changes == () and not lock.depth and not self._theirs:
            # A catch-up and nothing else (each claim does one): the short way.
            free = self._catch_up_unlocked()
            if free and not self._theirs:
                return Merge()
        # Against what this open last saw, and before the lock: a raising
        # *changes* leaves everything as it was.
        records, batch = journal_records(changes, self._hash, mine)
        if records:
            with lock.held():
                self._catch_up()
                merged = self._merged(mine)
                wrote = self._write(records)  # a failure: the baseline and theirs stay
                self._adopt_theirs()
                if wrote:
                    lock.publish(self._manifest.generation, self._journal.end)
                    self._settle(batch)  # may ask for a compaction (_compact_due)
        elif lock.depth or not (free if free is not None else self._catch_up_unlocked()):
            # Nothing to write: a shared hold, which other readers share.
            with lock.held_shared():
                self._catch_up()
                merged = self._merged(mine)
                self._adopt_theirs()
        else:
            merged = self._merged(mine)
            self._adopt_theirs()
        self._compact_if_due()
        return merged

    def _merged(self, mine: list[tuple[str, bytes | None]]) -> Merge:
        """How to merge what was caught up (``_theirs``) into memory that has *mine*."""
        theirs = self._theirs
        merged = merge(self._hash.__contains__, [(k, b) for k, b, _ in theirs], mine)
        before = {key: self._hash.get(key) for key, _blob, _digest in theirs}
        merged.unchanged = lambda key, blob: before.get(key) == _line_hash(key, blob)
        return merged

    def _adopt_theirs(self) -> None:
        """The baseline takes what was caught up (the caller takes the merge)."""
        hashes = self._hash
        for key, _blob, digest in self._theirs:
            if digest is None:
                hashes.pop(key, None)
            else:
                hashes[key] = digest
        self._theirs = []

    def compact(self) -> None:
        """Fold the journal into the data files now, every writer's commits included.

        The other writers wait only for the two short steps under the commit
        lock: noting what to fold, and putting the new generation in place
        with the commits made meanwhile copied into its journal. The folding
        itself, which reads and writes data files, runs without the lock.
        Does nothing if another writer is compacting.
        """
        self._check_writable()
        assert self._commit_lock is not None
        with self._compact_lock.held_if_free() as free:
            if not free:
                return
            with self._commit_lock.held():  # what to fold: every commit so far
                self._catch_up()
                assert self._journal is not None
                journal, manifest = self._journal, copy.copy(self._manifest)
                end, commits, chunks = journal.end, journal.commits, list(self._chunks)
            # Commits up to *end* never change (appends go after them, and only a
            # torn tail past the durable end is ever cut), and no other writer
            # compacts (the compact lock): they are read without the commit lock.
            raw = journal.read_range(0, end)
            new = fold_journal(
                self.path, manifest, chunks, raw, commits, durable=self.durable
            )  # the others commit meanwhile
            if new is None:
                return
            try:
                with self._commit_lock.held():
                    self._catch_up()  # the commits made while folding: the new journal's
                    assert self._journal is journal, "one compaction at a time"
                    tail = journal.read_range(end, journal.end)
                    self._install(new, None, tail, journal.commits - commits)
                    self._manifest_seen = _identity(self._manifest_path)
                    assert self._journal is not None
                    self._commit_lock.publish(self._manifest.generation, self._journal.end)
            except BaseException:
                if self._journal is journal:  # not installed: its files go
                    discard(self.path, new)
                raise
            # The old generation's files go with the commit lock let go (deleting
            # hundreds of files takes a while): the compact lock, held still,
            # keeps any other writer from compacting meanwhile, and nobody
            # reads them any more.
            self._remove_obsolete()

    def _compact_after_commit(self) -> None:
        """Compact once this sync has let go of the commit lock (see :meth:`compact`)."""
        self._compact_due = True

    def close(self) -> None:
        """Compact if due (under the commit lock), then leave the writers. Idempotent.

        This open's claims end with it; the tries they counted are the
        caller's to have committed first (the tracker syncs before closing).
        """
        writer, self._writer = getattr(self, "_writer", None), None
        try:
            super().close()
        finally:
            fleet = getattr(self, "_fleet", None)
            if fleet is not None:
                fleet.close()
            compact_lock = getattr(self, "_compact_lock", None)
            if compact_lock is not None:
                compact_lock.close()
            if writer is not None:
                # A log whose tries are not all committed stays, a dead writer's
                # for the others to settle; its lock goes with the descriptor.
                writer.close(remove=self._settled)
            claim_locks = getattr(self, "_claim_locks", None)
            if claim_locks is not None:  # after the log: a claim never looks held by it
                claim_locks.close()

    # -- the commit lock held for a block ----------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the commit lock, with every writer's claims read: no other writer commits."""
        self._check_writable()
        assert self._commit_lock is not None
        with self._commit_lock.held():
            self._fleet.refresh()
            yield
        self._compact_if_due()

    def _compact_if_due(self) -> None:
        """Run the compaction a commit asked for, once this open no longer holds the lock."""
        assert self._commit_lock is not None
        if self._compact_due and self._commit_lock.depth == 0:
            self._compact_due = False
            FileStorage._compact_after_commit(self)  # logged, not raised, if it fails

    # -- catching up ----------------------------------------------------------------

    def _catch_up(self) -> None:
        """Read what the others committed since this open last did (commit lock held)."""
        assert self._journal is not None
        seen = _identity(self._manifest_path)
        if seen != self._manifest_seen or self._journal.unlinked():
            fresh = read_manifest(self.path)
            self._manifest_seen = seen
            if fresh.generation != self._manifest.generation:
                self._follow(fresh)
            else:
                self._manifest = fresh  # another's settings, or its first commit's mark
        journal = self._journal
        raw = journal.read_after()
        if not raw:
            return
        path = journal.path
        rep = replay(path, raw, self.gzipped, first=journal.first + journal.commits)
        if rep.torn:
            log.warning(
                "%s: a writer stopped mid-commit (%d bytes after its last whole commit): "
                "cutting them off",
                path,
                rep.torn,
            )
        journal.advance(rep.end, rep.commits)
        self._theirs += [split_record(path, n, line) for n, line in enumerate(rep.ops, 1)]

    def _catch_up_unlocked(self) -> bool:
        """Catch up without the commit lock, up to the published durable end.

        False if that cannot be done (a compaction or a settings change since,
        nothing published, an unexpected tail): the caller takes the lock.
        """
        journal = self._journal
        assert journal is not None
        assert self._commit_lock is not None
        if _identity(self._manifest_path) != self._manifest_seen:
            return False
        found = journal.stat()
        end = self._commit_lock.published(self._manifest.generation)
        # More bytes than published: a commit being appended, or one whose
        # writer died before publishing it (durable, so it must be seen), or
        # a torn tail: the lock tells them apart. Fewer: not this journal's line.
        if found.st_nlink == 0 or end is None or found.st_size != end:
            return False
        if end <= journal.end:
            return True
        raw = journal.read_range(journal.end, end)
        rep = replay(journal.path, raw, self.gzipped, first=journal.first + journal.commits)
        if rep.torn or rep.end != len(raw):
            return False
        journal.advance(rep.end, rep.commits, check_tail=False)
        path = journal.path
        self._theirs += [split_record(path, n, line) for n, line in enumerate(rep.ops, 1)]
        return True

    def _follow(self, fresh: Manifest) -> None:
        """Another writer compacted: move to its generation."""
        assert self._journal is not None
        journal = self._journal
        seen = journal.first + journal.commits - fresh.journal_first  # of the new journal's
        if seen < 0 and self._catch_up_folded(-seen):
            seen = 0
        position = self._position_in(fresh, seen) if seen >= 0 else None
        if position is not None:
            # Every commit folded in was seen here (and *seen* of the new journal's
            # commits, copied in by a compaction that folded without the lock): only
            # the new data files are new, and the new journal's later commits.
            known = {chunk.entry.file: chunk for chunk in self._chunks}
            chunks: list[Chunk] = []
            for entry in fresh.chunks:
                chunk = known.get(entry.file)
                if chunk is None or chunk.entry != entry:
                    # Its values are here already: its keys are read when this
                    # writer compacts, not now (the pause a compaction costs).
                    chunk = LazyChunk(entry, functools.partial(self._chunk_keys, entry))
                chunks.append(chunk)
            self._manifest = fresh
            self._set_chunks(chunks)
            journal.close()
            self._journal = Journal(
                self.path / fresh.journal,
                position,
                seen,
                self.gzipped,
                self.durable,
                fresh.journal_first,
            )
            return
        # Commits this open never saw were folded in: start again from the store,
        # as changes of the others to everything (order included). The baseline
        # stays what the caller's memory is until the merge is taken.
        baseline = self._hash
        before = set(baseline).union(key for key, _blob, _digest in self._theirs)
        data = FileStorage.load(self)
        stored, self._hash = self._hash, baseline
        self._theirs = [(key, None, None) for key in before]
        self._theirs += [(key, orjson.dumps(value), stored[key]) for key, value in data.items()]

    def _catch_up_folded(self, missed: int) -> bool:
        """Read the *missed* commits a compaction folded in from the journal it replaced.

        This open still has that journal open (deleted or not), and the
        commits in it never change: caught up from there, following the
        compaction costs what it changed, not a reload of the store. False
        if the journal does not hold them all (a second compaction since).
        """
        assert self._journal is not None
        journal = self._journal
        raw = journal.read_after()
        rep = replay(journal.path, raw, self.gzipped, first=journal.first + journal.commits)
        if rep.commits < missed:
            return False
        ops = [op for text in rep.texts[:missed] for op in text.split(b"\n")[:-2]]
        journal.advance(rep.ends[missed - 1], missed, check_tail=False)
        path = journal.path
        self._theirs += [split_record(path, n, line) for n, line in enumerate(ops, 1)]
        return True

    def _chunk_keys(self, entry: ChunkEntry) -> list[str]:
        """The keys of data file *entry*, checked as at open."""
        raw = self._read(f"{CHUNKS}/{entry.file}")
        where = self.path / CHUNKS / entry.file
        return load_chunk(where, entry, raw, self.gzipped, into={}, hashes={}).keys

    def _position_in(self, fresh: Manifest, seen: int) -> int | None:
        """The byte offset past the first *seen* commits of *fresh*'s journal (None: fewer)."""
        if seen == 0:
            return 0
        raw = self._read_journal_of(fresh)
        rep = replay(self.path / fresh.journal, raw, self.gzipped, first=fresh.journal_first)
        return rep.ends[seen - 1] if rep.commits >= seen else None

    def _read_journal_of(self, fresh: Manifest) -> bytes:
        if fresh.journal_empty and not (self.path / fresh.journal).exists():
            return b""
        return self._read(fresh.journal)


def _identity(manifest: str) -> tuple[int, ...]:
    """What changes when ``manifest.json`` is replaced (an atomic rename: a new inode).

    An inode number can be reused and times have coarse ticks, so the size
    and change time are compared too, and a compaction is also told by the
    old journal being deleted (:meth:`Journal.unlinked`).
    """
    found = os.stat(manifest)
    return found.st_ino, found.st_dev, found.st_mtime_ns, found.st_ctime_ns, found.st_size


def _line_hash(key: str, blob: bytes) -> int:
    """The hash of the journal line that sets *key* to *blob* (as the baseline keeps them)."""
    return line_hash(b"".join((b"[", orjson.dumps(key), b",", blob, b"]")))
