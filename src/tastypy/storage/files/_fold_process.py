"""A background fold's work, in a Python process of its own.

A fold in a thread shares the GIL with the program: a program busy in
Python makes its syncs wait for the fold, and the fold for the program
(a 1M-key store's fold took twice as long, and syncs meanwhile a p99 of
33 ms). So :class:`~._background.BackgroundFold` runs the fold here, in a
child interpreter on another core, and its thread only waits.

The child is told, on stdin, the store's path, the manifest the writer
holds, and how much of the journal to fold (its durable end and commit
count); it reads the data files' keys and the journal itself, writes the
next generation's files as an in-line compaction would
(:func:`~._compaction.fold_journal`), and answers on stdout with the new
generation's file list, or the error. It never touches the manifest: the
writer installs the generation, as before.

It must not write once its writer is gone (a new writer could be
compacting into the same file names): on Linux the kernel kills it when its
writer dies (``PR_SET_PDEATHSIG``), and everywhere it checks before each file
it writes that its parent is still the writer, and else leaves at once,
touching nothing more (what it wrote is debris for the next open).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from ...errors import CorruptStoreError
from . import _fs
from ._chunks import CHUNKS, Chunk, split_chunk
from ._compaction import fold_journal
from ._journal import journal_keys
from ._manifest import MANIFEST, ChunkEntry, Manifest, validated_manifest

__all__ = ["chunk_keys", "main", "reply_to_generation", "request"]

_PR_SET_PDEATHSIG = 1


def request(path: Path, manifest: Manifest, end: int, commits: int, durable: bool) -> bytes:
    """What the writer tells the child: fold *commits* commits, the journal's first *end* bytes."""
    doc = orjson.loads(manifest.encode())
    return orjson.dumps(
        {
            "path": str(path),
            "manifest": doc,
            "end": end,
            "commits": commits,
            "durable": durable,
            "writer": os.getpid(),
        }
    )


def reply_to_generation(reply: dict[str, Any]) -> dict[str, Any] | None:
    """The child's answer, checked: the generation's description, or None (nothing to fold).

    Raises the child's error: :class:`CorruptStoreError`, :class:`OSError`
    (with its errno), or :class:`RuntimeError` for anything else.
    """
    if "error" in reply:
        kind, message = reply["error"], str(reply.get("message", ""))
        if kind == "corrupt":
            raise CorruptStoreError(message)
        if kind == "os":
            raise OSError(reply.get("errno") or 0, message, reply.get("filename"))
        raise RuntimeError(f"the compaction's process failed: {message}")
    generation = reply["generation"]
    return generation if generation is None else dict(generation)


def _leave_with_the_writer(writer: int) -> None:
    """Die with the writer (Linux), and check in any case that it lives."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes  # noqa: PLC0415  # only here, in the child

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _check_writer(writer)


def _check_writer(writer: int) -> None:
    if os.getppid() != writer:  # the writer died: write nothing more, remove nothing
        os._exit(3)


def chunk_keys(path: Path, gzipped: bool, entry: ChunkEntry) -> list[str]:
    """The keys of data file *entry*, in order, checked against its size and checksum."""
    where = path / CHUNKS / entry.file
    lines = split_chunk(where, entry, _fs.read_file(where), gzipped)
    if not lines:
        return []
    keys, _deletes = journal_keys([b"\n".join(lines) + b"\n"], len(lines))
    return keys


def _fold(doc: dict[str, Any]) -> dict[str, Any] | None:
    path = Path(doc["path"])
    writer = int(doc["writer"])
    _leave_with_the_writer(writer)
    manifest = validated_manifest(path / MANIFEST, doc["manifest"])
    chunks = [Chunk(e, chunk_keys(path, manifest.gzipped, e)) for e in manifest.chunks]
    end = int(doc["end"])
    fd = _fs.open_inside(path / manifest.journal, os.O_RDONLY)
    try:
        raw = os.pread(fd, end, 0)
        while len(raw) < end:
            part = os.pread(fd, end - len(raw), len(raw))
            if not part:
                break
            raw += part
    finally:
        _fs.close(fd)
    new = fold_journal(
        path,
        manifest,
        chunks,
        raw,
        int(doc["commits"]),
        durable=bool(doc["durable"]),
        before_write=lambda: _check_writer(writer),
    )
    if new is None:
        return None
    place = {id(c): i for i, c in enumerate(chunks)}
    return {
        "number": new.number,
        "journal": new.journal,
        # Each chunk of the new generation: the index of an old one kept, or
        # the entry of one written anew.
        "chunks": [place.get(id(c), c.entry.to_json()) for c in new.chunks],
        "obsolete": new.obsolete,
    }


def main() -> None:
    """Read the request on stdin, fold, answer on stdout."""
    doc = orjson.loads(sys.stdin.buffer.read())
    answer: dict[str, Any]
    try:
        answer = {"generation": _fold(doc)}
    except CorruptStoreError as exc:
        answer = {"error": "corrupt", "message": str(exc)}
    except OSError as exc:
        answer = {
            "error": "os",
            "errno": exc.errno,
            "message": exc.strerror or str(exc),
            "filename": None if exc.filename is None else str(exc.filename),
        }
    except Exception as exc:  # reported by the writer, which logs it
        answer = {"error": "other", "message": f"{type(exc).__name__}: {exc}"}
    sys.stdout.buffer.write(orjson.dumps(answer))
    sys.stdout.flush()


if __name__ == "__main__":  # pragma: no cover - run by BackgroundFold
    main()
