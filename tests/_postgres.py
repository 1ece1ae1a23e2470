"""A real PostgreSQL server for the tests: initdb into a temporary directory, start, stop.

The test command starts one per session (``conftest.py``'s ``pg_server``)
from the binaries of the machine's PostgreSQL (``/usr/lib/postgresql/*/bin``
or ``PATH``). As root it runs them as the ``postgres`` user, since
``initdb`` refuses root. The server listens on 127.0.0.1 at a free port and
on a Unix socket in its own directory, asks for a password over TCP
(scram-sha-256) and trusts the socket.

It runs with ``fsync=off``: the tests restart it cleanly and kill its
clients, never the machine, so what PostgreSQL has accepted survives all the
same, and the suite runs faster. PostgreSQL's own durability is not what
these tests test.

Set ``TASTYPY_TEST_PG_BIN`` to the directory of another PostgreSQL's
binaries.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PASSWORD = "tastypy-s3cret-pw"
USER = "postgres"
# Keys and values that COPY's text format must escape, and keys the engine
# stores marked (a NUL; its own mark at the start).
AWKWARD_KEYS = ["tab\there", "new\nline", "cr\rhere", "back\\slash", "nul\x00key", "\ufffeмark"]
AWKWARD_VALUE = {"z": "a\\b\tc\nd\re", "a": ["\\", {"y": "\u2028", "x": "\x00"}]}


def find_bin() -> Path | None:
    """The directory of ``pg_ctl`` and ``initdb``, or None if there is no PostgreSQL here."""
    given = os.environ.get("TASTYPY_TEST_PG_BIN")
    if given:
        return Path(given)
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(found) / "initdb").exists():
            return Path(found)
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One PostgreSQL server in a temporary directory, for the length of a test session."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="tastypy-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as postgres
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        pwfile.unlink()
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    @property
    def options(self) -> str:
        return (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o",
            self.options, "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (*mode*: ``smart``, ``fast`` or ``immediate``)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop the server (its clients' connections drop) and start it again."""
        self.stop()
        self.start()

    def url(self, database: str = "postgres", *, password: str | None = PASSWORD) -> str:
        """A URL that reaches *database* over TCP, with *password* (None: none)."""
        auth = USER if password is None else f"{USER}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = "postgres") -> str:
        """A URL that reaches *database* over the Unix socket (no password asked)."""
        return f"postgresql://{USER}@/{database}?host={self.root}&port={self.port}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run *sql* as the superuser; what psql printed (unaligned, tuples only)."""
        done = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.root), "-p", str(self.port), "-U", USER, "-d", database,
             "-c", sql],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return done.stdout

    def close(self) -> None:
        """Stop the server for good and remove its directory."""
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
