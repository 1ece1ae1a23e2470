"""The ``tastypy`` command: look at, check and maintain stores from the shell.

This module defines the command line; :mod:`tastypy._commands` does the work.
Read commands (``show``, ``keys``, ``status``, ``list``, ``export``,
``verify``) open stores read-only: they work while another process writes,
and never change a file. Bad input gets a one-line error and exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _commands as handlers
from . import _edit_commands
from ._status import STATES
from .errors import TastypyError

__all__ = ["main"]

EXIT_USAGE = 2  # bad input: no such store, unknown key, locked, ...


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line *argv* (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except (handlers.Fail, TastypyError) as exc:  # e.g. LockedError names the holder
        print(f"tastypy: error: {exc}", file=sys.stderr)
        failed = exc.status if isinstance(exc, handlers.Fail) else None
        return EXIT_USAGE if failed is None else failed
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
    show.set_defaults(handler=handlers.show)

    keys = commands.add_parser(
        "keys", help="the keys, in order", description="Print the store's keys, in order."
    )
    keys.add_argument("path", metavar="PATH")
    keys.add_argument("--limit", type=_positive, metavar="N", help="print at most N keys")
    keys.set_defaults(handler=handlers.keys)

    check = commands.add_parser(
        "verify",
        help="check every file; exit 1 if damaged",
        description="Read every file of the store and print each problem found; exit "
        "status 1 if there is any. Never writes; safe while another process writes.",
    )
    check.add_argument("path", metavar="PATH")
    check.set_defaults(handler=handlers.check)

    compact = commands.add_parser(
        "compact",
        help="fold the journal into the data files now",
        description="Fold the journal into the data files now (the store does this by "
        "itself from time to time). Needs the store not to be open for writing elsewhere.",
    )
    compact.add_argument("path", metavar="PATH")
    compact.set_defaults(handler=handlers.compact)

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
    status.set_defaults(handler=handlers.status)

    listing = commands.add_parser(
        "list",
        help="a tracker's tasks in one state",
        description="Print the keys of a tracker's tasks in one state, in order.",
    )
    listing.add_argument("path", metavar="PATH")
    listing.add_argument("--state", required=True, choices=STATES)
    listing.add_argument("--limit", type=_positive, metavar="N", help="print at most N keys")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(handler=handlers.list_tasks)

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
    reset.set_defaults(handler=handlers.reset)

    export = commands.add_parser(
        "export",
        help="write the data out as plain JSON",
        description="Write every key and value, in order, as one JSON object or as JSON "
        'lines of ["key", value].',
    )
    export.add_argument("path", metavar="PATH")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    export.add_argument("--format", choices=("json", "jsonl"), default="json")
    export.set_defaults(handler=handlers.export)

    load = commands.add_parser(
        "import",
        help="read data in from plain JSON",
        description='Set keys from FILE, a JSON object or JSON lines of ["key", value], in '
        "order, as one sync. A malformed file imports nothing. Creates the store if needed.",
    )
    load.add_argument("path", metavar="PATH")
    load.add_argument("file", metavar="FILE")
    load.set_defaults(handler=handlers.import_file)

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
    demo.set_defaults(handler=handlers.demo)
    return _add_edit_commands(parser, commands)


def _add_edit_commands(
    parser: argparse.ArgumentParser,
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``set``, ``del`` and ``repair`` (changing a store by hand, saving a damaged one)."""
    wait = {"type": float, "default": 0.0, "metavar": "SECONDS"}
    wait_help = "wait up to SECONDS for another process to close the store (default: fail)"

    put = commands.add_parser(
        "set",
        help="set one key to a JSON value, as one atomic sync",
        description="Set KEY to VALUE, a JSON text (strings in quotes: '\"text\"'), as one "
        "atomic sync: the supported way to change a value by hand. On a tracker, VALUE "
        'must be a task record such as \'{"_done": false, "_tries": 0}\'.',
    )
    put.add_argument("path", metavar="PATH")
    put.add_argument("key", metavar="KEY")
    put.add_argument("json", metavar="VALUE")
    put.add_argument("--timeout", help=wait_help, **wait)  # type: ignore[arg-type]
    put.set_defaults(handler=_edit_commands.set_value)

    remove = commands.add_parser(
        "del",
        help="delete keys, as one atomic sync",
        description="Delete each KEY, as one atomic sync. If any KEY is missing, nothing "
        "is deleted.",
    )
    remove.add_argument("path", metavar="PATH")
    remove.add_argument("keys", metavar="KEY", nargs="+")
    remove.add_argument("--timeout", help=wait_help, **wait)  # type: ignore[arg-type]
    remove.set_defaults(handler=_edit_commands.delete)

    fix = commands.add_parser(
        "repair",
        help="save what is intact in a damaged store into a new store",
        description="Save every intact record and every intact commit of a damaged store "
        "into a new store (default PATH.repaired), and say exactly what could not be "
        "saved. The original is not changed unless --in-place. Exit status 0 if "
        "everything was saved (or the store is healthy: nothing is written), 1 if "
        "something was lost.",
    )
    fix.add_argument("path", metavar="PATH")
    where = fix.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="NEW", help="write the new store here")
    where.add_argument(
        "--in-place",
        action="store_true",
        help="replace PATH by the new store; the original is kept as PATH.damaged",
    )
    fix.add_argument(
        "--accept-edits",
        action="store_true",
        help="also keep lines that read as records but fail their check (hand edits)",
    )
    fix.add_argument("--all", action="store_true", help="list everything, not the first 10")
    fix.add_argument("--timeout", help=f"with --in-place: {wait_help}", **wait)  # type: ignore[arg-type]
    fix.set_defaults(handler=_edit_commands.repair_store)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value
