"""How the ``tastypy`` command fails: exit statuses and one-line messages.

Every failure is one line on stderr, ``tastypy: error: ...``, never a
traceback. The exit statuses:

- 0: done;
- 1: ``verify`` found damage;
- 2: bad input: no such store, not a store, unknown key, malformed import
  file, bad options, or the store is open for writing elsewhere;
- 3: the operating system refused: read-only filesystem, disk full, no
  permission, I/O error. The store is left as it was before the command.
  (A path that does not exist, or is a file where a directory must be, is
  bad input: 2.)
- 130: interrupted (Ctrl-C); 141: the output was closed before the end
  (``| head``), as a shell reports SIGINT and SIGPIPE.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import IO, Any, TextIO

from ..errors import LockedError, TastypyError
from ._display import escaped

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "EXIT_OS",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "Fail",
    "StandardOutput",
    "locked_line",
    "os_error_line",
    "os_error_status",
    "os_errors_fail",
]

EXIT_PROBLEMS = 1  # verify found damage
EXIT_USAGE = 2  # bad input: no such store, unknown key, locked, ...
EXIT_OS = 3  # the OS refused: read-only, disk full, no permission, I/O error
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT (128 + 2)
EXIT_BROKEN_PIPE = 141  # the reader of the output went away, as a shell reports SIGPIPE

OUTPUT = "standard output"  # how messages name stdout

# A path that is not there, or not what it must be, is bad input (2), as in
# every other command; everything else the OS refuses is status 3.
_BAD_PATH = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP}

_FIXES = {
    errno.EROFS: "the filesystem is mounted read-only",
    errno.ENOSPC: "free some space and run it again",
    errno.EDQUOT: "free some space (disk quota) and run it again",
    errno.EACCES: "check the permissions (or run it as the store's owner)",
    errno.EPERM: "check the permissions (or run it as the store's owner)",
}


class Fail(Exception):
    """A user-facing error: printed on one line, exit status 2 (or *status*)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def os_error_line(
    exc: OSError, outcome: str = "", *, path: str | os.PathLike[str] | None = None
) -> str:
    """*exc* as one line: the path, the OS's words and name for it, *outcome*, a fix.

    The path is the one the OS named, else *path* (the store the command was
    working on).

    For example ``s.pod/lock: Read-only file system (EROFS); nothing was
    changed; the filesystem is mounted read-only``.
    """
    where = exc.filename if exc.filename is not None else path
    words = exc.strerror or str(exc)
    name = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    text = f"{os.fsdecode(where)}: {words}" if where is not None else words
    if name:
        text += f" ({name})"
    for part in (outcome, _FIXES.get(exc.errno or 0, "")):
        if part:
            text += f"; {part}"
    return escaped(text)


@contextlib.contextmanager
def os_errors_fail(outcome: str, path: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Turn an OSError in the block into :class:`Fail` (exit status 3) saying *outcome*.

    For writing commands: *outcome* tells what the failure left, e.g.
    ``"nothing was imported"``. The message names the file the OS named or,
    if it named none, *path*. Tastypy's own errors (``LockedError`` is an
    OSError too) pass through unchanged.
    """
    try:
        yield
    except TastypyError:
        raise
    except OSError as exc:
        raise Fail(os_error_line(exc, outcome, path=path), status=os_error_status(exc)) from None


def os_error_status(exc: OSError) -> int:
    """The exit status for *exc*: 2 for a path that is missing or wrong, else 3."""
    return EXIT_USAGE if exc.errno in _BAD_PATH else EXIT_OS


def locked_line(exc: LockedError, *, has_timeout: bool, waited: bool = False) -> str:
    """The library's "open for writing by ..." message, with the command line's advice.

    The library advises ``timeout=SECONDS``, a Python keyword; the command
    has ``--timeout SECONDS`` instead (on the commands that take it). After
    a ``--timeout`` that ran out (*waited*), the advice is a longer one.
    """
    text = str(exc)
    head, found, _ = text.partition("; close it there")
    if not found:
        return escaped(text)
    if waited:
        advice = "give a longer --timeout SECONDS"
    elif has_timeout:
        advice = "add --timeout SECONDS to wait for it"
    else:
        advice = "wait until it ends"
    return escaped(f"{head}; stop it there, or {advice}")


class StandardOutput:
    """``sys.stdout`` for the command: an error writing it names it, not the store.

    A full disk behind ``> file`` or a closed terminal is the output's
    fault; without a name, the command's one-line error would fall back to
    the store's path. A closed pipe stays a :class:`BrokenPipeError`.
    """

    def __init__(self, wrapped: TextIO) -> None:
        self.wrapped = wrapped

    def write(self, text: str) -> int:
        with _named_output():
            return self.wrapped.write(text)

    def flush(self) -> None:
        with _named_output():
            self.wrapped.flush()

    @property
    def buffer(self) -> _BinaryOutput:
        return _BinaryOutput(self.wrapped.buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


class _BinaryOutput:
    def __init__(self, wrapped: IO[bytes]) -> None:
        self.wrapped = wrapped

    def write(self, data: bytes) -> int:
        with _named_output():
            return self.wrapped.write(data)

    def flush(self) -> None:
        with _named_output():
            self.wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


@contextlib.contextmanager
def _named_output() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.filename is None:
            exc.filename = OUTPUT
        raise
