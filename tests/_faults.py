"""Fault injection through the OS: make the n-th call of ``os.<name>`` fail."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Injector:
    """Make the n-th call of ``os.<name>`` fail; count the calls."""

    def __init__(self, name: str, fail_at: int) -> None:
        self.name = name
        self.fail_at = fail_at
        self.calls = 0
        self.real: Callable[..., Any] = getattr(os, name)

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            code = errno.ENOSPC if "write" in self.name else errno.EIO
            if self.name in ("write", "pwrite"):  # the disk filled up halfway through
                fd, data, *offset = args
                self.real(fd, memoryview(data)[: len(data) // 2], *offset)
            raise OSError(code, f"{os.strerror(code)} (injected into os.{self.name})")
        return self.real(*args)


@contextmanager
def failing(name: str, fail_at: int) -> Iterator[Injector]:
    injector = Injector(name, fail_at)
    setattr(os, name, injector)
    try:
        yield injector
    finally:
        setattr(os, name, injector.real)
