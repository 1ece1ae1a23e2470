"""Shared mode refuses a store on a network filesystem: flock there may not exclude everyone."""

from __future__ import annotations

from pathlib import Path

import pytest

import tastypy
from tastypy.errors import SettingsError
from tastypy.storage.files._mounts import check_local, filesystem_of

MOUNTS = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 259:1 / / rw,relatime - ext4 /dev/vda1 rw
40 27 0:45 / /mnt/share rw,relatime - nfs4 server:/export rw,vers=4.2
41 40 0:46 / /mnt/share/local rw,relatime - tmpfs tmpfs rw
42 27 0:47 / /mnt/my\\040files rw,relatime - fuse.sshfs me@host:/ rw
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/home/me/store", "ext4"),
        ("/mnt/share/jobs/store", "nfs4"),
        ("/mnt/share", "nfs4"),
        ("/mnt/share/local/store", "tmpfs"),  # a local mount inside a network one
        ("/mnt/sharespace/store", "ext4"),  # a prefix of the name is not the mount
        ("/mnt/my files/store", "fuse.sshfs"),  # mountinfo escapes the space
    ],
)
def test_the_filesystem_is_that_of_the_innermost_mount(path: str, kind: str) -> None:
    assert filesystem_of(Path(path), MOUNTS) == kind


def test_shared_mode_is_refused_on_a_network_filesystem_with_the_way_out() -> None:
    with pytest.raises(SettingsError, match=r"nfs4 filesystem.*PostgreSQL"):
        check_local(Path("/mnt/share/jobs/store"), MOUNTS)
    check_local(Path("/mnt/share/local/store"), MOUNTS)
    check_local(Path("/home/me/store"), MOUNTS)


def test_a_local_store_opens_shared_and_unreadable_mounts_refuse_nothing(tmp_path: Path) -> None:
    assert filesystem_of(tmp_path) is not None
    with tastypy.POD(tmp_path / "s", shared=True) as pod:
        pod["k"] = 1
    assert filesystem_of(tmp_path, "garbage\nnot a mountinfo line - \n") is None
    check_local(tmp_path, "")
