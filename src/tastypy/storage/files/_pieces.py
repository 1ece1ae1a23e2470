"""Reading past damage: the pieces of a damaged journal, what of a gzip file inflates.

Opening a store stops at the first damage; a salvage goes on past it.
:func:`split_damaged` finds the intact commit at the end of a piece that
damage merged with the one before it; :func:`gzip_pieces` goes on to the next
intact gzip member after one that does not decompress; and
:func:`inflate_what_we_can` reads a damaged gzip file up to the damage.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import orjson

from ._commits import _inflate_member, check_commit

__all__ = ["gzip_pieces", "inflate_what_we_can", "split_damaged"]

_GZIP_MAGIC = b"\x1f\x8b\x08"
_BLOCK = 4096


def _loads(line: bytes) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def split_damaged(text: bytes | None) -> tuple[bytes | None, bytes | None]:
    """A piece that fails its check, as (damaged part, intact commit at its end or None)."""
    tail = None if text is None else _intact_tail(text)
    if text is None or tail is None:
        return text, None
    return text[: len(text) - len(tail)], tail


def _intact_tail(text: bytes) -> bytes | None:
    """The intact commit that ends *text*, if damage before it merged it with another.

    Damage over a commit line merges two commits into one piece; the body of
    the second is the last ``records`` lines before its commit line.
    """
    if not text.endswith(b"\n"):
        return None
    cut = text.rfind(b"\n", 0, len(text) - 1) + 1
    trailer = _loads(text[cut:])
    records = trailer.get("records") if isinstance(trailer, dict) else None
    if type(records) is not int or records < 0:
        return None
    start = cut
    for _ in range(records):
        start = text.rfind(b"\n", 0, start - 1) + 1
        if start <= 0:
            return None
    tail = text[start:]
    return tail if check_commit(tail, None) is None else None


def inflate_what_we_can(raw: bytes) -> bytes:
    """As much of a damaged gzip file as decompresses, up to the damage."""
    inflater = zlib.decompressobj(31)
    parts = []
    for at in range(0, len(raw), _BLOCK):
        try:
            parts.append(inflater.decompress(raw[at : at + _BLOCK]))
        except zlib.error:
            break
        if inflater.eof:
            break
    return b"".join(parts)


def gzip_pieces(raw: bytes) -> Iterator[tuple[int, int, bytes | None, int, bool]]:
    """Like :func:`gzip_members`, but going on past damage to the next intact member.

    A stretch that does not decompress yields what of it does (or ``None``),
    cut short if nothing intact follows. Line numbers are exact up to the
    first damage and 0 (unknown) after it.
    """
    pos, lineno = 0, 1
    while pos < len(raw):
        text, end, state = _inflate_member(raw, pos)
        if state == "whole":
            assert text is not None
            yield pos, end, text, lineno, False
            lineno = lineno + text.count(b"\n") if lineno else 0
            pos = end
            continue
        after = raw.find(_GZIP_MAGIC, pos + 1)
        while after >= 0 and _inflate_member(raw, after)[2] != "whole":
            after = raw.find(_GZIP_MAGIC, after + 1)
        stop = len(raw) if after < 0 else after
        partial = inflate_what_we_can(raw[pos:stop]) or None
        yield pos, stop, partial, lineno, after < 0
        lineno, pos = 0, stop
