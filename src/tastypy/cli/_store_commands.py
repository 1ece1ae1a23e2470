"""What each ``tastypy`` command does; :mod:`tastypy.cli._parser` parses the command line.

Each handler takes the parsed arguments and returns the exit status; bad
input raises :class:`Fail`, which the command line prints as one line (see
:mod:`tastypy.cli._errors` for the exit statuses). A command that changes a
store opens it with :func:`open_for_writing`, so that a failure changes
nothing and prints one line. Every key, value and path printed for people
goes through :mod:`tastypy.cli._display`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .. import verify
from .._codec import encode_value
from ..errors import NotAStoreError
from ..pod import PersistentOrderedDict
from ..storage.engines import (
    display,
    is_store,
    is_url,
    names_a_store,
    open_engine,
    probe,
    stores,
    task_keys,
    task_summary,
    with_store_name,
)
from ..tracker._records import BadRecordError
from ..tracker._tracker import ProgressTracker
from ._display import escaped, json_text, shown
from ._errors import EXIT_PROBLEMS, Fail, os_error_line, os_error_status, os_errors_fail
from ._status import Snapshot, in_state, processes, render, snapshot, summarized, writer
from ._transfer import BadImport, export_to_file, read_numbered, write_export

__all__ = ["EXIT_PROBLEMS", "Fail", "open_for_writing", "plural"]

_Store = TypeVar("_Store", bound=PersistentOrderedDict)


# Commands that only read: given a PostgreSQL URL without a store's name,
# they list the stores of that database.
_LISTING = frozenset({"show", "keys", "status", "list_tasks", "export", "check"})


def with_name(args: argparse.Namespace) -> Any:
    """The handler for *args*, with ``--name`` folded into a URL as ``URL#NAME``.

    A URL naming no store gives the listing of its database's stores to a
    command that only reads, and fails for one that writes.
    """
    handler = args.handler
    path, name = getattr(args, "path", None), getattr(args, "name", None)
    args.shown = path  # what messages call the store: never a URL's password
    if path is None or not is_url(path):
        if name is not None:
            raise Fail(f"{path}: --name is for a postgresql:// URL; a directory names its store")
        return handler
    if name is not None:
        args.path = with_store_name(path, name)
    args.shown = display(args.path)
    if names_a_store(args.path):
        return handler
    if handler.__name__ in _LISTING:
        return list_stores
    raise Fail(f"{display(path)}: give the store's name with --name (or URL#NAME)")


def list_stores(args: argparse.Namespace) -> int:
    """The stores of the PostgreSQL database at ``args.path``: name, kind, keys, last write."""
    found = stores(args.path)
    if getattr(args, "json", False):
        print(json_text(found))
        return 0
    if not found:
        print(f"{escaped(display(args.path))}: no tastypy stores in this database")
        return 0
    width = max(len(store["name"]) for store in found)
    for store in found:
        print(
            f"{escaped(store['name']):<{width}}  {store['kind']:<7}  "
            f"{plural(store['keys'], 'key'):>14}  last write {_utc(store['last_write'])}"
        )
    return 0


def plural(count: int, noun: str) -> str:
    """``"1 key"``, ``"2 keys"``, ``"1,000 keys"``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


@contextlib.contextmanager
def open_for_writing(
    kind: type[_Store], path: str | Path, timeout: float | None, *, outcome: str
) -> Iterator[_Store]:
    """Open the store at *path* for writing, for a command that changes it.

    The block's changes are synced when it ends. If anything fails — the
    open, the block or that last sync — unsynced changes are dropped and the
    store is closed, so the store stays as of its last sync; an ``OSError``
    (read-only filesystem, disk full, no permission) becomes :class:`Fail`
    with exit status 3, naming the path, the OS's reason and *outcome*
    (e.g. ``"nothing was reset"``). *timeout* is passed on (``--timeout``).
    """
    with os_errors_fail(outcome, display(path)):
        store = kind(path, timeout=timeout)
        try:
            yield store
            store.close()
        except BaseException:
            _discard(store)
            raise


def _discard(store: PersistentOrderedDict) -> None:
    """Drop *store*'s unsynced changes and close it, as far as the disk lets us.

    The command has failed and says why; the store's warnings about this
    clean-up (a compaction at close that the full disk refuses) would only
    repeat it, so they are held back.
    """
    logger = logging.getLogger("tastypy")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.suppress(Exception):
            store.revert()
            store.close()
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _removed_on_failure(path: Path, *, unless_a_store: bool = False) -> Iterator[None]:
    """Remove what was made for a new store at *path* if the block fails.

    Only what did not exist before is removed: the directories made (the
    topmost missing parent down) or, in a directory that was empty, what
    was written into it (the directory stays). With *unless_a_store*, a
    store that came into being (a manifest was written) is kept: it holds
    work worth resuming.
    """
    top = None
    for each in (path, *path.parents):
        if each.exists() or each.is_symlink():
            break
        top = each
    was_empty = top is None and path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    try:
        yield
    except BaseException:
        if not (unless_a_store and is_store(path)):
            if top is not None:
                shutil.rmtree(top, ignore_errors=True)
            elif was_empty:
                for entry in path.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            entry.unlink()
        raise


def _check_store(path: str, *, damage_status: bool = False) -> Path | str:
    """*path* as a store directory (or a URL#name), or fail with a one-line reason.

    With *damage_status*, a store that lost its manifest fails with the
    status ``verify`` gives damage (1) rather than that of bad input (2).
    """
    store: Path | str = path if is_url(path) else Path(path)
    found = probe(store)
    if found.kind == "missing":
        if isinstance(store, str):
            raise Fail(f"{display(path)}: there is no such store in the database")
        raise Fail(f"{path}: no such file or directory")
    if found.kind == "damaged":  # a store's data without its manifest: not a stranger
        raise Fail(found.reason, status=EXIT_PROBLEMS if damage_status else None)
    if found.kind == "other":
        raise Fail(f"{path}: not a tastypy store ({found.reason})")
    return store


def _open(path: str) -> PersistentOrderedDict:
    """Open *path* read-only, or fail with a one-line reason.

    A tracker store opens as a read-only tracker, so its records are shown as
    the tracker sees them: with the tries logged in ``tries.jsonl`` since the
    last sync (by a writer still running, or one that was killed).
    """
    store = _check_store(path)
    kind = ProgressTracker if _is_tracker(store) else PersistentOrderedDict
    try:
        return kind(store, readonly=True)
    except NotAStoreError as exc:
        raise Fail(str(exc)) from None
    except BadRecordError as exc:  # whole files, one unusable record: show them as stored
        print(f"tastypy: warning: {escaped(str(exc))}", file=sys.stderr)
        return PersistentOrderedDict(store, readonly=True)


def _is_tracker(store: Path | str) -> bool:
    """Whether the store at *store* is a tracker, as its engine's meta says."""
    engine = open_engine(store, readonly=True)
    try:
        return engine.meta.get("kind") == "tracker"
    finally:
        engine.close()


def show(args: argparse.Namespace) -> int:
    pod = _open(args.path)
    with pod:
        if args.key is not None:
            if args.key not in pod:
                raise Fail(f"{args.shown}: no key {args.key!r}")
            value = pod[args.key]
            print(json_text(value, indent=None if args.json else 2))
            return 0
        facts = _facts(args.path, pod)
    if args.json:
        print(json_text(facts))
        return 0
    width = max(len(k) for k in facts) + 1
    for name, value in facts.items():
        print(f"{name + ':':<{width}} {_plain(value)}")
    return 0


def _facts(store: str, pod: PersistentOrderedDict) -> dict[str, Any]:
    """What ``show`` prints: the store's settings, as its engine holds and describes them."""
    engine = pod.storage
    meta, options, described = engine.meta, engine.options, engine.describe()
    last = described.get("last_write")
    if isinstance(last, str):  # PostgreSQL's: a timestamp with its time zone
        last = datetime.fromisoformat(last).timestamp()
    return {
        "path": engine.location if is_url(store) else store,
        "kind": meta.get("kind", "pod"),
        "keys": len(pod),
        "file_size": options.get("file_size"),
        "gzipped": options.get("gzipped"),
        "sync_at": meta.get("sync_at"),
        "max_tries": meta.get("max_tries"),
        "bytes_on_disk": described.get("bytes_on_disk"),
        "files": described.get("files"),
        "format_version": described.get("format_version"),
        "last_sync": None if last is None else _utc(last),
    }


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _plain(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    return escaped(str(value))


def keys(args: argparse.Namespace) -> int:
    with _open(args.path) as pod:
        for n, key in enumerate(pod):
            if args.limit is not None and n >= args.limit:
                break
            print(shown(key))
    return 0


def check(args: argparse.Namespace) -> int:
    report = verify(_check_store(args.path, damage_status=True))
    for line in report.lines():
        print(escaped(line))
    return EXIT_PROBLEMS if report.problems else 0


def compact(args: argparse.Namespace) -> int:
    store = _check_store(args.path)
    with open_for_writing(
        PersistentOrderedDict, store, args.timeout, outcome="the store is as it was"
    ) as pod:
        pod.compact()
        count = len(pod)
    print(f"{escaped(args.shown)}: compacted ({plural(count, 'key')})")
    return 0


# -- tracker commands -----------------------------------------------------------


def _records(path: str) -> tuple[dict[str, Any], int]:
    """A tracker's records (as last synced, tries logged since included) and max_tries."""
    store = _check_store(path)
    if not _is_tracker(store):
        raise Fail(f"{path}: a plain POD, not a tracker")
    with ProgressTracker(store, readonly=True) as tracker:
        return dict(tracker.items()), tracker.max_tries or 0


def _snapshot(path: str) -> Snapshot:
    """The numbers ``status`` shows: counted by the engine where it can, else from the records."""
    store = _check_store(path)
    if is_url(store) and _is_tracker(store):
        summary = task_summary(store)  # a tracker on PostgreSQL: counted on the server
        if summary is not None:
            return summarized(summary)
    records, max_tries = _records(path)
    return snapshot(records, max_tries)


def _in_state(path: str, state: str, limit: int | None) -> list[str]:
    """The keys ``list`` shows: found by the engine where it can, else from the records."""
    store = _check_store(path)
    if is_url(store) and _is_tracker(store):
        found = task_keys(store, state, limit)  # a tracker on PostgreSQL: found on the server
        if found is not None:
            return found
    records, max_tries = _records(path)
    keys = in_state(records, max_tries, state)
    return keys if limit is None else keys[:limit]


def status(args: argparse.Namespace) -> int:
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    width = min(shutil.get_terminal_size((80, 24)).columns, 100)
    history: deque[tuple[float, int]] = deque(maxlen=30)
    try:
        while True:
            # Who writes is asked first: a frame that finds no writer then
            # shows what the last writer left, not the state just before it.
            pid, state = writer(_where(args.path))
            shot = _snapshot(args.path)
            shot.writer, shot.writer_state = pid, state
            shot.processes = processes(_where(args.path), time.time())
            history.append((time.monotonic(), shot.done))
            _rate(shot, history)
            if state == "running" and len(history) == 1 and not args.watch:
                time.sleep(1.0)  # a job is running: look again to measure its rate
                continue
            if args.json:
                print(shot.to_json(), flush=True)
            else:
                if args.watch and colour:
                    print("\033[H\033[J", end="")
                print(render(args.shown, shot, colour=colour, width=width), flush=True)
            finished = shot.failed + shot.untried == 0  # nothing left that a job would try
            if not args.watch or finished or shot.writer is None:
                return 0  # --watch follows a running job: done, or nobody is writing
            time.sleep(1.0)
            if not colour and not args.json:
                print()
    except KeyboardInterrupt:
        return 0


def _where(path: str) -> Path | str:
    return path if is_url(path) else Path(path)


def _rate(shot: Snapshot, history: deque[tuple[float, int]]) -> None:
    if shot.writer_state != "running" or len(history) < 2:
        return
    (t0, done0), (t1, done1) = history[0], history[-1]
    if t1 > t0:
        shot.rate = (done1 - done0) / (t1 - t0)
        left = shot.failed + shot.untried
        if shot.rate > 0:
            shot.eta_seconds = left / shot.rate


def list_tasks(args: argparse.Namespace) -> int:
    keys = _in_state(args.path, args.state, args.limit)
    if args.json:
        print(json_text(keys))
    else:
        for key in keys:
            print(shown(key))
    return 0


def reset(args: argparse.Namespace) -> int:
    if not _is_tracker(_check_store(args.path)):  # fail before waiting for a lock
        raise Fail(f"{args.shown}: a plain POD, not a tracker")
    given = list(dict.fromkeys(args.keys))  # a key named twice is one task
    # Which tasks are failed or exhausted is read once the store is held:
    # a writer we waited for may have finished some of them meanwhile.
    with open_for_writing(
        ProgressTracker, args.path, args.timeout, outcome="nothing was reset"
    ) as tracker:
        if given:
            missing = [k for k in given if k not in tracker]
            if missing:
                raise Fail(f"{args.shown}: no key {missing[0]!r}; nothing was reset")
            keys = given
        elif args.all:
            keys = list(tracker)
        else:
            records = dict(tracker.items())
            state = "failed" if args.failed else "exhausted"
            keys = in_state(records, tracker.max_tries or 0, state)
        for key in keys:
            tracker.mark_not_done(key)
            tracker.reset_tries(key)
            tracker.unabort(key)
    print(f"{escaped(args.shown)}: reset {plural(len(keys), 'task')}")
    return 0


# -- moving data in and out -----------------------------------------------------------


def export(args: argparse.Namespace) -> int:
    with _open(args.path) as pod:
        items = list(pod.items())
    if args.output is None:
        write_export(items, sys.stdout.buffer, args.format)
        sys.stdout.flush()
        return 0
    existed = os.path.lexists(args.output)
    try:
        export_to_file(items, args.output, args.format)
    except OSError as exc:
        left = f"{args.output} is as it was" if existed else "nothing was written"
        exc.filename = args.output  # not the temporary file's name
        raise Fail(os_error_line(exc, left), status=os_error_status(exc)) from None
    return 0


def import_file(args: argparse.Namespace) -> int:
    with os_errors_fail("nothing was imported"):
        data = Path(args.file).read_bytes()
    try:
        items = read_numbered(data, args.file)
    except BadImport as exc:
        raise Fail(f"{exc}; nothing was imported") from None
    store = _where(args.path)
    is_tracker = is_store(store) and _is_tracker(store)
    kind = ProgressTracker if is_tracker else PersistentOrderedDict
    with (
        _removed_on_failure(store) if isinstance(store, Path) else contextlib.nullcontext(),
        open_for_writing(kind, store, args.timeout, outcome="nothing was imported") as pod,
    ):
        pod.hold()
        for key, value, line in items:
            try:
                pod[key] = value
            except TypeError as exc:
                named = "" if repr(key) in str(exc) else f"key {key!r}: "
                raise Fail(f"{args.file}:{line}: {named}{exc}; nothing was imported") from None
    print(f"{escaped(args.shown)}: imported {plural(len(items), 'key')}")
    return 0


def copy_store(args: argparse.Namespace) -> int:
    """``tastypy copy SRC DST``: a new store at DST holding what SRC holds, in order."""
    source = _check_store(args.source)
    kind = ProgressTracker if _is_tracker(source) else PersistentOrderedDict
    with kind(source, readonly=True) as pod:  # a tracker's: with the tries counted since
        items = list(pod.items())
        meta = pod.storage.meta
    target = _where(args.target)
    if is_url(args.target) and not names_a_store(args.target):
        raise Fail(f"{display(args.target)}: name the new store, as URL#NAME")
    if is_store(target):
        raise Fail(f"{display(args.target)}: a store is there already; nothing was copied")
    with (
        _removed_on_failure(target) if isinstance(target, Path) else contextlib.nullcontext(),
        os_errors_fail("nothing was copied", args.target),
    ):
        engine = open_engine(target, new=True)
        try:
            engine.set_meta(meta)
            engine.commit((key, encode_value(value, keep=False, key=key)) for key, value in items)
        except BaseException:
            engine.discard()
            raise
        engine.close()
    shown_from, shown_to = escaped(display(args.source)), escaped(display(args.target))
    print(f"{shown_from} -> {shown_to}: copied {plural(len(items), 'key')}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo  # noqa: PLC0415  # imports the worker function on demand

    if args.workers < 1:
        raise Fail("--workers must be at least 1")
    with (
        _removed_on_failure(Path(args.path), unless_a_store=True),
        os_errors_fail("the work synced so far is kept", args.path),
    ):
        return run_demo(args.path, args.tasks, args.workers)
