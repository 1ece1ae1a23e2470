"""The fields a tracker counts by, checked: a store is untrusted input.

A task record's ``_tries`` must be a whole number >= 0; it may be missing
(the tracker gives the default). ``_done`` and ``_aborted`` count by their
truth, as in the original tastypy, so any JSON value is usable there. A record
that is not a dict at all is wrapped by the tracker, as documented. Anything
else would be counted wrong without a word: ``"3"`` tries as none, ``-5``
as five tries fewer than ``max_tries`` allows, ``"no"`` as done.

:func:`record_problem` says what is wrong with one record (for a check at
assignment, which should raise ``TypeError``); :func:`check_records` refuses
a store holding such a record (``CorruptStoreError`` naming the key and the
field); :func:`bad_records` lists them all (for ``verify``).
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import CorruptStoreError

__all__ = [
    "MAX_TRIES_VALUE",
    "NEW_RECORD",
    "BadRecordError",
    "bad_records",
    "check_records",
    "fresh_records",
    "record_problem",
    "refuse_record",
    "with_defaults",
]

# A try count must stay a 64-bit JSON integer after any number of tries.
MAX_TRIES_VALUE = 2**62
NEW_RECORD = b'{"_done":false,"_tries":0}'  # the encoding of every fresh_records value


def fresh_records(keys: Iterable[str]) -> dict[str, Any]:
    """A new, untried record for each of *keys* (each its own dict)."""
    return {key: {"_done": False, "_tries": 0} for key in keys}


class BadRecordError(CorruptStoreError):
    """A tracker store's files are whole, but a task record in them is unusable.

    The store opens as a plain POD (``tastypy set`` and ``export`` do that),
    so the record can be fixed.
    """


def record_problem(record: object) -> str | None:
    """Why *record*'s ``_tries`` is unusable, or None if it is fine."""
    if not isinstance(record, dict):
        return None
    tries = record.get("_tries", 0)  # called for each record a sync writes: kept lean
    if type(tries) is not int or not 0 <= tries < MAX_TRIES_VALUE:
        return (
            f"field _tries is {reprlib.repr(tries)}; expected a whole number from 0 "
            f"to {MAX_TRIES_VALUE - 1}"
        )
    return None


def bad_records(path: str | Path, data: dict[str, Any], limit: int = 10) -> list[str]:
    """Up to *limit* problems, each naming the store, the key and the field.

    *data* is the decoded store (the tracker's ``_data``), not the tracker:
    reading through the tracker would mark every key dirty.
    """
    problems: list[str] = []
    for key, record in data.items():
        problem = record_problem(record)
        if problem is not None:
            problems.append(f"{path}: task {reprlib.repr(key)}: {problem}")
            if len(problems) >= limit:
                break
    return problems


def check_records(path: str | Path, data: dict[str, Any]) -> None:
    """Refuse a tracker store holding a record whose ``_tries`` is unusable.

    Raises
    ------
    CorruptStoreError
        Naming the store, the first such task and its field, and the fix.
    """
    found = bad_records(path, data, limit=1)
    if found:
        raise BadRecordError(_with_fix(found[0]))


def refuse_record(path: str | Path, key: str, record: object) -> None:
    """Raise :class:`BadRecordError` for *key*'s record, found unusable by its store."""
    problem = record_problem(record) or "field _tries is not usable"
    raise BadRecordError(_with_fix(f"{path}: task {reprlib.repr(key)}: {problem}"))


def _with_fix(problem: str) -> str:
    return (
        f"{problem} (edited by hand? fix the record with: tastypy set PATH KEY "
        '\'{"_done": false, "_tries": 0}\', or delete the task with: tastypy del PATH KEY)'
    )


def with_defaults(record: Any) -> Any:
    """*record* with ``_done`` and ``_tries`` (a copy if one was missing), as a tracker shows it.

    A value that is not a dict becomes ``{"value": value}`` with both.
    """
    if isinstance(record, dict) and "_done" in record and "_tries" in record:
        return record
    repaired = dict(record) if isinstance(record, dict) else {"value": record}
    repaired.setdefault("_done", False)
    repaired.setdefault("_tries", 0)
    return repaired
