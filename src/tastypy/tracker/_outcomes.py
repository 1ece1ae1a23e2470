"""What a run's attempts came to, written into the tracker (by the run's thread only).

A success stores the result and marks the task done; a failure is
recorded in ``_errors`` (the last :data:`ERRORS_KEPT`), aborts the task if
``retry_on``/``giveup_on`` say so, or sets when it may be tried again
(``_retry_at``, with a retry policy). Each is logged to disk at once
(``_log_outcome``), and counted in the run's :class:`RunSummary`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._codec import decode_value
from ._attempt import Failure, Rules, Success
from ._retry import RETRY_AT

if TYPE_CHECKING:
    from ._tracker import ProgressTracker

__all__ = ["ERRORS_KEPT", "Outcomes", "RunSummary"]

log = logging.getLogger("tastypy.tracker.run")  # quiet unless configured (see __init__)

ERRORS_KEPT = 5  # failed attempts remembered per task


@dataclass
class RunSummary:
    """What one :meth:`ProgressTracker.run` did.

    Attributes
    ----------
    done
        Tasks that succeeded in this run.
    failed
        Attempts that failed in this run (raised, exited, killed their worker).
    skipped
        Tasks not tried because they were already done or aborted.
    exhausted
        Tasks given up on: tried ``max_tries`` times and not done.
    timed_out
        Attempts that ran over the run's ``timeout`` (among ``failed``).
    gave_up
        Tasks aborted at their failure by ``retry_on`` or ``giveup_on``.
    waiting
        Tasks of the run left waiting for a retry that is not due yet.
    interrupted
        Whether Ctrl-C or SIGTERM stopped the run early.
    """

    done: int = 0
    failed: int = 0
    skipped: int = 0
    exhausted: int = 0
    timed_out: int = 0
    gave_up: int = 0
    waiting: int = 0
    interrupted: bool = False


class Outcomes:
    """One run's bookkeeping: results and failures go into the tracker."""

    def __init__(
        self, tracker: ProgressTracker, summary: RunSummary, bar: Any, rules: Rules
    ) -> None:
        self.rules = rules
        self.waiting: set[str] = set()  # failed in this run, a retry to come (the bar)
        self.left_threads: set[Any] = set()  # threads left past their time limit (all passes)
        self.tracker = tracker
        self.summary = summary
        self.bar = bar

    def give_back(self, key: str) -> None:
        """Uncount the try of a task stopped before its attempt came to anything."""
        if self.tracker._shared:
            self.tracker._unclaim([key])
        else:
            self.tracker.decrement_tries(key)

    def record(self, key: str, outcome: Success | Failure) -> None:
        """Record what an attempt in a worker process came to."""
        if isinstance(outcome, Success):
            self.succeeded(key, decode_value(outcome.data), outcome.seconds)
        else:
            self.failed(key, outcome)

    def succeeded(self, key: str, result: Any, seconds: float) -> None:
        record = self.tracker[key]
        record["result"] = result
        record["_seconds"] = round(seconds, 6)
        record["_done"] = True
        record.pop(RETRY_AT, None)
        if key in self.waiting:
            self.waiting.discard(key)
            if self.bar is not None:
                self._show()
        self.tracker._log_outcome(key)
        self.summary.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def _show(self) -> None:
        """The bar's counts beside done: failed tries, and tasks waiting for a retry."""
        waiting = f", {len(self.waiting)} waiting" if self.waiting else ""
        self.bar.set_postfix_str(f"{self.summary.failed} failed{waiting}", refresh=False)

    def failed(self, key: str, failure: Failure) -> None:
        self.waiting.discard(key)
        self.summary.failed += 1
        self.summary.timed_out += failure.timed_out
        record = self.tracker[key]
        errors = record.get("_errors")
        errors = list(errors) if isinstance(errors, list) else []
        errors.append(
            {
                "type": failure.type,
                "message": failure.message,
                "traceback": failure.traceback,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        record["_errors"] = errors[-ERRORS_KEPT:]
        tries, limit = record.get("_tries", 0), self.tracker.max_tries
        tries = tries if type(tries) is int else 0
        if failure.give_up:
            record["_aborted"] = True
            self.summary.gave_up += 1
        elif not (limit and tries >= limit):
            wait = self.tracker.retry_policy.wait(tries)
            if wait is not None:
                record[RETRY_AT] = round(time.time() + wait, 3)
                self.waiting.add(key)
        if self.bar is not None:
            self._show()
        self.tracker._log_outcome(key)
        name, message = failure.type, failure.message
        if failure.give_up:
            log.error("giving up on task %r (retry_on/giveup_on): %s: %s", key, name, message)
        elif limit and tries >= limit:
            log.error("giving up on task %r after %d tries: %s: %s", key, tries, name, message)
        else:
            log.warning(
                "task %r failed (try %d of %s): %s: %s",
                key,
                tries,
                limit or "no limit",
                name,
                message,
            )
