"""Moving a store's data in and out as plain JSON (``tastypy export``/``import``)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import orjson

from .._codec import is_record

__all__ = ["BadImport", "export_to_file", "read_import", "write_export"]

_SPACE = re.compile(r"[ \t\n\r]*")
# 19 digits or more, perhaps an integer beyond 64 bits (or just digits in a string).
_LONG_NUMBER = re.compile(rb"\d{19}")
# The decoder's own string scanner (json.decoder.scanstring; typeshed omits it).
_string: Callable[[str, int], tuple[str, int]] = getattr(json.decoder, "scanstring")  # noqa: B009


class BadImport(ValueError):
    """An import file that cannot be read; the message names the line."""


def write_export(items: Iterable[tuple[str, Any]], out: IO[bytes], fmt: str) -> int:
    """Write *items* as one JSON object (``json``) or JSON lines (``jsonl``); return the count.

    UTF-8 JSON in which DEL, the C1 controls and the line and paragraph
    separators are ``\\uXXXX`` escapes too (JSON escapes only C0), so the
    output is safe to print on a terminal and splits into lines only at
    ``\\n``; it decodes to the same data.
    """
    count = 0
    if fmt == "jsonl":
        for key, value in items:
            out.write(_safe(orjson.dumps([key, value])) + b"\n")
            count += 1
        return count
    out.write(b"{")
    for key, value in items:
        out.write(b"\n  " if count == 0 else b",\n  ")
        out.write(_safe(orjson.dumps(key) + b": " + orjson.dumps(value)))
        count += 1
    out.write(b"\n}\n" if count else b"}\n")
    return count


# In UTF-8 these bytes are only ever these characters, which JSON text holds
# only inside strings, where an escape means the same.
_UNSAFE = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")


def _safe(encoded: bytes) -> bytes:
    if _UNSAFE.search(encoded) is None:
        return encoded
    return _UNSAFE.sub(lambda m: b"\\u%04x" % ord(m[0].decode()), encoded)


def export_to_file(items: Iterable[tuple[str, Any]], target: str, fmt: str) -> int:
    """Write *items* to the file *target* whole or not at all; return the count.

    The data goes to a temporary file in the same directory, is ``fsync``ed,
    and is renamed over *target* at the end (keeping an existing file's
    permissions; through a symbolic link, its target is replaced). On any
    failure the temporary file is removed and a previous *target* is left
    untouched. A *target* that is not a regular file (``/dev/stdout``, a
    pipe) is written in place.
    """
    try:
        # Not through realpath: /dev/stdout on a pipe resolves to a name
        # (/proc/PID/fd/pipe:[N]) that cannot be opened again.
        old: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        old = None
    if old is not None and not stat.S_ISREG(old.st_mode):
        with open(target, "wb") as out:
            return write_export(items, out, fmt)
    final = os.path.realpath(target)
    directory, base = os.path.split(final)
    fd, temp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            count = write_export(items, out, fmt)
            out.flush()
            os.fchmod(out.fileno(), stat.S_IMODE(old.st_mode) if old else 0o666 & ~_umask())
            os.fsync(out.fileno())
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)
    return count


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some filesystems cannot fsync a directory
            raise
    finally:
        os.close(fd)


def read_import(data: bytes, name: str) -> list[tuple[str, Any]]:
    """Parse an import file into ``(key, value)`` pairs (see :func:`read_numbered`)."""
    return [(key, value) for key, value, _ in read_numbered(data, name)]


def read_numbered(data: bytes, name: str) -> list[tuple[str, Any, int]]:
    """Parse an import file: a JSON object, or JSON lines of ``[key, value]``.

    Returns ``(key, value, line)`` triples, in the file's order, *line* being
    the line the key is on (so later errors can name it).

    Raises
    ------
    BadImport
        Naming the file and line of the first problem; nothing is returned.
    """
    text = data.lstrip()
    if text.startswith(b"{"):
        try:
            document = json.loads(data)
        except RecursionError:
            raise BadImport(f"{name}:1: {NESTED}") from None
        except json.JSONDecodeError as exc:
            raise BadImport(f"{name}:{exc.lineno}: not valid JSON ({exc})") from None
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise BadImport(f"{name}:{line}: not valid UTF-8 ({exc.reason})") from None
        if not isinstance(document, dict):
            raise BadImport(f"{name}:1: expected a JSON object")
        return _object_items(data.decode(json.detect_encoding(data), "surrogatepass"), name)
    items = list(_lines(data, name))
    seen: dict[str, int] = {}
    for key, _value, line in items:
        if key in seen:
            raise BadImport(f"{name}:{line}: key {key!r} is given twice (line {seen[key]} too)")
        seen[key] = line
    return items


NESTED = "nested too deeply to read (lists or objects inside one another)"


def _object_items(text: str, name: str) -> list[tuple[str, Any, int]]:
    """The members of the JSON object *text* (already checked valid), with their lines.

    A key given twice is refused: JSON parsers keep one or the other, so
    the file does not say which value was meant.
    """
    decoder = json.JSONDecoder()
    seen: dict[str, int] = {}
    items = []
    line, counted = 1, 0
    pos = _skip(text, text.index("{") + 1)
    while text[pos] == '"':
        line += text.count("\n", counted, pos)
        counted = pos
        key, pos = _string(text, pos + 1)
        pos = _skip(text, pos) + 1  # past the ":"
        value, pos = decoder.raw_decode(text, _skip(text, pos))
        if key in seen:
            raise BadImport(f"{name}:{line}: key {key!r} is given twice (line {seen[key]} too)")
        seen[key] = line
        items.append((key, value, line))
        pos = _skip(text, pos)
        if text[pos] == ",":
            pos = _skip(text, pos + 1)
    return items


def _skip(text: str, pos: int) -> int:
    """The position of the first character at or after *pos* that is not JSON white space."""
    match = _SPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _lines(data: bytes, name: str) -> Iterator[tuple[str, Any, int]]:
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            if _LONG_NUMBER.search(line) is not None:
                # orjson reads an integer beyond 64 bits as a float; the
                # standard parser keeps it whole, so the store refuses it.
                record = json.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BadImport(f"{name}:{lineno}: not valid JSON ({exc})") from None
        if not is_record(record):
            raise BadImport(f'{name}:{lineno}: expected ["key", value]')
        yield record[0], record[1], lineno
