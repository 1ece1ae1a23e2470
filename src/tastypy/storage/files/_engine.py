"""The local directory engine: data files, a journal, and a manifest.

Layout (``docs/FORMAT.md`` has the details)::

    my.pod/
      manifest.json                  settings, generation, data files, journal
      chunks/00000012-000003.jsonl   up to file_size lines ``["key", value]``
      journal-00000012.jsonl         syncs since the last compaction
      lock                           flock'ed while open for writing

A sync appends one commit to the journal: one ``write``, one ``fdatasync``.
Opening replays the data files, then every complete journal commit; a torn
last commit (a crash mid-append) is cut away.

Compaction (when the journal outgrows the data files, and at close once it
holds a quarter of their size) folds the journal into the data files
copy-on-write: changed data files are written anew under fresh names, with a
new journal (empty, or holding the commits made while a fold ran in a
thread, ``_background.py``), and a new manifest naming them atomically
replaces the old one. Only then are the old files deleted. A crash at any
instant leaves one consistent generation; files that no manifest names are
removed on the next writable open.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._codec import collector_paused
from ...errors import CorruptStoreError, LockedError, ReadOnlyError
from . import _fs
from ._background import BackgroundFold
from ._chunks import CHUNKS, Chunk, load_chunk
from ._compaction import Generation, discard, fold_journal
from ._durable import DirSyncError, fsync_dir, unlink_quietly
from ._journal import Journal, apply_ops, journal_records, replay, write_tail
from ._layout import remove_new_store
from ._lock import StoreLock
from ._manifest import MANIFEST, read_manifest
from ._opening import (
    DEFAULT_FILE_SIZE,
    check_setting,
    describe,
    open_readonly,
    open_writable,
    remove_dirs,
)
from ._sidelog import FileSideLog
from ._snapshot import read_snapshot
from ._store_path import store_path

if TYPE_CHECKING:
    from ._commit_lock import CommitLock

__all__ = ["DEFAULT_FILE_SIZE", "FileStorage"]

# This process's pid, kept up to date across forks: os.getpid() is a system
# call, and the writable check runs several times per claim of a shared store.
_this_process = [os.getpid()]


def _after_fork_in_child() -> None:
    _this_process[0] = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)

log = logging.getLogger(__name__)

# Compact once the journal is larger than the data files, but not before it
# holds this much: small stores would otherwise compact on every few syncs.
COMPACT_MIN_BYTES = 4 << 20
# At close, compact once the journal is a quarter of the size of the data files:
# what the close then writes is at most about five times what the syncs since
# the last compaction wrote, and a smaller journal is cheap to replay on the
# next open. A close after a few changes to a big store writes nothing more.
CLOSE_COMPACT_FRACTION = 4
# A plain writer's compaction after a commit folds in a thread while the
# syncs go on (``_background.py``); False: in the sync that found it due.
FOLD_IN_BACKGROUND = True


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
    read-only readers, which retry if a compaction deletes files under them.
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
        new: bool = False,
    ) -> None:
        self.path = store_path(path)
        if new and (self.path / MANIFEST).exists():
            raise FileExistsError(f"{self.path} already holds a store; give a new location")
        # Whether there was anything at the path: discard() removes only what it made.
        self._existed = self.path.exists()
        self.readonly = readonly
        self.durable = durable
        self._pid = _this_process[0]
        self._lock: StoreLock | None = None
        self._journal: Journal | None = None
        self._chunks: list[Chunk] = []
        self._data_bytes = 0  # total size of self._chunks' files
        self._hash: dict[str, int] = {}  # key -> hash of its current line
        self._dir_sync_owed = False  # a rename whose directory fsync failed
        # After a failed compaction, the next is tried only once the journal
        # has grown past this size (0: no failure pending).
        self._compact_retry_at = 0
        self._fold: BackgroundFold | None = None  # a compaction folding in a thread
        self._installing = False  # _finish_fold() is copying the last commits and installing
        self._tidying: list[threading.Thread] = []  # deleting old generations' files
        self._created = False  # this open laid the store out
        self._made: list[Path] = []  # directories this open created, parents first
        if readonly:
            self._manifest = open_readonly(self.path)
        else:
            opened = open_writable(
                self.path,
                file_size=file_size,
                gzipped=gzipped,
                timeout=timeout,
                durable=durable,
                new=new,
                existed=self._existed,
                shared=self._SHARED,
            )
            self._manifest, self._lock = opened.manifest, opened.lock
            self._created, self._made = opened.created, opened.made
            self._commit_lock = opened.commit_lock
        try:
            check_setting(self.path, "file_size", file_size, self._manifest.file_size)
            check_setting(self.path, "gzipped", gzipped, self._manifest.gzipped)
        except BaseException:
            self.close()
            raise

    capabilities: frozenset[str] = frozenset()
    _SHARED = False  # one of several writers (SharedFileStorage)
    _commit_lock: CommitLock | None = None
    _obsolete: list[Path] = []  # noqa: RUF012  # replaced per open, never mutated in place

    def discard(self) -> None:
        """Close, and remove the store this open created (the directory too, if new).

        For a copy that failed midway. Refuses a store this open did not create.
        """
        if self.readonly or not self._created:
            raise RuntimeError(f"{self.path}: discard() removes only a store this open created")
        self.close()
        remove_new_store(self.path, self._existed)
        remove_dirs(self._made)

    def describe(self) -> dict[str, Any]:
        """Size on disk, number of files, format version and time of the last write."""
        facts = describe(self.path)
        if self._manifest.journal_first != 1:  # a shared store's compaction wrote version 2
            facts["format_version"] = 2
        return facts

    def claims_log_tries(self) -> dict[str, tuple[int, bool]]:
        """The tries shared writers' claims logs count (``docs/SHARED.md``), dead ones' too.

        Each with whether the claim found no record committed (a missing
        record's tries count only then: otherwise it was deleted since).
        """
        from ._claims import Fleet  # noqa: PLC0415  # most stores never were shared

        fleet = Fleet(self.path, me="")
        try:
            fleet.refresh()
            return fleet.all_claimed()
        finally:
            fleet.close()

    def clear_claims_logs(self) -> None:
        """Remove the claims logs of shared writers, all dead: their tries are committed now."""
        self._check_writable()
        if not os.path.lexists(self.path / "writers"):
            return  # never shared: one stat at each full sync of a plain tracker
        from ._claims import Fleet  # noqa: PLC0415  # most stores never were shared

        fleet = Fleet(self.path, me="")
        try:
            fleet.refresh()
            for writer in fleet.dead():
                fleet.forget(writer)
        finally:
            fleet.close()

    def side_log(self, name: str) -> FileSideLog:
        """``<store>/<name>.jsonl``, the side log *name* (the tracker's ``tries``)."""
        return FileSideLog(self.path, name, readonly=self.readonly, durable=self.durable)

    # -- settings -----------------------------------------------------------

    @property
    def location(self) -> str:
        """The store's directory, as given."""
        return str(self.path)

    @property
    def options(self) -> dict[str, Any]:
        """The file engine's settings: ``file_size`` and ``gzipped``."""
        return {"file_size": self.file_size, "gzipped": self.gzipped}

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
            except DirSyncError:
                self._dir_sync_owed = True
                raise
            except BaseException:
                self._manifest.meta = old
                raise

    # -- the Storage protocol -------------------------------------------------

    def load(self) -> dict[str, Any]:
        """Everything as of the last commit, in order (a new dict).

        Raises
        ------
        CorruptStoreError
            Naming the file (and line) that is damaged.
        """
        if self.readonly:
            self._manifest, files, journal_raw = read_snapshot(self.path)
        else:
            self._finish_fold(wait=True)
            self._manifest = read_manifest(self.path)
            files = {}
            journal_raw = self._read_journal()
        data: dict[str, Any] = {}
        chunks: list[Chunk] = []
        self._hash = {}
        with collector_paused():
            for entry in self._manifest.chunks:
                raw = files[entry.file] if self.readonly else self._read(f"{CHUNKS}/{entry.file}")
                where = self.path / CHUNKS / entry.file
                chunks.append(
                    load_chunk(where, entry, raw, self.gzipped, into=data, hashes=self._hash)
                )
            self._set_chunks(chunks)
            self._replay_journal(journal_raw or b"", data)
        return data

    def _replay_journal(self, raw: bytes, data: dict[str, Any]) -> None:
        path = self.path / self._manifest.journal
        first = self._manifest.journal_first
        rep = replay(path, raw, self.gzipped, first=first)
        apply_ops(path, rep.ops, data, self._hash)
        if rep.torn and self.readonly:
            # Maybe a writer's append in progress, not a crash: nothing is discarded.
            log.info("%s: ignoring an incomplete last commit (%d bytes)", path, rep.torn)
        elif rep.torn:
            log.warning(
                "%s: discarding a torn last commit (%d bytes): the program writing it "
                "stopped mid-sync; the store is as of the sync before",
                path,
                rep.torn,
            )
        if not self.readonly:
            if self._journal is not None:
                self._journal.close()
            self._journal = Journal(path, rep.end, rep.commits, self.gzipped, self.durable, first)
            if rep.torn:
                self._journal.cut()

    def commit(self, changes: Iterable[tuple[str, bytes | None]]) -> None:
        """Apply *changes* atomically and durably.

        ``(key, encoded_value)`` sets a key (in place if it exists, else at the
        end); ``(key, None)`` deletes it (a missing key is ignored). Setting a
        key to the bytes it already has writes nothing. Changes apply in order,
        exactly as a ``dict`` would apply them.

        When the journal has outgrown the data files, a compaction follows the
        commit. Its failure is not the commit's: it is logged (a warning naming
        the store and the error) and retried once the journal has doubled.

        Raises
        ------
        OSError
            If the commit could not be made durable; the store on disk is as
            before (a half-written commit is cut off again).
        CorruptStoreError
            If the journal file was deleted or replaced under the writer.
        Exception
            Whatever *changes* raises; nothing is committed then.
        """
        self._check_writable()
        self._check_not_installing()
        if self._journal is None:  # never loaded (a brand-new store being filled)
            self.load()
        assert self._journal is not None
        records, batch = journal_records(changes, self._hash)
        if self._write(records):
            self._settle(batch)

    def _write(self, records: list[bytes]) -> bool:
        """Durably append the commit of *records*; False if there are none."""
        assert self._journal is not None
        if self._dir_sync_owed:
            fsync_dir(self.path)
            self._dir_sync_owed = False
        if not records:
            return False
        if self._manifest.journal_empty:
            self._mark_journal_used()
        self._journal.append(records)
        return True

    def _settle(self, batch: dict[str, int | None]) -> None:
        """A commit is durable: *batch* (key -> line hash, None if deleted) is stored now."""
        assert self._journal is not None
        hashes = self._hash
        for key, final in batch.items():
            if final is None:
                hashes.pop(key, None)  # a new key set, then deleted again
            else:
                hashes[key] = final
        if self._fold is not None and self._fold.done():
            self._finish_fold()
        if self._fold is None and self._journal.end > max(
            COMPACT_MIN_BYTES, self._data_bytes, self._compact_retry_at
        ):
            self._compact_after_commit()

    def _mark_journal_used(self) -> None:
        """Durably drop the manifest's "journal is empty" before the first append.

        Once a commit is in the journal, losing the journal loses data; the
        manifest must no longer vouch for a missing journal. One manifest
        write per compaction, at the first commit after it.
        """
        self._manifest.journal_empty = False
        try:
            self._manifest.write(self.path, durable=self.durable)
        except DirSyncError:
            self._dir_sync_owed = True  # renamed: retried before the next append
            raise
        except BaseException:
            self._manifest.journal_empty = True
            raise

    def _compact_after_commit(self) -> None:
        """Compact, folding in a thread; a failure is logged, not raised: the commit is durable."""
        assert self._journal is not None
        if FOLD_IN_BACKGROUND and not self._SHARED:
            # Known before it starts: an interrupt in between must not leave a
            # thread writing that close() would not wait for.
            self._fold = BackgroundFold(
                self.path, self._manifest, self._chunks, self._journal, self.durable
            )
            try:
                self._fold.start()
            except RuntimeError:  # no thread to be had (at shutdown, or out of memory)
                self._fold = None  # folded in line, below
            else:
                self._finish_fold()  # done already only if it ran in line (the tests' hook)
                return
        try:
            self.compact()
        except Exception as exc:
            self._compaction_failed(exc)
        else:
            self._compact_retry_at = 0

    def _check_not_installing(self) -> None:
        if self._installing:
            raise RuntimeError(
                f"{self.path}: cannot commit while this store puts a compaction in place (a "
                "signal handler or finalizer that writes to it?); the changes stay pending"
            )

    def _compaction_failed(self, exc: BaseException) -> None:
        assert self._journal is not None
        # Back off: a disk that stays full must not cost a failed compaction
        # on every sync. Doubling the journal first bounds the failed
        # attempts to a logarithm of what is written meanwhile.
        self._compact_retry_at = 2 * self._journal.end
        log.warning(
            "%s: compaction failed (%s: %s); the sync is durable in the journal, "
            "compaction is retried once the journal exceeds %d bytes",
            self.path,
            type(exc).__name__,
            exc,
            self._compact_retry_at,
        )

    def _finish_fold(self, *, wait: bool = False) -> None:
        """Install the generation a :class:`BackgroundFold` wrote, once it is done.

        With *wait*, wait for it first (close, load, compact). A failure is
        logged, not raised, as for a compaction after a commit: every commit
        is in the old generation's journal still.
        """
        fold = self._fold
        if fold is None or _this_process[0] != self._pid:
            return  # a forked child: the thread and its files are the parent's
        if fold.is_current_thread():
            return  # a finalizer run by the fold's own thread (the GC): it cannot wait
        if wait:
            fold.wait()
        elif not fold.done():
            return
        # From here to the install, no commit may come in (see commit()): it
        # would go to the old journal after its last commits were copied.
        self._installing = True
        try:
            self._fold = None
            new = fold.finish()
            if new is not None:
                self._install(new, 1, held=fold.held, tail_commits=fold.commits, later=True)
        except Exception as exc:
            self._compaction_failed(exc)
        else:
            self._compact_retry_at = 0
        finally:
            self._installing = False

    def close(self) -> None:
        """Release the lock; first compact, if the journal is large.

        The journal is folded into the data files only once it holds at least
        a quarter of their size (``CLOSE_COMPACT_FRACTION``), so that what a
        close writes follows what changed; otherwise it stays, and the next
        open replays it. Idempotent. A failing compaction is logged, not
        raised: the journal still holds every commit.
        """
        try:
            self._close_journal()
        finally:  # a Ctrl-C while a fold was waited for too (it is done then)
            self._let_go()

    def _close_journal(self) -> None:
        if self._journal is not None:
            try:
                if not sys.is_finalizing():
                    self._finish_fold(wait=True)
                # Not while the interpreter shuts down (a POD collected then):
                # builtins such as open() may be gone, and the journal keeps
                # everything anyway.
                if (
                    self._journal.end * CLOSE_COMPACT_FRACTION > self._data_bytes
                    and self._lock is not None
                    and _this_process[0] == self._pid
                    and not sys.is_finalizing()
                ):
                    self.compact()
            except Exception as exc:
                log.warning(
                    "%s: compaction at close failed (%s: %s); the journal is left as it is",
                    self.path,
                    type(exc).__name__,
                    exc,
                )
            finally:
                self._journal.close()
                self._journal = None

    def _let_go(self) -> None:
        tidying, self._tidying = self._tidying, []
        for thread in tidying:  # the old files are gone when close returns
            if thread is not threading.current_thread():  # (a finalizer run there)
                thread.join()
        if self._commit_lock is not None:
            self._commit_lock.close()
            self._commit_lock = None
        if self._lock is not None:
            fold, self._fold = self._fold, None
            if fold is not None and _this_process[0] == self._pid:
                # Not waited for (the fold's own thread closes, or the interpreter
                # shuts down): the store stays locked until its thread ends, so
                # that no other writer compacts into the same file names meanwhile.
                fold.abandon(self._lock.release)
            else:
                self._lock.release()
            self._lock = None

    def __repr__(self) -> str:
        return f"<FileStorage {str(self.path)!r}>"

    # -- compaction -----------------------------------------------------------------

    def compact(self) -> None:
        """Fold the journal into the data files now (atomic, like a commit)."""
        self._check_writable()
        assert self._journal is not None
        self._finish_fold(wait=True)
        if self._fold is not None:
            return  # not waited for (a finalizer in the fold's own thread): it folds already
        new = fold_journal(
            self.path,
            self._manifest,
            self._chunks,
            self._read_journal()[: self._journal.end],
            self._journal.commits,
            durable=self.durable,
        )
        if new is None:
            return
        self._install(new, 1 if not self._SHARED else None)

    def _install(
        self,
        new: Generation,
        first: int | None,
        tail: bytes = b"",
        tail_commits: int = 0,
        *,
        held: int = 0,
        later: bool = False,
    ) -> None:
        """Make generation *new* the store's: its manifest written, its files adopted.

        *first* numbers its journal's first commit (None: on from the old
        journal's). *tail*, commits made after those folded in, goes into the
        new journal first (a shared store's compaction that did not hold the
        store while it folded); or the new journal holds them already, *held*
        bytes (a fold in the background). Either way they are *tail_commits*
        commits. *later*: the old generation's files are deleted in a thread.
        """
        assert self._journal is not None
        if tail:
            write_tail(self.path / new.journal, tail, durable=self.durable)
        manifest = self._manifest
        old = (
            manifest.chunks,
            manifest.generation,
            manifest.journal,
            manifest.journal_empty,
            manifest.journal_first,
        )
        manifest.chunks = [c.entry for c in new.chunks]
        manifest.generation, manifest.journal = new.number, new.journal
        manifest.journal_empty = not (tail or held)
        # A shared store numbers its commits across compactions: the others
        # tell by the number whether they had seen all that was folded in.
        folded = self._journal.commits - tail_commits
        manifest.journal_first = manifest.journal_first + folded if first is None else first
        try:
            manifest.write(self.path, durable=self.durable)
        except DirSyncError:
            # The new manifest is in place: keep its files, owe the fsync.
            self._dir_sync_owed = True
            self._adopt(new, held + len(tail), tail_commits, later=later)
            raise
        except BaseException:
            (
                manifest.chunks,
                manifest.generation,
                manifest.journal,
                manifest.journal_empty,
                manifest.journal_first,
            ) = old
            discard(self.path, new)
            raise
        self._adopt(new, held + len(tail), tail_commits, later=later)

    def _set_chunks(self, chunks: list[Chunk]) -> None:
        self._chunks = chunks
        self._data_bytes = sum(c.entry.nbytes for c in chunks)

    def _adopt(
        self, new: Generation, end: int = 0, commits: int = 0, *, later: bool = False
    ) -> None:
        """The new generation is on disk: switch to it, then tidy up.

        Its journal holds *commits* commits already, *end* bytes (a tail).
        *later*: the old generation's files are deleted in a thread.
        """
        assert self._journal is not None
        old_journal = self._journal.path
        self._journal.close()
        self._journal = Journal(
            self.path / new.journal,
            end,
            commits,
            self.gzipped,
            self.durable,
            self._manifest.journal_first,
        )
        self._set_chunks(new.chunks)
        if self._dir_sync_owed:
            return  # a power loss may still bring back the old manifest: keep its files
        self._obsolete = [self.path / CHUNKS / name for name in new.obsolete] + [old_journal]
        if self._SHARED:
            return  # a shared writer's compaction removes them once others may commit
        if later:  # hundreds of files take a while to delete: not in the sync's time
            self._tidying = [t for t in self._tidying if t.is_alive()]
            try:
                self._tidying.append(BackgroundFold.remove(self._obsolete))
            except RuntimeError:  # no thread to be had
                self._remove_obsolete()
            else:
                self._obsolete = []
        else:
            self._remove_obsolete()

    def _remove_obsolete(self) -> None:
        """Delete the files of the generation before the last compaction."""
        obsolete, self._obsolete = self._obsolete, []
        for path in obsolete:
            unlink_quietly(path)

    # -- reading --------------------------------------------------------------

    def _read_journal(self) -> bytes:
        """The journal's bytes; a missing journal the manifest records as empty is empty."""
        if self._manifest.journal_empty and not (self.path / self._manifest.journal).exists():
            log.info("%s: journal missing, recorded as empty: recreating it", self.path)
            return b""
        return self._read(self._manifest.journal)

    def _read(self, name: str) -> bytes:
        try:
            return _fs.read_file(self.path / name)
        except FileNotFoundError:
            raise CorruptStoreError(
                f"{self.path / name} is missing but {self.path / MANIFEST} names it"
            ) from None

    # -- checks ---------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            raise ReadOnlyError(f"{self.path} is open read-only")
        if self._lock is None:
            raise LockedError(f"{self.path}: storage is closed")
        if _this_process[0] != self._pid:
            raise LockedError(
                f"{self.path} was opened by process {self._pid}; this forked child "
                "may not write to it (open it in the child instead)"
            )
