"""The ``tastypy`` command: look at, check and maintain stores from the shell.

Read commands (``show``, ``keys``, ``verify``) open stores read-only: they
work while another process writes, and never change a file. Bad input gets
a one-line error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import NotAStoreError, TastypyError
from .pod import PersistentOrderedDict
from .storage._manifest import MANIFEST, read_manifest
from .storage.verify import verify

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
