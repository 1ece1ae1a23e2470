"""The ``tastypy`` command: look at, check and maintain stores from the shell.

This module defines the command line; :mod:`tastypy.cli._store_commands` does the work.
Read commands (``show``, ``keys``, ``status``, ``list``, ``export``,
``verify``) open stores read-only: they work while another process writes,
and never change a file. Every failure is one line on stderr, never a
traceback. Exit statuses (:mod:`tastypy.cli._errors`):

- 0: done;
- 1: ``verify`` found damage;
- 2: bad input (no such store, not a store, unknown key, malformed import
  file, bad options) or the store is open for writing elsewhere;
- 3: the operating system refused (read-only filesystem, disk full, no
  permission, I/O error); the store is as it was before the command.
- 130: interrupted (Ctrl-C); 141: the output was closed before the end
  (``| head``), as a shell reports them.

Keys, values and messages are printed with control characters escaped
(:mod:`tastypy.cli._display`), whatever the terminal's encoding.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TextIO, cast

from ..errors import LockedError, TastypyError
from ..storage.engines import cosmetic
from . import _edit_commands
from . import _store_commands as handlers
from ._display import escaped
from ._errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Fail,
    StandardOutput,
    locked_line,
    os_error_line,
    os_error_status,
)
from ._status import STATES
from ._transfer import NESTED

__all__ = ["add_timeout_option", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line *argv* (default: ``sys.argv[1:]``); return the exit status."""
    _escape_what_cannot_be_encoded()
    parser = _parser()
    args = parser.parse_args(argv)
    stdout = sys.stdout
    sys.stdout = cast(TextIO, StandardOutput(stdout))  # a proxy with the same interface
    try:
        return _run(args)
    finally:
        sys.stdout = stdout


def _run(args: argparse.Namespace) -> int:  # noqa: PLR0911  # one status per kind of failure
    try:
        with _warnings_on_one_line():
            handler = handlers.with_name(args)
            status: int = handler(args)
            sys.stdout.flush()  # a full or closed output fails here, not at exit
    except LockedError as exc:
        _error(locked_line(exc, has_timeout=hasattr(args, "timeout"), waited=_waited(args)))
        return EXIT_USAGE
    except (Fail, TastypyError) as exc:
        _error(escaped(str(exc)))
        failed = exc.status if isinstance(exc, Fail) else None
        return EXIT_USAGE if failed is None else failed
    except BrokenPipeError:  # e.g. `tastypy keys big.pod | head`: as a shell reports it
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # one a command did not expect: still one line
        _error(os_error_line(exc, path=getattr(args, "shown", getattr(args, "path", None))))
        return os_error_status(exc)
    except RecursionError:  # a JSON text nested deeper than any check expected
        _error(f"{escaped(getattr(args, 'shown', getattr(args, 'path', '')))}: input {NESTED}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted (Ctrl-C); a store being written is as of its last sync")
        return EXIT_INTERRUPTED
    return status


def _waited(args: argparse.Namespace) -> bool:
    timeout = getattr(args, "timeout", None)
    return bool(timeout)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
        os.close(devnull)


def _error(line: str) -> None:
    print(f"tastypy: error: {line}", file=sys.stderr)


def _escape_what_cannot_be_encoded() -> None:
    """Print ``\\xfc`` rather than fail where the terminal cannot show a character.

    The commands escape control characters themselves; this catches text
    that is printable but not in the encoding (``PYTHONIOENCODING=ascii``,
    ``LANG=C`` on an old Python).
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


@contextlib.contextmanager
def _warnings_on_one_line() -> Iterator[None]:
    """Show the library's warnings as ``tastypy: warning: ...`` lines, escaped."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_OneLine())
    # Some warnings are cosmetic (the file engine's note of who holds its lock,
    # which a full disk may refuse while the store works): the command stays
    # quiet about them.
    handler.addFilter(lambda record: not cosmetic(record))
    logger = logging.getLogger("tastypy")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"tastypy: {record.levelname.lower()}: {escaped(record.getMessage())}"


def _add_name_option(command: argparse.ArgumentParser) -> None:
    """Give a store *command* ``--name NAME``: the store within a PostgreSQL database."""
    command.add_argument(
        "--name",
        metavar="NAME",
        help="with a postgresql:// URL as PATH, the store's name in that database "
        "(PATH#NAME says the same; a URL without a name lists the stores there)",
    )


def add_timeout_option(command: argparse.ArgumentParser) -> None:
    """Give a writing *command* ``--timeout SECONDS`` (into ``args.timeout``, default 0).

    A store another process holds is then waited for; the refusal names
    this option (see :func:`tastypy.cli._errors.locked_line`).
    """
    command.add_argument(
        "--timeout",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for another process to let go of the store (default: 0)",
    )


def _parser() -> argparse.ArgumentParser:  # noqa: PLR0915  # the whole command line, in order
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
    _add_name_option(show)
    show.add_argument("key", metavar="KEY", nargs="?")
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.set_defaults(handler=handlers.show)

    keys = commands.add_parser(
        "keys", help="the keys, in order", description="Print the store's keys, in order."
    )
    keys.add_argument("path", metavar="PATH")
    _add_name_option(keys)
    keys.add_argument("--limit", type=_positive, metavar="N", help="print at most N keys")
    keys.set_defaults(handler=handlers.keys)

    check = commands.add_parser(
        "verify",
        help="check every file; exit 1 if damaged",
        description="Read every file of the store and print each problem found; exit "
        "status 1 if there is any. Never writes; safe while another process writes.",
    )
    check.add_argument("path", metavar="PATH")
    _add_name_option(check)
    check.set_defaults(handler=handlers.check)

    compact = commands.add_parser(
        "compact",
        help="fold the journal into the data files now",
        description="Fold the journal into the data files now (the store does this by "
        "itself from time to time). Needs the store not to be open for writing elsewhere.",
    )
    compact.add_argument("path", metavar="PATH")
    _add_name_option(compact)
    add_timeout_option(compact)
    compact.set_defaults(handler=handlers.compact)

    status = commands.add_parser(
        "status",
        help="a tracker's progress: counts, errors, rate and ETA",
        description="Show a tracker's progress: done, tried, failed (tried, not done), "
        "exhausted (hit max_tries), aborted and untried; the most frequent recent errors; "
        "the completion rate and ETA while a job writes to it.",
    )
    status.add_argument("path", metavar="PATH")
    _add_name_option(status)
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
    _add_name_option(listing)
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
    _add_name_option(reset)
    which = reset.add_mutually_exclusive_group(required=True)
    which.add_argument("keys", metavar="KEY", nargs="*", default=[])
    which.add_argument("--failed", action="store_true", help="tasks tried but not done")
    which.add_argument("--exhausted", action="store_true", help="tasks that hit max_tries")
    which.add_argument("--all", action="store_true", help="every task")
    add_timeout_option(reset)
    reset.set_defaults(handler=handlers.reset)

    export = commands.add_parser(
        "export",
        help="write the data out as plain JSON",
        description="Write every key and value, in order, as one JSON object or as JSON "
        'lines of ["key", value].',
    )
    export.add_argument("path", metavar="PATH")
    _add_name_option(export)
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
    _add_name_option(load)
    load.add_argument("file", metavar="FILE")
    add_timeout_option(load)
    load.set_defaults(handler=handlers.import_file)

    copy = commands.add_parser(
        "copy",
        help="copy a store to a new place, between engines too",
        description="Copy every key and value of SRC, in order, with its settings, into a "
        "new store at DST. Either may be a directory or a postgresql:// URL#NAME (a store "
        "in a database): files to PostgreSQL and back. SRC is only read.",
    )
    copy.add_argument("source", metavar="SRC")
    copy.add_argument("target", metavar="DST")
    copy.set_defaults(handler=handlers.copy_store)

    demo = commands.add_parser(
        "demo",
        help="run a resumable demo job (Ctrl-C it, run it again)",
        description="Crawl a few thousand simulated pages with Tracker.run() on an "
        "asyncio event loop, W fetches in flight: some fail and are retried after a random "
        "delay, a few hang until their time limit. Stop it with Ctrl-C and run it again: "
        "it resumes.",
    )
    demo.add_argument("path", metavar="PATH", nargs="?", default="demo.tracker")
    demo.add_argument("--tasks", type=_positive, default=3000, metavar="N")
    demo.add_argument(
        "--workers", type=_positive, default=300, metavar="W", help="fetches in flight (300)"
    )
    demo.set_defaults(handler=handlers.demo)
    return _add_edit_commands(parser, commands)


def _add_edit_commands(
    parser: argparse.ArgumentParser,
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``set``, ``del`` and ``repair`` (changing a store by hand, saving a damaged one)."""
    put = commands.add_parser(
        "set",
        help="set one key to a JSON value, as one atomic sync",
        description="Set KEY to VALUE, a JSON text (strings in quotes: '\"text\"'), as one "
        "atomic sync: the supported way to change a value by hand. On a tracker, VALUE "
        'must be a task record such as \'{"_done": false, "_tries": 0}\'.',
    )
    put.add_argument("path", metavar="PATH")
    _add_name_option(put)
    put.add_argument("key", metavar="KEY")
    put.add_argument("json", metavar="VALUE")
    add_timeout_option(put)
    put.set_defaults(handler=_edit_commands.set_value)

    remove = commands.add_parser(
        "del",
        help="delete keys, as one atomic sync",
        description="Delete each KEY, as one atomic sync. If any KEY is missing, nothing "
        "is deleted.",
    )
    remove.add_argument("path", metavar="PATH")
    _add_name_option(remove)
    remove.add_argument("keys", metavar="KEY", nargs="+")
    add_timeout_option(remove)
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
    _add_name_option(fix)
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
    add_timeout_option(fix)  # used with --in-place
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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value
