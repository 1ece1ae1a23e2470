"""The ``tastypy`` commands that change a store by hand: ``set``, ``del``, ``repair``.

``set`` and ``del`` are the supported way to change a value by hand: each is
one normal, atomic sync (editing the files in a text editor breaks their
checksums, and the store no longer opens). ``repair`` saves what is intact
in a damaged store. Bad input raises :class:`~tastypy.cli._errors.Fail`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from .. import repair
from ..errors import CorruptStoreError
from ..pod import PersistentOrderedDict
from ..tracker._records import BadRecordError
from ..tracker._tracker import ProgressTracker
from ._display import escaped
from ._errors import Fail, os_errors_fail
from ._store_commands import _check_store, _is_tracker, open_for_writing
from ._transfer import NESTED

__all__ = ["delete", "repair_store", "set_value"]

EXIT_LOST = 1  # repair could not save everything


def set_value(args: argparse.Namespace) -> int:
    store = _check_store(args.path)
    value = _parse(args.json)
    tracker = _is_tracker(store)
    if tracker:
        _check_task_record(args.shown, args.key, value)
    with _writing(store, tracker, args.timeout) as pod:
        try:
            pod[args.key] = value
        except TypeError as exc:
            raise Fail(f"{args.shown}: {exc}; nothing was changed") from None
        pod.sync()
    print(escaped(f"{args.shown}: set {args.key!r}"))
    return 0


def delete(args: argparse.Namespace) -> int:
    store = _check_store(args.path)
    with _writing(store, _is_tracker(store), args.timeout) as pod:
        missing = [key for key in dict.fromkeys(args.keys) if key not in pod]
        if missing:
            listed = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
            raise Fail(f"{args.shown}: no key {listed}; nothing was deleted")
        pod.hold()  # every key in one sync
        for key in dict.fromkeys(args.keys):
            del pod[key]
        pod.sync()
    count = len(dict.fromkeys(args.keys))
    print(escaped(f"{args.shown}: deleted {count} key{'s' if count != 1 else ''}"))
    return 0


def repair_store(args: argparse.Namespace) -> int:
    store = _check_store(args.path, damage_status=True)
    with os_errors_fail("nothing was changed", args.output or args.shown):
        report = repair(
            store,
            args.output,
            in_place=args.in_place,
            accept_edits=args.accept_edits,
            timeout=args.timeout,
        )
    for line in report.lines(None if args.all else 10):
        print(escaped(line))
    if any(d.unchecked for d in report.lost):
        print("  (--accept-edits keeps the unchecked lines as they read, e.g. hand edits)")
    return 0 if report.complete else EXIT_LOST


# -- helpers ----------------------------------------------------------------------


def _parse(text: str) -> Any:
    """*text* as JSON, exactly: no NaN or infinity, integers kept whole (then checked)."""

    def refuse(name: str) -> NoReturn:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise Fail(f"not valid here: {NESTED}") from None
    except ValueError as exc:
        raise Fail(f"not valid JSON: {exc} (strings need quotes: '\"text\"')") from None


def _check_task_record(path: str, key: str, value: Any) -> None:
    """A tracker's values are task records: refuse anything a tracker would not keep."""
    hint = "(to make a task be tried again, use: tastypy reset PATH KEY)"
    if not isinstance(value, dict):
        raise Fail(
            f"{path} is a tracker: the value of {key!r} must be a task record, a JSON "
            f'object such as {{"_done": false, "_tries": 0}} {hint}'
        )
    done, tries = value.get("_done", False), value.get("_tries", 0)
    if type(done) is not bool:
        raise Fail(f"{path}: _done must be true or false, not {done!r} {hint}")
    if type(tries) is not int or tries < 0:
        raise Fail(f"{path}: _tries must be a whole number >= 0, not {tries!r} {hint}")


@contextmanager
def _writing(
    store: Path | str, tracker: bool, timeout: float | None
) -> Iterator[PersistentOrderedDict]:
    """The store open for writing (a tracker as a tracker), with one-line errors.

    If the block fails (a full disk, a read-only file system, bad input),
    its unsynced changes are dropped and the store is closed: nothing changed.
    """
    kind = ProgressTracker if tracker else PersistentOrderedDict
    outcome = "nothing was changed"
    try:
        with contextlib.ExitStack() as stack:
            try:
                pod = stack.enter_context(open_for_writing(kind, store, timeout, outcome=outcome))
            except BadRecordError:
                # The files are whole but a task record is not: open the store as a
                # plain POD, so that set (which checks records itself) or del fixes it.
                plain = open_for_writing(PersistentOrderedDict, store, timeout, outcome=outcome)
                pod = stack.enter_context(plain)
            yield pod
    except CorruptStoreError as exc:
        raise Fail(
            f"{exc} (tastypy verify lists the damage; tastypy repair saves the rest)"
        ) from None
