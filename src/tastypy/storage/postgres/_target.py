"""What a ``postgresql://`` target names: the server, the database, the store; said safely.

Pure text work, no driver: the layers above can name a store in a message
without psycopg installed. A password, given in the URL's user part or as a
``password=`` parameter, never reaches a message: :func:`redact` leaves it
out, and :func:`scrub` takes it out of a driver's message too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import orjson

from ...errors import SettingsError

__all__ = [
    "NAME_RULE",
    "Target",
    "is_url",
    "named",
    "parse",
    "redact",
    "stored_key",
    "user_key",
]

SCHEMES = ("postgresql", "postgres")
NAME_RULE = (
    "1 to 63 characters: lowercase letters, digits and _ . - , starting with a letter or digit"
)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,62}")
# A key that PostgreSQL's text cannot hold (U+0000), or that begins with this
# mark, is stored as the mark followed by the key's JSON string.
KEY_MARK = "\ufffe"
_SECRET_PARAMS = frozenset({"password", "passfile", "sslpassword"})


def is_url(text: object) -> bool:
    """Whether *text* is a PostgreSQL URL (``postgresql://`` or ``postgres://``)."""
    if not isinstance(text, str):
        return False
    head, sep, _rest = text.partition("://")
    return bool(sep) and head.lower() in SCHEMES


@dataclass(frozen=True, repr=False)
class Target:
    """One store on one server: the URL to connect with, and what messages call it."""

    url: str  # as given, password included: only for the driver
    name: str
    server: str  # the URL without its password, for messages
    secrets: tuple[str, ...]  # what scrub() takes out of a message

    def __repr__(self) -> str:
        return f"Target({self.location!r})"  # never the password

    @property
    def location(self) -> str:
        """What messages call the store: the URL without its password, then ``#name``."""
        return f"{self.server}#{self.name}"

    def scrub(self, message: str) -> str:
        """*message* with every secret of the URL replaced by ``***``."""
        for secret in self.secrets:
            message = message.replace(secret, "***")
        return message


def _split(url: str) -> tuple[str, str, str, str]:
    """``(scheme, user, password, rest)`` of *url*, split as libpq splits a URI.

    libpq takes the credentials to end at the first ``@`` before any ``/``,
    so a password may hold ``?``, ``#`` or ``:`` unencoded (Python's
    ``urlsplit`` would cut it at the ``?`` or ``#``, and show the rest).
    """
    scheme, _sep, after = url.partition("://")
    slash = after.find("/")
    span = after if slash < 0 else after[:slash]
    at = span.find("@")
    if at < 0:
        return scheme, "", "", after
    user, _colon, password = after[:at].partition(":")
    return scheme, user, password, after[at + 1 :]


def redact(url: str) -> str:
    """*url* with its password (user part or parameter) left out, and no ``#name``."""
    scheme, user, _password, rest = _split(url)
    parts = urlsplit("//" + rest)
    query = "&".join(
        f"{quote(name, safe='')}={quote(value, safe='/:')}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name.lower() not in _SECRET_PARAMS
    )
    shown = f"{scheme}://{user + '@' if user else ''}{parts.netloc}{parts.path}"
    return f"{shown}?{query}" if query else shown


def _secrets(url: str) -> tuple[str, ...]:
    _scheme, _user, password, rest = _split(url)
    found = [password, unquote(password)]
    for name, value in parse_qsl(urlsplit("//" + rest).query, keep_blank_values=True):
        if name.lower() in _SECRET_PARAMS:
            found += [value, quote(value, safe="")]
    # The longest first, so that a secret holding another is replaced whole.
    return tuple(sorted({each for each in found if each}, key=len, reverse=True))


def check_name(name: object, server: str) -> str:
    """*name*, if it may name a store; else a clear error."""
    if name is None:
        raise SettingsError(f'{server}: give the store\'s name, as name="..." ({NAME_RULE})')
    if not isinstance(name, str):
        raise TypeError(f"a store's name must be a str, not {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise SettingsError(f"{server}: {name!r} cannot name a store ({NAME_RULE})")
    return name


def parse(url: str, name: object) -> Target:
    """The :class:`Target` for *url* and store *name*; a clear error if either is bad.

    The host list, ports and parameters are libpq's to check (it says what is
    wrong when it connects); a message never holds the URL's password.
    """
    if _split(url)[0].lower() not in SCHEMES:
        raise SettingsError(f"{redact(url)}: not a postgresql:// URL")
    bare, named = split_name(url)
    server = redact(bare)
    if named:  # "URL#name", as messages name a store: the same as name=
        if name is not None and name != named:
            raise SettingsError(
                f"{server}: the URL names the store {named!r} after #, and name= {name!r}; "
                "give one of them"
            )
        name = named
    return Target(url=bare, name=check_name(name, server), server=server, secrets=_secrets(bare))


def split_name(url: str) -> tuple[str, str]:
    """*url* without its ``#name``, and that name (empty if none)."""
    _before, hashed, fragment = _split(url)[3].partition("#")
    if not hashed:
        return url, ""
    return url[: -(len(fragment) + 1)], unquote(fragment)  # the fragment ends the URL


def named(url: str) -> bool:
    """Whether *url* names a store after ``#`` (after its credentials: a password may hold one)."""
    return bool(split_name(url)[1])


# A list of many keys as one query parameter: a JSON array of their stored
# forms (``key {KEY_LIST}`` with ``stored_keys(keys)``). orjson writes it
# in C; psycopg's array dumper escapes each element in Python (measured: 1.1 s
# of the 2.1 s two lookups of 200,000 keys took; the server's side is the same).
KEY_LIST = "= ANY(ARRAY(SELECT json_array_elements_text(%s::json)))"


def stored_keys(keys: list[str]) -> str:
    """*keys* as stored, as the JSON array :data:`KEY_LIST` takes."""
    return orjson.dumps([stored_key(key) for key in keys]).decode()


def stored_key(key: str) -> str:
    """How *key* is held in a ``text`` column (which cannot hold U+0000)."""
    if "\x00" in key or key.startswith(KEY_MARK):
        return KEY_MARK + orjson.dumps(key).decode()
    return key


def user_key(stored: str) -> str:
    """The key that :func:`stored_key` made *stored* from (ValueError if none did)."""
    if not stored.startswith(KEY_MARK):
        return stored
    key = orjson.loads(stored[1:])  # a JSONDecodeError is a ValueError
    if not isinstance(key, str):
        raise ValueError(f"{stored!r} is marked as a JSON string but holds {key!r}")
    return key
