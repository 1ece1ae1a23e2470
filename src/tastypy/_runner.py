"""``ProgressTracker.run()``: call a function on every task that should be tried.

This process alone owns the tracker. With ``workers > 1`` the function runs
in a process pool; workers only compute and return, the results are written
here. Ctrl-C and SIGTERM stop the run cleanly: no new task starts, running
ones finish and are recorded, the tracker is synced, and then the signal has
its usual effect (``KeyboardInterrupt``, or death by SIGTERM).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._codec import encode_value, normalize_key

if TYPE_CHECKING:
    from .tracker import ProgressTracker

__all__ = ["ERRORS_KEPT", "RunSummary", "run"]

log = logging.getLogger("tastypy.tracker")

ERRORS_KEPT = 5  # failed attempts remembered per task
_TRACEBACK_CHARS = 4000
_MESSAGE_CHARS = 1000


@dataclass
class RunSummary:
    """What one :meth:`ProgressTracker.run` did.

    Attributes
    ----------
    done
        Tasks that succeeded in this run.
    failed
        Attempts that raised in this run.
    skipped
        Tasks not tried because they were already done or aborted.
    exhausted
        Tasks given up on: tried ``max_tries`` times and not done.
    interrupted
        Whether Ctrl-C or SIGTERM stopped the run early.
    """

    done: int = 0
    failed: int = 0
    skipped: int = 0
    exhausted: int = 0
    interrupted: bool = False


def run(
    tracker: ProgressTracker,
    fn: Callable[[str], Any],
    keys: Iterable[Any] | None = None,
    *,
    workers: int = 1,
    progress: bool = True,
) -> RunSummary:
    """Add *keys* (if given), then run ``fn(key)`` for each task that should be tried.

    The tasks are *keys* in their order, or every task of the tracker. A
    return value becomes the task's ``result`` (it must be JSON) and the task
    is marked done, with the attempt's duration in ``_seconds``; an exception
    is recorded in the task's ``_errors`` (see :meth:`ProgressTracker.errors`)
    and the run goes on. With ``workers > 1``, *fn* must be picklable (a
    module-level function).
    """
    if type(workers) is not int or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, not {workers!r}")
    if keys is not None:
        order = [k if type(k) is str else normalize_key(k) for k in keys]
        tracker.add_many_if_absent(order)
    else:
        order = list(tracker)
    summary = RunSummary()
    bar = _progress_bar(tracker, progress)
    stop = _Stop()
    try:
        with stop.on_signals():
            tasks = _tasks_to_try(tracker, order, summary, stop)
            if workers == 1:
                _Run(tracker, summary, bar).here(fn, tasks)
            else:
                _Run(tracker, summary, bar).in_pool(fn, tasks, workers)
    finally:
        summary.exhausted = sum(1 for k in order if k in tracker and _exhausted(tracker, k))
        summary.interrupted = stop.signum is not None
        if bar is not None:
            bar.close()
        tracker.sync()
    stop.deliver()
    return summary


def _tasks_to_try(
    tracker: ProgressTracker, order: list[str], summary: RunSummary, stop: _Stop
) -> Iterator[str]:
    """Each task to try, its try counted, until the list ends or a signal stops us."""
    for key in order:
        if stop.signum is not None:
            return
        if tracker.check(key) or tracker.aborted(key):
            summary.skipped += 1
        elif tracker.try_it(key):
            yield key


def _call(fn: Callable[[str], Any], key: str) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn(key)
    return result, time.perf_counter() - started


def _ignore_signals() -> None:
    # The parent decides when to stop; a Ctrl-C reaches the whole process
    # group, and workers dying of it would lose their running tasks' results.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Run:
    """One run's bookkeeping: results and failures go into the tracker."""

    def __init__(self, tracker: ProgressTracker, summary: RunSummary, bar: Any) -> None:
        self.tracker = tracker
        self.summary = summary
        self.bar = bar

    def here(self, fn: Callable[[str], Any], tasks: Iterator[str]) -> None:
        for key in tasks:
            try:
                result, seconds = _call(fn, key)
            except Exception as exc:
                self.failed(key, exc)
            else:
                self.succeeded(key, result, seconds)

    def in_pool(self, fn: Callable[[str], Any], tasks: Iterator[str], workers: int) -> None:
        pool = cf.ProcessPoolExecutor(workers, initializer=_ignore_signals)
        running: dict[cf.Future[tuple[Any, float]], str] = {}

        def renew() -> cf.ProcessPoolExecutor:
            # A worker died (os._exit, a crash): every task the pool had
            # running failed with it; carry on with a fresh pool.
            for future, key in list(running.items()):
                self.collect(key, future)
            running.clear()
            pool.shutdown(wait=False, cancel_futures=True)
            return cf.ProcessPoolExecutor(workers, initializer=_ignore_signals)

        try:
            while True:
                for key in tasks:
                    try:
                        future = pool.submit(_call, fn, key)
                    except cf.process.BrokenProcessPool:  # it broke since we last looked
                        pool = renew()
                        future = pool.submit(_call, fn, key)
                    running[future] = key
                    if len(running) >= 2 * workers:
                        break
                if not running:
                    return
                finished, _ = cf.wait(running, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                broken = False
                for future in finished:
                    self.collect(running.pop(future), future)
                    broken |= isinstance(future.exception(), cf.process.BrokenProcessPool)
                if broken:
                    pool = renew()
        finally:
            # Let running tasks finish and record them; never start new ones.
            for future, key in list(running.items()):
                self.collect(key, future)
            pool.shutdown(wait=True, cancel_futures=True)

    def collect(self, key: str, future: cf.Future[tuple[Any, float]]) -> None:
        try:
            result, seconds = future.result()
        except Exception as exc:
            self.failed(key, exc)
        else:
            self.succeeded(key, result, seconds)

    def succeeded(self, key: str, result: Any, seconds: float) -> None:
        try:
            encode_value(result, keep=False)
        except TypeError as exc:
            self.failed(key, TypeError(f"fn returned a value JSON cannot hold: {exc}"))
            return
        record = self.tracker[key]
        record["result"] = result
        record["_seconds"] = round(seconds, 6)
        record["_done"] = True
        self.summary.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def failed(self, key: str, exc: BaseException) -> None:
        self.summary.failed += 1
        record = self.tracker[key]
        text = "".join(traceback.format_exception(exc))
        cause = exc.__cause__  # a worker's traceback arrives as the cause
        if cause is not None and type(cause).__name__ == "_RemoteTraceback":
            text = str(cause)
        errors = record.get("_errors")
        errors = list(errors) if isinstance(errors, list) else []
        errors.append(
            {
                "type": type(exc).__name__,
                "message": str(exc)[:_MESSAGE_CHARS],
                "traceback": text[-_TRACEBACK_CHARS:],
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        record["_errors"] = errors[-ERRORS_KEPT:]
        tries, limit = record.get("_tries", 0), self.tracker.max_tries
        name = type(exc).__name__
        if limit and tries >= limit:
            log.error("giving up on task %r after %d tries: %s: %s", key, tries, name, exc)
        else:
            log.warning(
                "task %r failed (try %d of %s): %s: %s", key, tries, limit or "no limit", name, exc
            )


def _exhausted(tracker: ProgressTracker, key: str) -> bool:
    return not tracker.check(key) and not tracker.should_try(key) and not tracker.aborted(key)


def _progress_bar(tracker: ProgressTracker, progress: bool) -> Any:
    if not progress:
        return None
    # Imported here: tqdm takes ~30 ms to import and only runs with a bar need it.
    from tqdm import tqdm  # type: ignore[import-untyped]  # noqa: PLC0415

    return tqdm(
        total=len(tracker),
        initial=tracker.num_done(),
        unit="task",
        dynamic_ncols=True,
        smoothing=0.1,
    )


class _Stop:
    """Turns SIGINT and SIGTERM into a request to stop, for the length of a run."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if not first and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop the running task too
        self.signum = signum  # before logging: a signal may arrive while we log
        if first:
            log.warning("stopping after the running tasks finish (signal %d)", signum)

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may handle signals: run unguarded
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handler)
        try:
            yield
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)

    def deliver(self) -> None:
        """After a clean stop, give the signal its usual effect.

        The handlers from before the run are back in place, so raising the
        signal again does what it would have done: ``KeyboardInterrupt`` for
        Ctrl-C, and for SIGTERM tastypy's exit sync and then death by SIGTERM
        (or the program's own handler).
        """
        if self.signum is not None:
            signal.raise_signal(self.signum)
