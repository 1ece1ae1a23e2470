"""Key normalization and value encoding.

Keys follow the rules of JSON object keys (what ``json.dumps`` does to dict
keys): ``str`` stays, ``int``/``float``/``bool``/``None`` become their JSON
text, anything else is a ``TypeError``.

Values are encoded with orjson. We are stricter than orjson where it would
lose data silently and keep the ``json`` module's conversions otherwise:

* non-``str`` dict keys at any depth are converted like top-level keys;
* ``NaN`` and infinities are refused (orjson would write ``null``; the
  ``json`` module would write non-standard ``NaN`` that other readers reject);
* integers outside the 64-bit range are refused (orjson and most other JSON
  readers would read them back as inexact floats);
* ``datetime``/``date``/``time`` and dataclass instances are refused, as the
  ``json`` module refuses them. (orjson does write ``uuid.UUID`` and ``enum``
  members as their values; we accept those.)
* dict keys that become the same JSON key (``1`` and ``"1"``) are refused,
  rather than one of them silently dropped;
* subclasses of ``dict``, ``list``, ``str``, ``int`` and ``float`` are written
  as the plain value they iterate or convert to: orjson would write an
  ``OrderedDict`` in the order of its underlying dict, not the order that
  ``move_to_end`` gave it. orjson hands subclasses back to us
  (``OPT_PASSTHROUGH_SUBCLASS``), so plain values pay nothing for this.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import math
import sys
import threading
from collections.abc import Iterator
from typing import Any

import orjson

__all__ = [
    "FAST_OPTIONS",
    "MAX_DEPTH",
    "check_new_key",
    "collector_paused",
    "decode_value",
    "encode_value",
    "has_non_finite",
    "is_record",
    "normalize_key",
]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector from running while a store's values are decoded.

    Decoding a million records allocates a million containers, and the
    collector would traverse the growing heap again and again (about a third
    of the time of opening a 1M-key store). Decoded JSON holds no cycles, so
    nothing is owed to the collector; it runs as usual afterwards. Left off
    if the program had turned it off itself. The collector is the process's:
    other threads run without it too, for as long as the load takes.
    """
    with _pauses_lock:
        if _pauses[0] == 0:
            _pauses[1] = gc.isenabled()
            gc.disable()
        _pauses[0] += 1
    try:
        yield
    finally:
        with _pauses_lock:
            _pauses[0] -= 1
            if _pauses[0] == 0 and _pauses[1]:
                gc.enable()


# Loads under way in this process, and whether the collector was on before
# the first of them: loads in several threads turn it back on once, at the end
# of the last. (A program that turns it off itself while a store loads, in
# another thread, finds it on again after the load.)
_pauses: list[Any] = [0, False]
_pauses_lock = threading.Lock()


_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
# For hot loops that call orjson themselves: output without "null" and no
# TypeError is exactly what encode_value(value, keep=False) returns.
FAST_OPTIONS = _OPTIONS
_KEY_TYPES = "str, int, float, bool or None"
# Lists and dicts inside each other that orjson writes; deeper is refused.
MAX_DEPTH = 254
_COMPACT_BELOW = 1024


def normalize_key(key: object) -> str:  # noqa: PLR0911  # one return per JSON key type
    """Return the JSON object key that *key* stands for.

    Raises
    ------
    TypeError
        If *key* is not a ``str``, ``int``, ``float``, ``bool`` or ``None``.
    """
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        try:
            return int.__repr__(key)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            raise TypeError(
                f"an int key with more than {sys.get_int_max_str_digits()} digits cannot "
                "become a JSON key; use a str key"
            ) from None
    if isinstance(key, float):
        if math.isnan(key):
            return "NaN"
        if key == math.inf:
            return "Infinity"
        if key == -math.inf:
            return "-Infinity"
        return float.__repr__(key)
    raise TypeError(f"keys must be {_KEY_TYPES}, not {type(key).__name__}: {key!r}")


def check_new_key(key: str) -> None:
    """Refuse a key that cannot be written as UTF-8 JSON (lone surrogates)."""
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise TypeError(f"key {key!r} is not valid Unicode text (lone surrogate)") from None


def encode_value(value: object, *, keep: bool = True, key: str | None = None) -> bytes:
    """Encode *value* as compact JSON bytes.

    *keep*: the result will be held for a while (not just written and
    dropped); small results are then copied to a right-sized object.
    *key*, if given, is named in the error message.

    Raises
    ------
    TypeError
        If *value* (or anything inside it) cannot be stored as JSON exactly.
    """
    try:
        data = orjson.dumps(value, option=_OPTIONS)
    except TypeError as first:
        if _TOO_DEEP in str(first):
            raise TypeError(_too_deep(key)) from None
        # Non-str dict keys and subclasses of builtins are the legitimate
        # reasons: convert them the way the json module would and try again.
        try:
            data = orjson.dumps(_plain(value), option=_OPTIONS)
        except RecursionError:  # deeper than Python's recursion limit, so than ours
            raise TypeError(_too_deep(key)) from None
        except TypeError as exc:
            if _TOO_DEEP in str(exc):
                raise TypeError(_too_deep(key)) from None
            raise TypeError(f"{_which(key)} is not JSON-serializable: {exc}") from None
    if b"null" in data and has_non_finite(value):
        raise TypeError(f"{_which(key)} contains NaN or infinity, which JSON cannot represent")
    if keep and len(data) < _COMPACT_BELOW:
        # orjson returns small results in a 1 KiB heap block; kept around (as
        # the POD keeps pending values) that wastes the rest of the block and
        # makes the heap grow ~1 KiB per value. A right-sized copy is cheaper.
        return bytes(memoryview(data))
    return data


_TOO_DEEP = "Recursion limit reached"  # orjson's message for a value nested too deep


def _too_deep(key: str | None) -> str:
    return (
        f"{_which(key)} is not JSON-serializable: it nests lists and dicts deeper than "
        f"{MAX_DEPTH} levels, the most the encoder allows"
    )


def _which(key: str | None) -> str:
    return "value" if key is None else f"the value of key {key!r}"


def is_record(value: object) -> bool:
    """Whether a decoded line is a ``["key", value]`` record."""
    return type(value) is list and len(value) == 2 and type(value[0]) is str


def decode_value(data: bytes | str) -> Any:
    """Decode JSON produced by :func:`encode_value`."""
    return orjson.loads(data)


def _plain(value: object) -> object:
    """Copy of *value* as plain JSON types: dict keys normalized, subclasses converted.

    Only containers are copied. Raises ``TypeError`` if two keys of one dict
    become the same JSON key.
    """
    kind = type(value)
    if isinstance(value, dict):
        plain = {_plain_key(k): _plain(v) for k, v in value.items()}  # iteration order
        if len(plain) != len(value):
            raise TypeError(_clash(value))
        return plain
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if kind not in _EXACT and not isinstance(value, enum.Enum):
        for base, convert in _BASE_VALUE:
            if isinstance(value, base):
                return convert(value)  # what orjson would write for the subclass
    return value


_EXACT = (str, int, float, bool)
# The base type's own conversion, ignoring a subclass's __str__ or __int__.
_BASE_VALUE: tuple[tuple[type, Any], ...] = (
    (str, str.__str__),
    (int, int.__int__),
    (float, float.__float__),
)


def _plain_key(key: object) -> str:
    name = normalize_key(key)
    return name if type(name) is str else str.__str__(name)


def _clash(value: dict[Any, Any]) -> str:
    seen: dict[str, object] = {}
    for key in value:
        name = _plain_key(key)
        if name in seen:
            return (
                f"dict keys {seen[name]!r} and {key!r} both become the JSON key {name!r}; "
                "tastypy refuses rather than drop one"
            )
        seen[name] = key
    return "dict keys collide"  # not reached: some key repeats


def has_non_finite(value: object) -> bool:
    """True if a NaN or infinite float hides anywhere in *value*."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, enum.Enum):
            stack.append(item.value)  # written as its value
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False
