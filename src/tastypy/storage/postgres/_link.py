"""The engine's connection to the server: made on first use, made again when lost.

A connection that drops (the server restarted, the network blinked) is made
again, for up to :data:`RECONNECT_SECONDS`, and the work that failed is
done again from its start: each piece of work is one transaction that
rereads what it depends on, so doing it again is safe whether or not the
lost attempt committed (the engine's commits set values; they never add to
them). Inside :meth:`Link.pinned` (a ``locked()`` block, whose session lock
dies with the connection) a drop is an error instead.

Errors name the server without its password (``_target.Target.scrub``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.adapt import Loader

from ...errors import ConnectionFailedError
from ._target import Target

__all__ = ["RECONNECT_SECONDS", "Link", "RawJson"]

RECONNECT_SECONDS = 60.0
CONNECT_TIMEOUT = 10  # seconds for one attempt, as libpq's connect_timeout
T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]
# Connections made before a fork, kept from the garbage collector in the
# child: closing one there would end the parent's session on the shared socket.
_inherited: list[Connection] = []


class RawJson(Loader):
    """Hands a ``json`` column over as the bytes the server holds (no parse, no copy to str)."""

    def load(self, data: Any) -> bytes:
        return bytes(data)


def _detail(exc: BaseException) -> str:
    """The driver's message, on one line, without its prefix."""
    text = " ".join(str(exc).split())
    return text.removeprefix("connection failed: ")


class Link:
    """One connection to *target*'s server, kept alive for an open of a store."""

    def __init__(self, target: Target, *, reconnect_for: float = RECONNECT_SECONDS) -> None:
        self.target = target
        self.reconnect_for = reconnect_for
        self._conn: Connection | None = None
        self._pid = os.getpid()
        self._pins = 0

    def _failed(self, exc: BaseException, what: str) -> ConnectionFailedError:
        detail = self.target.scrub(_detail(exc))
        if "authentication failed" in detail or "no password supplied" in detail:
            return ConnectionFailedError(
                f"{self.target.location}: the server refused the login ({detail}); "
                "check the user and password in the URL"
            )
        return ConnectionFailedError(f"{self.target.location}: {what} ({detail})")

    def connect(self) -> Connection:
        """The connection, made now if there is none; :class:`ConnectionFailedError` if not."""
        if self._pid != os.getpid():  # a forked child: never use nor close the parent's
            if self._conn is not None:
                _inherited.append(self._conn)
            self._conn, self._pid = None, os.getpid()
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        # Errors are raised outside the except clauses, here and in run(), so
        # that the driver's exception (its text may hold the password) is not
        # kept as their __context__.
        failure = None
        conn = None
        try:
            conn = psycopg.connect(
                self.target.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                application_name="tastypy",
                client_encoding="UTF8",  # what the engine sends (COPY's bytes too)
            )
        except psycopg.Error as exc:
            failure = self._failed(exc, "cannot connect to the server")
        if failure is not None or conn is None:
            raise failure or ConnectionFailedError(self.target.location)
        # Values are json: the engine hands on the text it wrote, never a parse.
        conn.adapters.register_loader("json", RawJson)
        self._conn = conn
        return conn

    def _reconnect(self, lost: BaseException) -> None:
        """Make the connection again, trying for :attr:`reconnect_for` seconds."""
        self._drop()
        deadline = time.monotonic() + self.reconnect_for
        pause = 0.05
        while True:
            try:
                self.connect()
                return
            except ConnectionFailedError as exc:
                if "refused the login" in str(exc) or time.monotonic() + pause > deadline:
                    raise self._failed(
                        lost,
                        f"lost the connection to the server and could not make it again "
                        f"within {self.reconnect_for:g} s",
                    ) from None
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def run(self, work: Callable[[Connection], T], *, again: bool = True) -> T:
        """``work(connection)``, done again on a new connection if this one is lost.

        *work* must be safe to do twice (one transaction that rereads what
        it needs). With *again* false, or inside :meth:`pinned`, a lost
        connection raises :class:`ConnectionFailedError` instead.
        """
        while True:
            conn = self.connect()
            lost: psycopg.OperationalError | None = None
            refused: OSError | None = None
            try:
                return work(conn)
            except psycopg.OperationalError as exc:
                lost = exc
            except psycopg.Error as exc:  # the server refused it: a bad value, a trigger
                detail = self.target.scrub(_detail(exc))
                refused = OSError(f"{self.target.location}: the server refused ({detail})")
            if refused is not None:
                raise refused
            assert lost is not None
            if not conn.broken and not conn.closed:
                raise self._failed(lost, "the server failed the request")
            if self._pins:
                self._drop()
                raise self._failed(
                    lost,
                    "lost the connection inside a locked() block, and the store's lock "
                    "with it; the block committed nothing",
                )
            if not again:
                self._drop()
                raise self._failed(lost, "lost the connection to the server")
            self._reconnect(lost)

    @contextmanager
    def pinned(self) -> Iterator[Connection]:
        """The connection, which must not be lost within the block (a session lock lives in it)."""
        conn = self.connect()
        self._pins += 1
        try:
            yield conn
        finally:
            self._pins -= 1

    def close(self) -> None:
        """Close the connection (in a forked child, leave the parent's alone). Idempotent."""
        if self._pid != os.getpid():
            if self._conn is not None:
                _inherited.append(self._conn)
            self._conn = None
            return
        self._drop()
