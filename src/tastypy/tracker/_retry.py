"""Delays between tries: when a failed task may be tried again.

A tracker may have a retry policy, stored with it like ``max_tries``:
``retry_delay`` (the most seconds before the first retry), ``backoff`` (the
factor per further try) and ``max_retry_delay`` (a cap). After a failed try
the wait is drawn at random between 0 and ``min(max_retry_delay,
retry_delay * backoff ** (tries - 1))`` — "full jitter", as tenacity's
``wait_random_exponential``: workers that failed together do not come back
together.

The earliest next try goes into the task's record as ``_retry_at``, in Unix
seconds (``time.time()``) of the clock of the machine that recorded the
failure. :meth:`ProgressTracker.try_it`, ``should_do`` and ``todo_keys``
leave a task alone until then.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["RETRY_AT", "RETRY_SETTINGS", "RetryPolicy", "due_at", "waiting"]

RETRY_AT = "_retry_at"  # the record's field: the earliest next try, Unix seconds
RETRY_SETTINGS = ("retry_delay", "backoff", "max_retry_delay")  # their names in the meta
DEFAULT_BACKOFF = 2.0
_LONGEST = 1e9  # seconds (about 31 years): no wait is longer


def due_at(record: Any) -> float | None:
    """When the task may be tried again, if its record says (a number); else None."""
    if not isinstance(record, dict):
        return None
    at = record.get(RETRY_AT)
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        return None  # absent, or not a usable time (a hand edit): no wait
    return float(at)


def waiting(record: Any, now: float | None = None) -> bool:
    """Whether the task's next try is not due yet."""
    at = due_at(record)
    return at is not None and at > (time.time() if now is None else now)


def _seconds(name: str, value: object, *, least: float, inclusive: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < least
        or (not inclusive and value == least)
    ):
        bound = f">= {least:g}" if inclusive else f"> {least:g}"
        raise ValueError(f"{name} must be a number {bound}, or None, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """How long a failed task waits before its next try (``delay`` None: no wait)."""

    delay: float | None = None
    backoff: float = DEFAULT_BACKOFF
    most: float | None = None

    @classmethod
    def checked(
        cls, delay: object, backoff: object, most: object, base: RetryPolicy | None = None
    ) -> RetryPolicy:
        """A policy from the arguments given (None: as in *base*); ValueError if bad."""
        base = base or cls()
        return cls(
            base.delay
            if delay is None
            else _seconds("retry_delay", delay, least=0, inclusive=True),
            base.backoff
            if backoff is None
            else _seconds("backoff", backoff, least=1, inclusive=True),
            base.most
            if most is None
            else _seconds("max_retry_delay", most, least=0, inclusive=False),
        )

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> RetryPolicy:
        """The policy a store's meta holds; ValueError naming the setting if it is bad."""
        return cls.checked(*(meta.get(name) for name in RETRY_SETTINGS))

    def meta(self) -> dict[str, Any]:
        """The settings as the store's meta holds them."""
        return dict(zip(RETRY_SETTINGS, (self.delay, self.backoff, self.most), strict=True))

    def wait(self, tries: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait after the *tries* th try failed (None: no policy)."""
        if self.delay is None:
            return None
        try:
            cap = self.delay * self.backoff ** max(0, tries - 1)
        except OverflowError:
            cap = _LONGEST
        cap = min(cap, _LONGEST if self.most is None else self.most)
        return (rng or random).uniform(0, cap)
