"""A plain writer's compaction, folded in a thread while the syncs go on.

Folding a big store's journal into its data files takes seconds (a 1M-key
store: every data file read and written anew). Done inside the sync that
found it due, that sync would take as long. Instead the writer starts a
:class:`BackgroundFold` and returns; the thread writes the next
generation's files (a big fold: in a child interpreter that it waits for,
``_fold_process.py``, so as not to share the GIL), which no manifest names
yet, and copies into the new
journal the commits made meanwhile, renumbered from 1 (so the manifest stays
version 1). A later commit of the writer, once the thread is done, copies
the last few commits and installs the generation: its manifest replaces the
old one, as in a compaction made in line (``FileStorage._install``).

Why every promise still holds (``docs/ARCHITECTURE.md`` says it at length):

* Until the manifest is replaced the store is the old generation, whose
  journal gets every commit as before; a crash leaves the new files as
  debris, which the next writable open removes.
* The thread reads only what does not change under it: data files (never
  modified), and journal bytes up to the writer's durable end (appends go
  after it; only a torn tail past it is ever cut). It writes only files of
  the next generation. Everything else is the writer's, in its own thread.
* The new journal holds exactly the commits after those folded in, each
  checked as a replay checks it before it is copied, and is made durable
  before the manifest names it.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import orjson

from . import _fs
from ._chunks import Chunk, LazyChunk
from ._compaction import Generation, discard, fold_journal
from ._durable import datasync, unlink_quietly
from ._journal import Journal, renumbered
from ._manifest import ChunkEntry, Manifest

__all__ = ["BackgroundFold"]

# The thread stops copying the commits made meanwhile once no more bytes than
# this are left (or after _ROUNDS rounds); the writer copies the rest when it
# installs the generation, inside one of its syncs.
_LEFT_TO_INSTALL = 256 << 10
_ROUNDS = 8
# Fold in a child interpreter (``_fold_process.py``), the thread only waiting
# for it; False: in the thread itself (the tests that hold a fold at a gate).
IN_A_PROCESS = True
# ... once the data files and the journal to fold hold this much together (a
# fold of about a second or more); smaller folds are not worth an interpreter.
PROCESS_FROM_BYTES = 32 << 20


class BackgroundFold:
    """One compaction of a plain writer's store, folding in a thread.

    Made by the writer, in its thread, with the store as it is: the journal's
    first *journal.end* bytes, *journal.commits* commits, are folded in.
    """

    def __init__(
        self, path: Path, manifest: Manifest, chunks: list[Chunk], journal: Journal, durable: bool
    ) -> None:
        self.path = path
        self._manifest = copy.copy(manifest)
        self._chunks = list(chunks)
        self._journal = journal  # the writer's: only its .end is read here
        self._durable = durable
        self._first = manifest.journal_first  # the number of the old journal's first commit
        self.folded_end, self.folded = journal.end, journal.commits
        self.new: Generation | None = None
        self.error: BaseException | None = None
        # The commits after those folded in that the new journal holds: they
        # end at self.copied in the old journal, self.held in the new one.
        self.copied, self.held, self.commits = self.folded_end, 0, 0
        self._done = threading.Event()
        # Between the end of the thread and abandon(): who lets go of the store.
        # Re-entrant: the GC may run the writer's close() in this very thread.
        self._ending = threading.RLock()
        self._release: Callable[[], None] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"tastypy compaction of {path}", daemon=True
        )

    def start(self) -> None:
        """Start folding (a hook for the tests: they may run it in line)."""
        self._thread.start()

    @staticmethod
    def remove(paths: list[Path]) -> threading.Thread:
        """Delete *paths* (an installed fold's obsolete files) in a thread of their own."""
        thread = threading.Thread(
            target=_remove, args=(paths,), name="tastypy removal of old files", daemon=True
        )
        thread.start()
        return thread

    def done(self) -> bool:
        """Whether the thread has finished (folded, failed, or found nothing to fold)."""
        return self._done.is_set()

    def wait(self) -> None:
        """Wait for the thread to finish, even through a ``KeyboardInterrupt`` (raised after).

        The caller lets go of the store once this returns: the thread must
        not write a file after that (another writer could be compacting).
        """
        interrupted: BaseException | None = None
        while not self._done.is_set():
            try:
                self._done.wait()
            except BaseException as exc:  # Ctrl-C, or a signal handler that raises
                interrupted = exc
        if interrupted is not None:
            raise interrupted

    def is_current_thread(self) -> bool:
        """Whether the caller runs in the fold's thread (a finalizer the GC runs there)."""
        return threading.current_thread() is self._thread

    def abandon(self, release: Callable[[], None]) -> None:
        """The writer closes without this fold: its files go, then *release* lets go of the store.

        At once if the thread is done; else by the thread, when it ends.
        """
        with self._ending:
            if not self._done.is_set():
                self._release = release
                return
        self._drop()
        release()

    def _drop(self) -> None:
        if self.new is not None:
            discard(self.path, self.new)
            self.new = None

    def _run(self) -> None:
        try:
            self.new = self._fold()
            if self.new is not None:
                for _round in range(_ROUNDS):
                    if self._journal.end - self.copied <= _LEFT_TO_INSTALL:
                        break
                    self._copy_up_to(self._journal.end)
        except BaseException as exc:  # reported by the writer, in its thread
            self.error = exc
            self._drop()
        finally:
            with self._ending:
                self._done.set()
                release = self._release
            if release is not None:  # the writer closed meanwhile
                try:
                    self._drop()
                finally:
                    release()

    def _fold(self) -> Generation | None:
        """Write the next generation's files: in a process of its own if one can be had."""
        entries = [c.entry for c in self._chunks]
        size = sum(e.nbytes for e in entries) + self.folded_end
        if (
            IN_A_PROCESS
            and size >= PROCESS_FROM_BYTES
            and sys.executable
            and entries == self._manifest.chunks
            and _utf8(str(self.path))  # the request is JSON: a path of raw bytes stays here
        ):
            return self._fold_in_a_process()
        raw = _read_range(self.path / self._manifest.journal, 0, self.folded_end)
        return fold_journal(
            self.path, self._manifest, self._chunks, raw, self.folded, durable=self._durable
        )

    def _fold_in_a_process(self) -> Generation | None:
        import subprocess  # noqa: PLC0415  # only a store that compacts needs it

        from ._fold_process import chunk_keys, reply_to_generation, request  # noqa: PLC0415

        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[3])  # holds the tastypy package
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        done = subprocess.run(
            [sys.executable, "-c", "from tastypy.storage.files._fold_process import main; main()"],
            input=request(self.path, self._manifest, self.folded_end, self.folded, self._durable),
            capture_output=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(
                f"the compaction's process ended with status {done.returncode}"
                + (f": {' / '.join(tail)}" if tail else "")
            )
        described = reply_to_generation(orjson.loads(done.stdout))
        if described is None:
            return None
        new = Generation(int(described["number"]), str(described["journal"]))
        gzipped = self._manifest.gzipped
        for item in described["chunks"]:
            if type(item) is int:
                new.chunks.append(self._chunks[item])
                continue
            entry = ChunkEntry(
                str(item["file"]), int(item["records"]), int(item["bytes"]), int(item["crc32"])
            )
            # Its keys are read from the file if an in-line compaction needs them.
            chunk = LazyChunk(entry, functools.partial(chunk_keys, self.path, gzipped, entry))
            new.chunks.append(chunk)
            new.written.append(chunk)
        new.obsolete = [str(name) for name in described["obsolete"]]
        return new

    def _copy_up_to(self, end: int) -> None:
        """Copy the old journal's commits from :attr:`copied` to *end* into the new one.

        Durably: the new journal's bytes are synced before this returns.
        """
        assert self.new is not None
        if end == self.copied:
            return
        old = self.path / self._manifest.journal
        tail, count = renumbered(
            old,
            _read_range(old, self.copied, end),
            self._manifest.gzipped,
            first=self._first + self.folded + self.commits,
            to=1 + self.commits,
        )
        fd = _fs.open_inside(self.path / self.new.journal, os.O_WRONLY)
        try:
            view, offset = memoryview(tail), 0
            while offset < len(tail):
                offset += _fs.pwrite(fd, view[offset:], self.held + offset)
            if self._durable:
                datasync(fd)
        finally:
            _fs.close(fd)
        self.copied, self.held, self.commits = end, self.held + len(tail), self.commits + count

    def finish(self) -> Generation | None:
        """The generation to install, the last commits copied (in the writer's thread, once done).

        None if there was nothing to fold. Raises what the thread raised, or
        what copying the last commits raises (the new files are removed then).
        """
        assert self.done()
        if self.error is not None:
            raise self.error
        if self.new is None:
            return None
        try:
            self._copy_up_to(self._journal.end)
        except BaseException:
            discard(self.path, self.new)
            raise
        return self.new


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a file name of bytes that are not UTF-8 (surrogateescape)
        return False
    return True


def _remove(paths: list[Path]) -> None:
    for path in paths:
        unlink_quietly(path)


def _read_range(path: Path, start: int, stop: int) -> bytes:
    """Bytes *start* to *stop* of the file at *path*, through a descriptor of its own."""
    fd = _fs.open_inside(path, os.O_RDONLY)
    try:
        parts = []
        while start < stop:
            part = os.pread(fd, stop - start, start)
            if not part:
                break
            parts.append(part)
            start += len(part)
        return b"".join(parts)
    finally:
        _fs.close(fd)
