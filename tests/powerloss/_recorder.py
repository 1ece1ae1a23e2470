"""Record every OS call the file engine makes through ``tastypy.storage.files._fs``.

:class:`Recorder` replaces the seam's functions (``monkeypatch``); each one
calls the real OS function and notes what it did to the disk as an
:class:`~_model.Op`, with paths relative to a root directory and files
identified by inode (so a rename moves data and a write follows its
descriptor). Reads, ``flock`` and ``fstat`` are passed through unrecorded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from _model import DIR, Disk, Op

from tastypy.storage.files import _fs

RECORDED = (
    "open_fd",
    "close",
    "write",
    "pwrite",
    "ftruncate",
    "fsync",
    "fdatasync",
    "replace",
    "unlink",
    "mkdir",
    "rmdir",
)


class Recorder:
    """Forward the seam's calls to the OS and record them, for paths under *root*."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.ops: list[Op] = []
        self._next_ino = 1
        self._real: dict[str, Any] = {name: getattr(_fs, name) for name in RECORDED}
        # fd -> (path, inode or DIR, opened with O_APPEND)
        self._fds: dict[int, tuple[str, int, bool]] = {}
        self.namespace: dict[str, int] = {}  # the live namespace: path -> inode or DIR
        self.data: dict[int, bytes] = {}
        for path, content in sorted(snapshot(self.root).items()):
            if content is None:
                self.namespace[path] = DIR
            else:
                self.namespace[path] = self._new_ino()
                self.data[self.namespace[path]] = content
        self.initial_namespace = dict(self.namespace)
        self.initial_data = dict(self.data)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in RECORDED:
            monkeypatch.setattr(_fs, name, getattr(self, name))

    def _new_ino(self) -> int:
        self._next_ino += 1
        return self._next_ino

    def rel(self, path: os.PathLike[str] | str) -> str:
        absolute = Path(os.path.abspath(path))
        if absolute != self.root and self.root not in absolute.parents:
            raise AssertionError(f"the engine touched {absolute}, outside {self.root}")
        return "" if absolute == self.root else str(absolute.relative_to(self.root))

    # -- the seam ------------------------------------------------------------

    def open_fd(self, path: Path, flags: int, mode: int = 0o644) -> int:
        rel = self.rel(path)
        existed = os.path.lexists(path)
        fd: int = self._real["open_fd"](path, flags, mode)
        if os.path.isdir(path):
            self._fds[fd] = (rel, DIR, False)
            return fd
        if not existed:
            ino = self.namespace[rel] = self._new_ino()
            self.ops.append(Op("create", rel, ino=ino))
        else:
            ino = self.namespace[rel]  # KeyError: created behind the seam's back
            if flags & os.O_TRUNC:
                self.ops.append(Op("truncate", rel, ino=ino, length=0))
        self._fds[fd] = (rel, ino, bool(flags & os.O_APPEND))
        return fd

    def close(self, fd: int) -> None:
        self._real["close"](fd)
        rel, ino, _ = self._fds.pop(fd)
        self.ops.append(Op("close", rel, ino=ino))

    def write(self, fd: int, data: bytes | memoryview) -> int:
        rel, ino, append = self._fds[fd]
        offset = os.fstat(fd).st_size if append else os.lseek(fd, 0, os.SEEK_CUR)
        written: int = self._real["write"](fd, data)
        self.ops.append(Op("write", rel, ino=ino, offset=offset, data=bytes(data[:written])))
        return written

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        rel, ino, _ = self._fds[fd]
        written: int = self._real["pwrite"](fd, data, offset)
        self.ops.append(Op("write", rel, ino=ino, offset=offset, data=bytes(data[:written])))
        return written

    def ftruncate(self, fd: int, length: int) -> None:
        rel, ino, _ = self._fds[fd]
        self._real["ftruncate"](fd, length)
        self.ops.append(Op("truncate", rel, ino=ino, length=length))

    def fsync(self, fd: int) -> None:
        self._real["fsync"](fd)
        self._synced(fd)

    def fdatasync(self, fd: int) -> None:
        self._real["fdatasync"](fd)
        self._synced(fd)

    def _synced(self, fd: int) -> None:
        rel, ino, _ = self._fds[fd]
        self.ops.append(Op("dirsync", rel) if ino == DIR else Op("fsync", rel, ino=ino))

    def replace(self, src: Path, dst: Path) -> None:
        self._real["replace"](src, dst)
        old, new = self.rel(src), self.rel(dst)
        ino = self.namespace.pop(old)
        self.namespace[new] = ino
        self.ops.append(Op("rename", old, dst=new, ino=ino))

    def unlink(self, path: Path) -> None:
        self._real["unlink"](path)
        rel = self.rel(path)
        self.ops.append(Op("unlink", rel, ino=self.namespace.pop(rel)))

    def mkdir(self, path: Path) -> None:
        self._real["mkdir"](path)
        rel = self.rel(path)
        self.namespace[rel] = DIR
        self.ops.append(Op("mkdir", rel))

    def rmdir(self, path: Path) -> None:
        self._real["rmdir"](path)
        rel = self.rel(path)
        del self.namespace[rel]
        self.ops.append(Op("rmdir", rel))


def snapshot(root: Path) -> Disk:
    """What is under *root* now: relative path -> bytes, or None for a directory."""
    disk: Disk = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            disk[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            full = os.path.join(dirpath, name)
            disk[os.path.relpath(full, root)] = Path(full).read_bytes()
    return disk
