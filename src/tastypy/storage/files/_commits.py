"""Splitting journal bytes into commits, and telling a torn append from damage.

:func:`plain_commits` and :func:`gzip_members` cut a journal into the pieces
its commits should be, without trusting them; :func:`check_commit` says what
is wrong with one; :func:`torn_in_place` decides whether bad bytes at the end
are what a crash leaves of the last append (a torn tail, to cut away) or
damage (to report). :mod:`tastypy.storage.files._journal` replays on top of this.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator

import orjson

__all__ = ["check_commit", "gzip_members", "plain_commits", "torn_in_place"]

_GZIP_MAGIC = b"\x1f\x8b\x08"
_COMMIT_LINE = re.compile(rb'\{"commit":(\d{1,18}),"records":(\d{1,18}),"crc32":(\d{1,10})\}\n')


def plain_commits(raw: bytes) -> Iterator[tuple[int, int, bytes | None, int, bool]]:
    """(start, end, text, first line number, cut short) of each commit in a plain journal.

    Record lines start with ``[`` and commit lines with ``{``, so we can jump
    from commit line to commit line without looking at every record. Bytes
    after the last complete (newline-terminated) commit line are a commit cut
    short.
    """
    start = 0
    first = 1
    while start < len(raw):
        if raw.startswith(b"{", start):
            at = start
        else:
            found = raw.find(b"\n{", start)
            at = found + 1 if found >= 0 else -1
        end = raw.find(b"\n", at) + 1 if at >= 0 else 0
        if end <= 0:  # no (terminated) commit line follows: cannot be complete
            yield start, len(raw), None, first, True
            return
        text = raw[start:end]
        yield start, end, text, first, False
        first += text.count(b"\n")
        start = end


def gzip_members(raw: bytes) -> Iterator[tuple[int, int, bytes | None, int, bool]]:
    """(start, end, text, first line number, cut short) of each gzip member.

    A member that ends before its gzip trailer, or that does not decompress,
    yields ``None`` and ends the scan; it counts as cut short (a torn append)
    unless an intact member follows it.
    """
    pos = 0
    lineno = 1
    while pos < len(raw):
        text, end, state = _inflate_member(raw, pos)
        if state == _BAD:
            # Garbled by a power cut mid-append (zeroed or garbage sectors),
            # unless an intact member follows: then it is damage.
            yield pos, len(raw), None, lineno, not _intact_member_after(raw, pos + 1)
            return
        if state == _SHORT:  # every byte read, and the member is not complete
            # Cut short by a crash, unless an intact member follows: then a
            # damaged byte made this member swallow the ones after it.
            yield pos, len(raw), None, lineno, not _intact_member_after(raw, pos + 1)
            return
        assert text is not None
        yield pos, end, text, lineno, False
        lineno += text.count(b"\n")
        pos = end


_WHOLE, _SHORT, _BAD = "whole", "short", "bad"
_FIRST_READ = 512
_MAX_READ = 1 << 20


def _inflate_member(raw: bytes, pos: int) -> tuple[bytes | None, int, str]:
    """Decompress the gzip member at *pos*: (text, end, _WHOLE / _SHORT / _BAD).

    The inflater is fed in blocks that double in size. Fed the whole rest of
    the file at once, it would copy everything after the member's end into
    ``unused_data``, for every member: replay would be quadratic. This way
    each member costs at most about twice its size plus one small block.
    """
    view = memoryview(raw)
    inflater = zlib.decompressobj(31)
    parts: list[bytes] = []
    at, step = pos, _FIRST_READ
    while at < len(raw):
        piece = view[at : at + step]
        try:
            parts.append(inflater.decompress(piece))
        except zlib.error:
            return None, len(raw), _BAD
        at += len(piece)
        if inflater.eof:
            return b"".join(parts), at - len(inflater.unused_data), _WHOLE
        step = min(2 * step, _MAX_READ)
    return None, len(raw), _SHORT


def _intact_member_after(raw: bytes, start: int) -> bool:
    """Whether a complete gzip member starts anywhere in *raw* from *start* on."""
    at = raw.find(_GZIP_MAGIC, start)
    while at >= 0:
        if _inflate_member(raw, at)[2] == _WHOLE:
            return True
        at = raw.find(_GZIP_MAGIC, at + 1)
    return False


def torn_in_place(
    raw: bytes,
    good_end: int,
    later: Iterator[tuple[int, int, bytes | None, int, bool]],
    expected: int,
) -> bool:
    """Whether the bad bytes after *good_end* are an append torn by a power loss.

    A power cut can keep some sectors of an append that was never synced and
    not others, which then read back as zeros or garbage; the commit line
    may have survived. tastypy only ever writes UTF-8 text without NUL
    bytes, so zeros or bytes that are not UTF-8 are that tear's mark, while
    a hand edit (or any change that keeps the text readable) is damage. So is
    anything followed by an intact commit, or reaching past the commit line
    of commit *expected*: only the last append can be torn.
    """
    rest = raw[good_end:]
    if b"\0" not in rest:
        try:
            rest.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return False
    if any(int(m[1]) > expected for m in _COMMIT_LINE.finditer(rest)):
        return False  # it spans a later commit's line: more than the last append
    if any(check_commit(text, None) is None for _s, _e, text, _l, _c in later):
        return False
    return not _intact_commit_inside(rest)


# Places tried as the start of a damaged commit's first record (from the left:
# garbage rarely holds '["'). Each costs a CRC of that commit, so a hostile
# line full of '["' cannot make the search quadratic.
_MAX_STARTS = 16


def _intact_commit_inside(rest: bytes) -> bool:
    """Whether a whole, valid commit ends somewhere in *rest* (after garbage, say).

    Damage over a commit line merges its commit with the next into one bad
    piece; the later commit, intact, shows that this was no torn append.
    The work is linear in the size of *rest* whatever its commit lines
    claim: a body is looked for only back to the commit line before it.
    """
    view = memoryview(rest)
    floor = 0  # no commit's body reaches back past the commit line before it
    for match in _COMMIT_LINE.finditer(rest):
        low, floor = floor, match.end()
        records, crc, line = int(match[2]), int(match[3]), match.start()
        if records == 0 or line == low or rest[line - 1] != 0x0A:
            continue
        # The body is the last `records` lines; the first may have lost its
        # start to the damage, so try the places a record line can begin.
        first_end = line - 1
        for _ in range(records - 1):
            first_end = rest.rfind(b"\n", low, first_end)
            if first_end < 0:
                break
        if first_end < 0:
            continue
        line_start = max(low, rest.rfind(b"\n", low, first_end) + 1)
        at = rest.find(b'["', line_start, first_end)
        for _ in range(_MAX_STARTS):
            if at < 0:
                break
            if zlib.crc32(view[at:line]) == crc:
                return True
            at = rest.find(b'["', at + 1, first_end)
    return False


def check_commit(text: bytes | None, number: int | None) -> str | None:
    """Why *text* is not a valid commit numbered *number* (any, if None)."""
    if text is None:
        return "is unreadable"
    if not text.endswith(b"\n"):
        return "is incomplete"
    cut = text.rfind(b"\n", 0, len(text) - 1) + 1
    try:
        trailer = orjson.loads(text[cut:])
        records, crc, found = trailer["records"], trailer["crc32"], trailer["commit"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "has no valid commit line"
    body = text[:cut]
    if number is not None and found != number:
        return f"is numbered {found!r}"
    if body.count(b"\n") != records or zlib.crc32(body) != crc:
        return "fails its checksum"
    return None
