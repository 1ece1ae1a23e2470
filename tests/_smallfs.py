"""A real, small filesystem for full-disk and read-only tests.

``small_filesystem(size)`` mounts a private tmpfs of *size* bytes under a
temporary directory and yields its path; ``fill(path)`` then uses up every
free byte, so the next write fails with ``ENOSPC`` from the kernel, not from
an injected fault. Mounting needs root (and a kernel that lets this process
mount); elsewhere the fixture skips with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_filesystem(size: int = 4 << 20) -> Iterator[Path]:
    """Mount a tmpfs of *size* bytes; yield its root; unmount afterwards."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    where = Path(tempfile.mkdtemp(prefix="tastypy-smallfs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        with contextlib.suppress(OSError):
            where.rmdir()


def fill(root: Path) -> Path:
    """Use up every free byte of the filesystem at *root*; return the filler file.

    Deleting the filler frees the space again.
    """
    filler = root / "filler.bin"
    block = b"\0" * (64 << 10)
    with open(filler, "ab", buffering=0) as out:
        for size in (len(block), 4096, 1):
            while True:
                try:
                    out.write(block[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return filler


def remount_readonly(root: Path) -> None:
    """Make the filesystem at *root* read-only (EROFS on every write)."""
    subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
