"""The heartbeat: a thread that renews an open's leases while its process lives.

Every third of the lease it extends, in server time, the lease of every
claim the open holds (one statement on a connection of its own). A process
that is killed, paused or cut off from the server stops renewing, and its
claims run out one lease after the last renewal. A renewal that fails (the
server restarting) is tried again at the next beat; the connection is made
again as the engine's is.
"""

from __future__ import annotations

import logging
import threading

import psycopg

from ...errors import ConnectionFailedError
from ._link import Connection, Link
from ._schema import q
from ._target import Target

__all__ = ["Heartbeat"]

log = logging.getLogger("tastypy")

_RENEW = q(
    "UPDATE {s}.claims SET expires = now() + make_interval(secs => %s) "
    "WHERE store = %s AND holder = %s"
)


class Heartbeat:
    """Renews the leases of *holder*'s claims in store *store* every ``lease / 3`` seconds."""

    def __init__(self, target: Target, store: int, holder: str, lease: float) -> None:
        self.lease = lease
        self._store = store
        self._holder = holder
        # Reconnecting may take at most a beat: a later beat tries again.
        self._link = Link(target, reconnect_for=lease / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"tastypy heartbeat {target.location}", daemon=True
        )
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _renew(self, conn: Connection) -> None:
        conn.execute(_RENEW, (self.lease, self._store, self._holder))

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.lease / 3):
                try:
                    self._link.run(self._renew)
                except (ConnectionFailedError, OSError, psycopg.Error) as exc:
                    log.warning("tastypy: could not renew leases (%s); trying again", exc)
        finally:
            self._link.close()

    def stop(self) -> None:
        """End the thread (the claims it renewed run out one lease later, unless released)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
