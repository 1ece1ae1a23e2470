"""A tracker's progress: how many tasks are done, tried, aborted or exhausted.

:class:`Progress` is a mixin of :class:`~._tracker.ProgressTracker`: the
counts come from its :class:`~._counts.TaskCounts`, kept in step with the
records, so each query costs what was touched since the last one, not a pass
over every task.
"""

from __future__ import annotations

import threading
from typing import Any

from ._counts import ABORTED, DONE, EXHAUSTED, TRIED, TaskCounts

__all__ = ["Progress"]


class Progress:
    """Counts, fractions and percentages of task states (a tracker's mixin)."""

    _lock: threading.RLock
    _tally: TaskCounts
    _data: dict[str, Any]

    def _count(self, bit: int) -> int:
        with self._lock:
            return self._tally.count(bit, self._data)

    def num_done(self) -> int:
        return self._count(DONE)

    def num_tried(self) -> int:
        return self._count(TRIED)

    def num_aborted(self) -> int:
        return self._count(ABORTED)

    def num_exhausted(self) -> int:
        """Tasks not done that were tried ``max_tries`` times."""
        return self._count(EXHAUSTED)

    def _fraction(self, count: int) -> float:
        return count / len(self._data) if self._data else 0.0

    def fraction_done(self) -> float:
        return self._fraction(self.num_done())

    def fraction_tried(self) -> float:
        return self._fraction(self.num_tried())

    def fraction_aborted(self) -> float:
        return self._fraction(self.num_aborted())

    @staticmethod
    def percent(fraction: float, decimals: int = 2) -> str:
        """Format a fraction: ``percent(0.347) == '34.70 %'``."""
        return f"{fraction * 100:.{decimals}f} %"

    def percent_done(self, decimals: int = 2) -> str:
        # Kept short: meant to be called on every iteration of a job's loop.
        with self._lock:
            data, tally = self._data, self._tally
            if tally.unchecked or tally.served:  # served on demand: a query each time
                tally.refresh(data)
            n = len(data)
            fraction = tally.counts[DONE] / n if n else 0.0
        return "%.*f %%" % (decimals, fraction * 100)  # noqa: UP031  # faster than f"{:.{}f}"

    def percent_not_done(self, decimals: int = 2) -> str:
        return self.percent(1.0 - self.fraction_done() if self else 0.0, decimals)

    def percent_tried(self, decimals: int = 2) -> str:
        return self.percent(self.fraction_tried(), decimals)

    def percent_not_tried(self, decimals: int = 2) -> str:
        return self.percent(1.0 - self.fraction_tried() if self else 0.0, decimals)

    def percent_aborted(self, decimals: int = 2) -> str:
        return self.percent(self.fraction_aborted(), decimals)
