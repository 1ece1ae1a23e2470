"""Which filesystem a store is on, so that shared mode can refuse a network one.

Shared stores rely on ``flock`` between the processes of one kernel
(``docs/SHARED.md``). On a network filesystem the lock may not reach the
other machines' processes, or may not work at all, so ``shared=True`` is
refused there, with an error that points to the PostgreSQL engine. The
filesystem type comes from ``/proc/self/mountinfo`` (Linux): the mount whose
mount point is the longest prefix of the store's real path.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import SettingsError

__all__ = ["NETWORK", "check_local", "filesystem_of"]

# Filesystem types on which flock does not reliably exclude processes of
# other machines (or at all). FUSE types are named "fuse.<name>".
NETWORK = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "afs",
        "gpfs",
        "beegfs",
        "ocfs2",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
        "fuse.cephfs",
    }
)


def filesystem_of(path: Path, mountinfo: str | None = None) -> str | None:
    """The filesystem type of the mount *path* is on; None where it cannot be told."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, found = -1, None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        point = _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # the later of two mounts on one point wins
            best, found = len(point), right.split()[0]
    return found


def check_local(path: Path, mountinfo: str | None = None) -> None:
    """Refuse a shared store on a network filesystem (``SettingsError``)."""
    kind = filesystem_of(path, mountinfo)
    if kind in NETWORK:
        raise SettingsError(
            f"{path} is on a {kind} filesystem: shared=True needs the file locks of one "
            "machine, which a network filesystem does not give every process. Put the "
            "store on a local disk; sharing one between machines needs the PostgreSQL "
            "engine, which is not released yet"
        )


def _unescape(field: str) -> str:
    """A mountinfo path field: spaces, tabs, newlines and backslashes are octal escapes."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
