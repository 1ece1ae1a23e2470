"""Moving a store's data in and out as plain JSON (``tastypy export``/``import``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from ._codec import is_record

__all__ = ["BadImport", "read_import", "write_export"]


class BadImport(ValueError):
    """An import file that cannot be read; the message names the line."""


def write_export(items: Iterable[tuple[str, Any]], out: IO[bytes], fmt: str) -> int:
    """Write *items* as one JSON object (``json``) or JSON lines (``jsonl``); return the count."""
    count = 0
    if fmt == "jsonl":
        for key, value in items:
            out.write(orjson.dumps([key, value]) + b"\n")
            count += 1
        return count
    out.write(b"{")
    for key, value in items:
        out.write(b"\n  " if count == 0 else b",\n  ")
        out.write(orjson.dumps(key) + b": " + orjson.dumps(value))
        count += 1
    out.write(b"\n}\n" if count else b"}\n")
    return count


def read_import(data: bytes, name: str) -> list[tuple[str, Any]]:
    """Parse an import file: a JSON object, or JSON lines of ``[key, value]``.

    Raises
    ------
    BadImport
        Naming the file and line of the first problem; nothing is returned.
    """
    text = data.lstrip()
    if text.startswith(b"{"):
        try:
            document = json.loads(data)
        except json.JSONDecodeError as exc:
            raise BadImport(f"{name}:{exc.lineno}: not valid JSON ({exc})") from None
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise BadImport(f"{name}:{line}: not valid UTF-8 ({exc.reason})") from None
        if not isinstance(document, dict):
            raise BadImport(f"{name}:1: expected a JSON object")
        return list(document.items())
    return list(_lines(data, name))


def _lines(data: bytes, name: str) -> Iterator[tuple[str, Any]]:
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BadImport(f"{name}:{lineno}: not valid JSON ({exc})") from None
        if not is_record(record):
            raise BadImport(f'{name}:{lineno}: expected ["key", value]')
        yield record[0], record[1]
