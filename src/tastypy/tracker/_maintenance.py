"""What ``verify`` and ``repair`` check and fix in a tracker's store, beyond its files.

The engine checks its files; this is the tracker's share (see
:class:`tastypy.storage.damage.ContentChecks`, which ``tastypy.verify`` and
``tastypy.repair`` fill with it):

- :data:`SETTINGS`: ``max_tries``, a whole number >= 0 (the retry
  settings, numbers, are checked with the records: see ``_retry.py``);
- :data:`SIDE_LOGS`: the tries log;
- :func:`record_problems` (verify): task records whose ``_tries`` the
  tracker cannot count by;
- :func:`fix_salvage` (repair): apply the logged tries, as opening the
  tracker would, then give each unusable ``_tries`` 0. Each change is
  reported; a task lost but for its logged tries comes back with them only.

A plain POD's store is left as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ..errors import CorruptStoreError
from ..storage.damage import Damage, Salvaging, readable_key
from ._records import bad_records, record_problem
from ._retry import RETRY_SETTINGS, RetryPolicy
from ._tries import NAME as TRIES

__all__ = ["SETTINGS", "SIDE_LOGS", "fix_salvage", "record_problems"]

SETTINGS = (("max_tries", 0),)  # the tracker's setting in the meta, and its minimum
SIDE_LOGS = (TRIES,)


def _is_tracker(meta: dict[str, Any]) -> bool:
    return meta.get("kind") == "tracker"


def record_problems(store: Path, meta: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """A tracker's retry settings it would refuse, and task records it cannot count by."""
    if not _is_tracker(meta):
        return []
    problems = [f"{store}: setting meta.{why}" for _name, why in _bad_retry_settings(meta)]
    return problems + bad_records(store, data)


def _bad_retry_settings(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, why)`` of each retry setting of *meta* the tracker would refuse."""
    bad = []
    for name in RETRY_SETTINGS:
        try:
            RetryPolicy.from_meta({name: meta.get(name)})
        except ValueError as exc:
            bad.append((name, str(exc)))
    return bad


def fix_salvage(found: Salvaging) -> None:
    """Make of a tracker's salvage what opening the tracker would (see the module)."""
    if not _is_tracker(found.meta):
        return
    for name, why in _bad_retry_settings(found.meta):
        del found.meta[name]
        found.lose(Damage(found.store, None, None, f"setting meta.{why}; dropped", records=0))
    _apply_tries(found)
    _reset_unusable_tries(found)


def _apply_tries(found: Salvaging) -> None:
    """Apply a tracker's logged tries, as opening the tracker would."""
    path = found.side_log_path(TRIES)
    try:
        raw = found.read_side_log(TRIES)
    except CorruptStoreError as exc:  # a symbolic link: never followed
        found.lose(Damage(path, None, None, f"not read ({exc}): the tries it logged", records=0))
        return
    if raw is None:
        return
    said: dict[str, int | None] = {}
    for lineno, line in enumerate(raw.split(b"\n")[:-1], 1):
        record = _loads(line)
        if (
            type(record) is list
            and len(record) == 2
            and type(record[0]) is str
            and (record[1] is None or type(record[1]) is int)
        ):
            said[record[0]] = record[1]
        else:
            found.lose(Damage(path, lineno, readable_key(line), "unreadable try count", records=0))
    data = found.data
    for key, tries in said.items():
        if tries is None:
            continue
        record = data.get(key)
        if record is None:
            data[key] = {"_done": False, "_tries": tries}
            why = f"rebuilt from {path.name} with its try count ({tries}) only; its other fields"
            found.restored(key, path, why + " are lost")
        elif isinstance(record, dict) and (
            type(record.get("_tries")) is not int or record["_tries"] < tries
        ):
            record["_tries"] = tries


def _reset_unusable_tries(found: Salvaging) -> None:
    """A tracker's records whose ``_tries`` it cannot count by get 0 tries (and are named)."""
    for key, record in found.data.items():
        problem = record_problem(record)
        if problem is not None:
            record["_tries"] = 0
            found.lose(
                Damage(
                    found.store,
                    None,
                    key,
                    f"{problem}; set to 0 (the default: tried again up to max_tries)",
                    records=0,
                )
            )


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
