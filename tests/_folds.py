"""Where a plain writer's background compaction runs, for tests that need to know.

In a real thread (the default) a fold runs while the writer goes on, and
its OS calls land among the writer's at no fixed place. Tests that count or
record OS calls make it run in the writer's own thread instead:

* :func:`fold_in_line`: at once, inside the sync that found it due (the
  generation is installed before that sync returns);
* :func:`fold_later`: at the writer's next look at it (its next commit,
  ``compact()``, ``close()``), so that the commits in between are copied
  into the new journal, as commits made during a fold in a thread are.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tastypy.storage.files import _background
from tastypy.storage.files._background import BackgroundFold


def fold_in_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BackgroundFold, "start", BackgroundFold._run)
    _remove_in_line(monkeypatch)
    fold_in_this_process(monkeypatch)


def fold_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never in a child interpreter: the test patches or records what the fold does."""
    monkeypatch.setattr(_background, "IN_A_PROCESS", False)


def _remove_in_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The old generation's files are deleted in the writer's thread too."""

    def remove(paths: list[Path]) -> threading.Thread:
        _background._remove(paths)
        thread = threading.Thread(target=lambda: None)
        thread.start()
        return thread

    monkeypatch.setattr(BackgroundFold, "remove", staticmethod(remove))


def fold_later(
    monkeypatch: pytest.MonkeyPatch, *, left_to_install: int | None = None
) -> list[tuple[int, int]]:
    """Fold at the second look (the first is in the sync that starts it).

    *left_to_install*: the fold's own copying of the commits made meanwhile
    stops with this many bytes left (0: it copies them all). Returns a list
    that gets, for each generation a fold hands over to be installed, how
    many commits made meanwhile the fold copied, and how many in all.
    """
    looks: dict[int, int] = {}
    handed: list[tuple[int, int]] = []
    real_finish = BackgroundFold.finish

    def finish(self: BackgroundFold) -> object:
        by_fold = self.commits
        new = real_finish(self)
        if new is not None:
            handed.append((by_fold, self.commits))
        return new

    def done(self: BackgroundFold) -> bool:
        if not self._done.is_set():
            looks[id(self)] = looks.get(id(self), 0) + 1
            if looks[id(self)] < 2:
                return False
            self._run()
        return True

    def wait(self: BackgroundFold) -> None:
        if not self._done.is_set():
            self._run()

    monkeypatch.setattr(BackgroundFold, "start", lambda self: None)
    monkeypatch.setattr(BackgroundFold, "done", done)
    monkeypatch.setattr(BackgroundFold, "wait", wait)
    monkeypatch.setattr(BackgroundFold, "finish", finish)
    _remove_in_line(monkeypatch)
    fold_in_this_process(monkeypatch)
    if left_to_install is not None:
        monkeypatch.setattr(_background, "_LEFT_TO_INSTALL", left_to_install)
    return handed
