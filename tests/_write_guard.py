"""A stand-in for the I/O seam that notes every path the engine changes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tastypy import POD
from tastypy.storage.files import _fs

__all__ = ["WriteGuard", "open_write_compact"]


class WriteGuard:
    """Forward the seam's writing calls, noting every path they change."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.specials: list[str] = []
        self._fds: dict[int, str] = {}
        self._real = {n: getattr(_fs, n) for n in ("open_fd", "replace", "unlink", "mkdir")}
        self._real.update({n: getattr(_fs, n) for n in ("rmdir", "write", "pwrite", "ftruncate")})

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in self._real:
            monkeypatch.setattr(_fs, name, getattr(self, name))

    def _note(self, path: object) -> None:
        self.paths.append(os.path.realpath(os.fspath(path)))  # type: ignore[arg-type]

    def _note_entry(self, path: Path) -> None:
        """A directory entry changed: the link itself, not what it points to."""
        self.paths.append(os.path.join(os.path.realpath(Path(path).parent), Path(path).name))

    def open_fd(self, path: Path, flags: int, mode: int = 0o644) -> int:
        fd = self._real["open_fd"](path, flags, mode)
        self._fds[fd] = os.fspath(path)
        kind = os.fstat(fd).st_mode
        if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):  # a FIFO, a device: never opened
            self.specials.append(os.fspath(path))
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC):
            self._note(path)
        return fd

    def replace(self, src: Path, dst: Path) -> None:
        self._note_entry(src)
        self._note_entry(dst)
        self._real["replace"](src, dst)

    def unlink(self, path: Path) -> None:
        self._note_entry(path)
        self._real["unlink"](path)

    def mkdir(self, path: Path) -> None:
        self._note(path)
        self._real["mkdir"](path)

    def rmdir(self, path: Path) -> None:
        self._note_entry(path)
        self._real["rmdir"](path)

    def write(self, fd: int, data: bytes) -> int:
        self._note(self._fds.get(fd, "?"))
        return self._real["write"](fd, data)  # type: ignore[no-any-return]

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self._note(self._fds.get(fd, "?"))
        return self._real["pwrite"](fd, data, offset)  # type: ignore[no-any-return]

    def ftruncate(self, fd: int, length: int) -> None:
        self._note(self._fds.get(fd, "?"))
        self._real["ftruncate"](fd, length)


def open_write_compact(path: Path, cls: type[POD] = POD) -> None:
    """Open *path* for writing, commit one change, and compact."""
    with cls(path) as pod:
        pod["new"] = {"i": 1}  # a task record, so a tracker takes it too
        pod.compact()
