"""What each ``tastypy`` command does; :mod:`tastypy.cli` parses the command line.

Each handler takes the parsed arguments and returns the exit status; bad
input raises :class:`Fail`, which the command line prints as one line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from ._status import Snapshot, in_state, render, snapshot, writer_pid
from ._transfer import BadImport, read_import, write_export
from .errors import NotAStoreError
from .pod import PersistentOrderedDict
from .storage._layout import lost_manifest
from .storage._manifest import MANIFEST, read_manifest
from .storage.verify import verify
from .tracker import ProgressTracker

EXIT_PROBLEMS = 1  # verify found damage


class Fail(Exception):
    """A user-facing error: printed on one line, exit status 2 (or *status*)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _check_store(path: str, *, damage_status: bool = False) -> Path:
    """*path* as a store directory, or fail with a one-line reason.

    With *damage_status*, a store that lost its manifest fails with the
    status ``verify`` gives damage (1) rather than that of bad input (2).
    """
    store = Path(path)
    if not store.exists():
        raise Fail(f"{path}: no such file or directory")
    if not (store / MANIFEST).is_file():
        lost = lost_manifest(store) if store.is_dir() else None
        if lost is not None:  # a store's data without its manifest: damage, not a stranger
            raise Fail(str(lost), status=EXIT_PROBLEMS if damage_status else None)
        raise Fail(f"{path}: not a tastypy store (no {MANIFEST})")
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


def _is_tracker(store: Path) -> bool:
    return read_manifest(store).meta.get("kind") == "tracker"


def show(args: argparse.Namespace) -> int:
    pod = _open(args.path)
    with pod:
        if args.key is not None:
            if args.key not in pod:
                raise Fail(f"{args.path}: no key {args.key!r}")
            value = pod[args.key]
            print(json.dumps(value, indent=None if args.json else 2, ensure_ascii=False))
            return 0
        facts = _facts(Path(args.path), pod)
    if args.json:
        print(json.dumps(facts, ensure_ascii=False))
        return 0
    width = max(len(k) for k in facts) + 1
    for name, value in facts.items():
        print(f"{name + ':':<{width}} {_plain(value)}")
    return 0


def _facts(store: Path, pod: PersistentOrderedDict) -> dict[str, Any]:
    manifest = read_manifest(store)
    files = [p for p in store.rglob("*") if p.is_file()]
    last = max((p.stat().st_mtime for p in files if p.name != "lock"), default=None)
    return {
        "path": str(store),
        "kind": manifest.meta.get("kind", "pod"),
        "keys": len(pod),
        "file_size": manifest.file_size,
        "gzipped": manifest.gzipped,
        "sync_at": manifest.meta.get("sync_at"),
        "max_tries": manifest.meta.get("max_tries"),
        "bytes_on_disk": sum(p.stat().st_size for p in files),
        "files": len(files),
        "format_version": _format_version(store),
        "last_sync": None if last is None else _utc(last),
    }


def _format_version(store: Path) -> Any:
    return json.loads((store / MANIFEST).read_text()).get("version")


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _plain(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def keys(args: argparse.Namespace) -> int:
    with _open(args.path) as pod:
        for n, key in enumerate(pod):
            if args.limit is not None and n >= args.limit:
                break
            print(key)
    return 0


def check(args: argparse.Namespace) -> int:
    report = verify(_check_store(args.path, damage_status=True))
    print(report)
    return EXIT_PROBLEMS if report.problems else 0


def compact(args: argparse.Namespace) -> int:
    with PersistentOrderedDict(_check_store(args.path)) as pod:
        pod.compact()
        print(f"{args.path}: compacted ({len(pod):,} keys)")
    return 0


# -- tracker commands -----------------------------------------------------------


def _records(path: str) -> tuple[dict[str, Any], int]:
    """A tracker's records (as last synced, tries logged since included) and max_tries."""
    store = _check_store(path)
    if not _is_tracker(store):
        raise Fail(f"{path}: a plain POD, not a tracker")
    with ProgressTracker(store, readonly=True) as tracker:
        return dict(tracker.items()), tracker.max_tries or 0


def status(args: argparse.Namespace) -> int:
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    width = min(shutil.get_terminal_size((80, 24)).columns, 100)
    history: deque[tuple[float, int]] = deque(maxlen=30)
    try:
        while True:
            # Who writes is asked first: a frame that finds no writer then
            # shows what the last writer left, not the state just before it.
            writer = writer_pid(Path(args.path))
            records, max_tries = _records(args.path)
            shot = snapshot(records, max_tries)
            shot.writer = writer
            history.append((time.monotonic(), shot.done))
            _rate(shot, history)
            if shot.writer is not None and len(history) == 1 and not args.watch:
                time.sleep(1.0)  # a job is running: look again to measure its rate
                continue
            if args.json:
                print(shot.to_json(), flush=True)
            else:
                if args.watch and colour:
                    print("\033[H\033[J", end="")
                print(render(args.path, shot, colour=colour, width=width), flush=True)
            finished = shot.failed + shot.untried == 0  # nothing left that a job would try
            if not args.watch or finished or shot.writer is None:
                return 0  # --watch follows a running job: done, or nobody is writing
            time.sleep(1.0)
            if not colour and not args.json:
                print()
    except KeyboardInterrupt:
        return 0


def _rate(shot: Snapshot, history: deque[tuple[float, int]]) -> None:
    if shot.writer is None or len(history) < 2:
        return
    (t0, done0), (t1, done1) = history[0], history[-1]
    if t1 > t0:
        shot.rate = (done1 - done0) / (t1 - t0)
        left = shot.failed + shot.untried
        if shot.rate > 0:
            shot.eta_seconds = left / shot.rate


def list_tasks(args: argparse.Namespace) -> int:
    records, max_tries = _records(args.path)
    keys = in_state(records, max_tries, args.state)
    if args.limit is not None:
        keys = keys[: args.limit]
    if args.json:
        print(json.dumps(keys, ensure_ascii=False))
    else:
        for key in keys:
            print(key)
    return 0


def reset(args: argparse.Namespace) -> int:
    records, max_tries = _records(args.path)
    if args.keys:
        missing = [k for k in args.keys if k not in records]
        if missing:
            raise Fail(f"{args.path}: no key {missing[0]!r}; nothing was reset")
        keys = args.keys
    elif args.all:
        keys = list(records)
    else:
        keys = in_state(records, max_tries, "failed" if args.failed else "exhausted")
    with ProgressTracker(args.path) as tracker:
        for key in keys:
            tracker.mark_not_done(key)
            tracker.reset_tries(key)
            tracker.unabort(key)
    print(f"{args.path}: reset {len(keys):,} tasks")
    return 0


# -- moving data in and out -----------------------------------------------------------


def export(args: argparse.Namespace) -> int:
    with _open(args.path) as pod:
        items = list(pod.items())
    if args.output is None:
        write_export(items, sys.stdout.buffer, args.format)
        sys.stdout.flush()
    else:
        try:
            with open(args.output, "wb") as out:
                write_export(items, out, args.format)
        except OSError as exc:
            raise Fail(f"{args.output}: {exc.strerror}") from None
    return 0


def import_file(args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise Fail(f"{args.file}: {exc.strerror}") from None
    try:
        items = read_import(data, args.file)
    except BadImport as exc:
        raise Fail(f"{exc}; nothing was imported") from None
    store = Path(args.path)
    existed = store.exists()
    exists = (store / MANIFEST).is_file()
    is_tracker = exists and _is_tracker(store)
    kind = ProgressTracker if is_tracker else PersistentOrderedDict
    with kind(store) as pod:
        pod.hold()
        try:
            for key, value in items:
                pod[key] = value
        except TypeError as exc:
            pod.revert()
            pod.close()
            if not existed:  # leave no empty store behind
                shutil.rmtree(store, ignore_errors=True)
            raise Fail(f"{args.file}: {exc}; nothing was imported") from None
        pod.sync()
    print(f"{args.path}: imported {len(items):,} keys")
    return 0


def demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo  # noqa: PLC0415  # imports the worker function on demand

    if args.workers < 1:
        raise Fail("--workers must be at least 1")
    return run_demo(args.path, args.tasks, args.workers)
