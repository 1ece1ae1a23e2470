"""The ``tastypy`` command: look at, check and maintain stores from the shell.

Read commands (``show``, ``keys``, ``status``, ``list``, ``export``,
``verify``) open stores read-only: they
work while another process writes, and never change a file. Bad input gets
a one-line error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._status import STATES, Snapshot, in_state, render, snapshot, writer_pid
from ._transfer import BadImport, read_import, write_export
from .errors import NotAStoreError, TastypyError
from .pod import PersistentOrderedDict
from .storage._manifest import MANIFEST, read_manifest
from .storage.verify import verify
from .tracker import ProgressTracker

__all__ = ["main"]

EXIT_PROBLEMS = 1  # verify found damage
EXIT_USAGE = 2  # bad input: no such store, unknown key, locked, ...


class _Fail(Exception):
    """A user-facing error: printed on one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line *argv* (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except (_Fail, TastypyError) as exc:  # LockedError names the holder; damage names the file
        print(f"tastypy: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `tastypy keys big.pod | head`
        return 0
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tastypy",
        description="Look at, check and maintain tastypy stores (PODs and trackers).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    show = commands.add_parser(
        "show",
        help="what a store holds: kind, size, settings, last sync; or one value",
        description="Show a store's kind, number of keys, settings, size on disk, format "
        "version and time of the last sync; with KEY, that value, pretty-printed.",
    )
    show.add_argument("path", metavar="PATH")
    show.add_argument("key", metavar="KEY", nargs="?")
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.set_defaults(handler=_show)

    keys = commands.add_parser(
        "keys", help="the keys, in order", description="Print the store's keys, in order."
    )
    keys.add_argument("path", metavar="PATH")
    keys.add_argument("--limit", type=_positive, metavar="N", help="print at most N keys")
    keys.set_defaults(handler=_keys)

    check = commands.add_parser(
        "verify",
        help="check every file; exit 1 if damaged",
        description="Read every file of the store and print each problem found; exit "
        "status 1 if there is any. Never writes; safe while another process writes.",
    )
    check.add_argument("path", metavar="PATH")
    check.set_defaults(handler=_verify)

    compact = commands.add_parser(
        "compact",
        help="fold the journal into the data files now",
        description="Fold the journal into the data files now (the store does this by "
        "itself from time to time). Needs the store not to be open for writing elsewhere.",
    )
    compact.add_argument("path", metavar="PATH")
    compact.set_defaults(handler=_compact)

    status = commands.add_parser(
        "status",
        help="a tracker's progress: counts, errors, rate and ETA",
        description="Show a tracker's progress: done, tried, failed (tried, not done), "
        "exhausted (hit max_tries), aborted and untried; the most frequent recent errors; "
        "the completion rate and ETA while a job writes to it.",
    )
    status.add_argument("path", metavar="PATH")
    status.add_argument(
        "--watch",
        action="store_true",
        help="redraw about once a second while a job writes, until all is done",
    )
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.set_defaults(handler=_status_command)

    listing = commands.add_parser(
        "list",
        help="a tracker's tasks in one state",
        description="Print the keys of a tracker's tasks in one state, in order.",
    )
    listing.add_argument("path", metavar="PATH")
    listing.add_argument("--state", required=True, choices=STATES)
    listing.add_argument("--limit", type=_positive, metavar="N", help="print at most N keys")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(handler=_list)

    reset = commands.add_parser(
        "reset",
        help="mark tasks not done and reset their tries",
        description="Mark tasks not done and reset their tries (and un-abort them), so "
        "that a rerun tries them again.",
    )
    reset.add_argument("path", metavar="PATH")
    which = reset.add_mutually_exclusive_group(required=True)
    which.add_argument("keys", metavar="KEY", nargs="*", default=[])
    which.add_argument("--failed", action="store_true", help="tasks tried but not done")
    which.add_argument("--exhausted", action="store_true", help="tasks that hit max_tries")
    which.add_argument("--all", action="store_true", help="every task")
    reset.set_defaults(handler=_reset)

    export = commands.add_parser(
        "export",
        help="write the data out as plain JSON",
        description="Write every key and value, in order, as one JSON object or as JSON "
        'lines of ["key", value].',
    )
    export.add_argument("path", metavar="PATH")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    export.add_argument("--format", choices=("json", "jsonl"), default="json")
    export.set_defaults(handler=_export)

    load = commands.add_parser(
        "import",
        help="read data in from plain JSON",
        description='Set keys from FILE, a JSON object or JSON lines of ["key", value], in '
        "order, as one sync. A malformed file imports nothing. Creates the store if needed.",
    )
    load.add_argument("path", metavar="PATH")
    load.add_argument("file", metavar="FILE")
    load.set_defaults(handler=_import)

    demo = commands.add_parser(
        "demo",
        help="run a resumable demo job (Ctrl-C it, run it again)",
        description="Run a few thousand simulated tasks, some slow, some failing at "
        "random, with Tracker.run() on worker processes. Stop it with Ctrl-C and run it "
        "again: it resumes.",
    )
    demo.add_argument("path", metavar="PATH", nargs="?", default="demo.tracker")
    demo.add_argument("--tasks", type=_positive, default=3000, metavar="N")
    demo.add_argument("--workers", type=_positive, default=2, metavar="W")
    demo.set_defaults(handler=_demo)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _check_store(path: str) -> Path:
    """*path* as a store directory, or fail with a one-line reason."""
    store = Path(path)
    if not store.exists():
        raise _Fail(f"{path}: no such file or directory")
    if not (store / MANIFEST).is_file():
        raise _Fail(f"{path}: not a tastypy store (no {MANIFEST})")
    return store


def _open(path: str) -> PersistentOrderedDict:
    """Open *path* read-only, or fail with a one-line reason."""
    store = _check_store(path)
    try:
        return PersistentOrderedDict(store, readonly=True)
    except NotAStoreError as exc:
        raise _Fail(str(exc)) from None


def _show(args: argparse.Namespace) -> int:
    pod = _open(args.path)
    with pod:
        if args.key is not None:
            if args.key not in pod:
                raise _Fail(f"{args.path}: no key {args.key!r}")
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


def _keys(args: argparse.Namespace) -> int:
    with _open(args.path) as pod:
        for n, key in enumerate(pod):
            if args.limit is not None and n >= args.limit:
                break
            print(key)
    return 0


def _verify(args: argparse.Namespace) -> int:
    report = verify(_check_store(args.path))
    print(report)
    return EXIT_PROBLEMS if report.problems else 0


def _compact(args: argparse.Namespace) -> int:
    with PersistentOrderedDict(_check_store(args.path)) as pod:
        pod.compact()
        print(f"{args.path}: compacted ({len(pod):,} keys)")
    return 0


# -- tracker commands -----------------------------------------------------------


def _records(path: str) -> tuple[dict[str, Any], int]:
    """A tracker's records (as last synced, tries logged since included) and max_tries."""
    store = _check_store(path)
    if read_manifest(store).meta.get("kind") != "tracker":
        raise _Fail(f"{path}: a plain POD, not a tracker")
    with ProgressTracker(store, readonly=True) as tracker:
        return dict(tracker.items()), tracker.max_tries or 0


def _status_command(args: argparse.Namespace) -> int:
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    width = min(shutil.get_terminal_size((80, 24)).columns, 100)
    history: deque[tuple[float, int]] = deque(maxlen=30)
    try:
        while True:
            records, max_tries = _records(args.path)
            shot = snapshot(records, max_tries)
            shot.writer = writer_pid(Path(args.path))
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


def _list(args: argparse.Namespace) -> int:
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


def _reset(args: argparse.Namespace) -> int:
    records, max_tries = _records(args.path)
    if args.keys:
        missing = [k for k in args.keys if k not in records]
        if missing:
            raise _Fail(f"{args.path}: no key {missing[0]!r}; nothing was reset")
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


def _export(args: argparse.Namespace) -> int:
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
            raise _Fail(f"{args.output}: {exc.strerror}") from None
    return 0


def _import(args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise _Fail(f"{args.file}: {exc.strerror}") from None
    try:
        items = read_import(data, args.file)
    except BadImport as exc:
        raise _Fail(f"{exc}; nothing was imported") from None
    store = Path(args.path)
    existed = store.exists()
    exists = (store / MANIFEST).is_file()
    is_tracker = exists and read_manifest(store).meta.get("kind") == "tracker"
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
            raise _Fail(f"{args.file}: {exc}; nothing was imported") from None
        pod.sync()
    print(f"{args.path}: imported {len(items):,} keys")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo  # noqa: PLC0415  # imports the worker function on demand

    if args.workers < 1:
        raise _Fail("--workers must be at least 1")
    return run_demo(args.path, args.tasks, args.workers)
