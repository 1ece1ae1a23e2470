"""Text the ``tastypy`` command prints for people: escaped, and measured in cells.

Keys, values, paths and error messages are arbitrary text. Printed raw, a key
holding a newline would look like two keys, and one holding ``ESC [31m``
would turn the terminal red. So every such text goes through one of:

- :func:`shown` for a key or value printed on its own: as it is when every
  character is printable (Python's ``str.isprintable``) and can be encoded
  for the output, and it does not start with a quote; otherwise as Python's
  ``repr()`` (``'a\\nb'``, ``'\\x1b[31m'``, ``'\\u2028'``), so output that starts
  with a quote is always an escaped literal and never ambiguous. The empty
  key is shown as ``''``, not as a blank line.
- :func:`escaped` for text inside a longer line (a message, a path): each
  character that is not printable, or that the output cannot encode, becomes
  its Python escape, in place.
- :func:`json_text` for JSON: valid JSON whatever the output's encoding
  (characters it cannot encode, and control characters JSON would leave raw,
  become ``\\uXXXX`` escapes).

Widths are counted in terminal cells (:func:`cells`): East Asian wide and
full-width characters take two, combining marks none.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from typing import Any

__all__ = ["can_encode", "cells", "escaped", "fit", "json_text", "shown"]


def _encoding() -> str:
    return getattr(sys.stdout, "encoding", None) or "utf-8"


def can_encode(text: str, encoding: str | None = None) -> bool:
    """Whether the output (stdout, or *encoding*) can print *text* as it is."""
    try:
        text.encode(encoding or _encoding())
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _safe(char: str, encoding: str) -> bool:
    return char.isprintable() and (char.isascii() or can_encode(char, encoding))


def shown(text: str) -> str:
    """*text* as it is if it prints safely and unambiguously, else as a Python literal."""
    encoding = _encoding()
    if (
        text
        and text.isprintable()
        and not text.startswith(("'", '"'))
        and can_encode(text, encoding)
    ):
        return text
    literal = repr(text)
    return literal if can_encode(literal, encoding) else ascii(text)


def escaped(text: str) -> str:
    """*text* with every character that is unsafe to print replaced by its escape."""
    encoding = _encoding()
    if text.isprintable() and can_encode(text, encoding):
        return text
    return "".join(c if _safe(c, encoding) else ascii(c)[1:-1] for c in text)


def json_text(value: Any, indent: int | None = None) -> str:
    """*value* as JSON that prints safely under the output's encoding."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    encoding = _encoding()
    if text.isprintable() and can_encode(text, encoding):
        return text
    # Outside strings JSON text is printable ASCII (and the newlines of
    # indent), so any other character sits inside a string and may be escaped.
    return "".join(c if c == "\n" or _safe(c, encoding) else _json_escape(c) for c in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:  # as a UTF-16 surrogate pair, the way JSON spells it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def cells(text: str) -> int:
    """How many terminal cells *text* takes (for printable text)."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def fit(text: str, width: int) -> str:
    """*text* cut to at most *width* cells, ending in an ellipsis if it was cut."""
    if cells(text) <= width:
        return text
    ellipsis = "…" if can_encode("…") else "..."
    room = width - cells(ellipsis)
    out, used = [], 0
    for char in text:
        size = cells(char)
        if used + size > room:
            break
        out.append(char)
        used += size
    return "".join(out) + ellipsis
