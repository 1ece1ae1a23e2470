"""``ProgressTracker.run()``: call a function on every task that should be tried.

This process alone owns the tracker, and only its calling thread writes it.
With ``workers > 1`` the function runs in a process pool (:mod:`._pool`);
with threads, a caller's executor or asyncio, in :mod:`._threads`; workers
only compute and return, and what they came to is written here
(:mod:`._outcomes`). A retry policy makes the run go over the failed tasks
again as their delays run out (:func:`_retries_due`).

Whatever a task does — raise an exception pickle cannot carry, exit, raise
``KeyboardInterrupt``, kill its worker, return a value JSON cannot hold —
costs that task's attempt alone. Ctrl-C and SIGTERM stop the run cleanly:
no new task starts, running ones finish (coroutines are cancelled) and are
recorded, the tracker is synced, and then the signal has its usual effect
(``KeyboardInterrupt``, or death by SIGTERM).
"""

from __future__ import annotations

import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from types import FrameType
from typing import TYPE_CHECKING, Any

from .._codec import encode_value, normalize_key
from ._attempt import NOT_A_STOP, awaitable_failure, failure_of, result_failure
from ._outcomes import ERRORS_KEPT, Outcomes, RunSummary
from ._retry import due_at
from ._run_options import RunOptions
from ._served import SETTLED, ServedCounts, ServedRun

if TYPE_CHECKING:
    from ._tracker import ProgressTracker

__all__ = ["ERRORS_KEPT", "RunSummary", "run"]

log = logging.getLogger("tastypy.tracker.run")  # quiet unless configured (see __init__)


def run(
    tracker: ProgressTracker,
    fn: Callable[[str], Any],
    keys: Iterable[Any] | None = None,
    *,
    workers: int = 1,
    progress: bool = True,
    executor: Any = None,
    timeout: float | None = None,
    retry_on: Any = None,
    giveup_on: Any = None,
    wait_for_retries: bool = True,
) -> RunSummary:
    """Add *keys* (if given), then run ``fn(key)`` for each task that should be tried.

    The tasks are *keys* in their order (a key given twice runs once), or
    every task of the tracker. A return value becomes the task's ``result``
    (it must be JSON) and the task is marked done, with the attempt's
    duration in ``_seconds``; anything else the attempt does — an exception
    of any kind, ``sys.exit()``, the task's own ``KeyboardInterrupt``, its
    worker process dying — is recorded in the task's ``_errors`` (see
    :meth:`ProgressTracker.errors`) and the run goes on. With ``workers > 1``
    (capped at the number of tasks left), *fn* must be picklable (a
    module-level function).

    *executor* says where the attempts run: ``"processes"`` (the default:
    this process for ``workers=1``, else a process pool), ``"threads"``
    (*workers* threads of this process), or a :class:`concurrent.futures.Executor`
    of the caller's (at most *workers* tasks handed to it at once). An
    ``async def`` *fn* runs on an asyncio event loop, *workers* at a time
    (no *executor* then). Only the calling thread writes the tracker.

    With *timeout* (seconds), an attempt that runs longer fails with
    ``TimeoutError`` and the run goes on: a process pool's workers are
    killed and replaced (the other running tasks start again, within the
    same try); a coroutine is cancelled; a thread is left to finish in the
    background, its result ignored. With processes, even ``workers=1``
    then runs *fn* in a worker process (it must be picklable).

    *retry_on* (an exception type or a tuple of them) retries only failures
    of those types; *giveup_on* aborts the task at once on those (recorded,
    not retried). With a retry policy on the tracker (``retry_delay``) and
    ``max_tries``, failed tasks are tried again within the run once their
    delay is over, the run waiting for them after the other tasks, unless
    *wait_for_retries* is False (their ``_retry_at`` then waits for the
    next run or the seed loop).

    Raises
    ------
    ValueError
        If *workers* is not a whole number >= 1, *timeout* not a number of
        seconds > 0, or *executor* none of the above (nothing changes).
    TypeError
        If *retry_on* or *giveup_on* are not exception types; with a
        process pool, if *fn* cannot be pickled (nothing changes) or a
        worker process cannot load it (before any task is tried).
    """
    options = RunOptions.checked(
        fn,
        workers=workers,
        executor=executor,
        timeout=timeout,
        retry_on=retry_on,
        giveup_on=giveup_on,
        wait_for_retries=wait_for_retries,
    )
    payload = b""
    if options.pooled:
        # Imported here: multiprocessing and concurrent.futures cost ~20 ms to
        # import, which a program that never runs a pool should not pay.
        from ._pool import pickled_function  # noqa: PLC0415  # see above

        payload = pickled_function(fn, workers, options.rules)
    summary = RunSummary()
    order: Iterable[str]
    if keys is not None:
        order = list(dict.fromkeys(k if type(k) is str else normalize_key(k) for k in keys))
        tracker.add_many_if_absent(order)
    elif isinstance(tracker._tally, ServedCounts):
        # Served on demand: the tasks to do, found by the store (no record is
        # read); those done, aborted or exhausted are counted there.
        with tracker._lock:
            tracker._tally.refresh(None)
            summary.skipped = tracker._tally.counts[SETTLED]
        assert tracker._window is not None
        order = ServedRun(tracker._tally, tracker._window, tracker._lock)
    else:
        order = list(tracker)
    bar = _progress_bar(tracker, progress)
    stop = _Stop()
    try:
        with stop.on_signals():
            results = Outcomes(tracker, summary, bar, options.rules)
            todo: Iterable[str] | None = order
            held: set[str] = set()  # due, but refused by a retry pass: held elsewhere
            while todo:
                tried = summary.done + summary.failed
                tasks = _tasks_to_try(tracker, todo, summary if todo is order else None, stop)
                _one_pass(options, fn, payload, tracker, todo, tasks, results, stop)
                if todo is not order and summary.done + summary.failed == tried:
                    held.update(todo)  # nothing of them could be tried: not again this run
                todo = _retries_due(tracker, order, held, options, stop, bar)
    finally:
        _count_left(tracker, order, summary)
        summary.interrupted = stop.signum is not None
        if bar is not None:
            bar.close()
        tracker.sync()
    stop.deliver()
    return summary


def _count_left(tracker: ProgressTracker, order: Iterable[str], summary: RunSummary) -> None:
    """Count in *summary* the tasks of *order* exhausted, and those waiting for a retry."""
    if isinstance(order, ServedRun):
        summary.exhausted = order.exhausted()
        summary.waiting = order.waiting(time.time())
        return
    waits = tracker.waiting_keys()
    summary.exhausted = sum(
        1 for k in _prefetched(tracker, order) if k in tracker and _exhausted(tracker, k)
    )
    summary.waiting = sum(1 for k in order if k in waits)


def _one_pass(  # noqa: PLR0917
    options: RunOptions,
    fn: Callable[[str], Any],
    payload: bytes,
    tracker: ProgressTracker,
    todo: Iterable[str],
    tasks: Iterator[str],
    results: Outcomes,
    stop: _Stop,
) -> None:
    """Attempt each of *tasks* (from *todo*) where *options* say."""
    if options.how != "processes":
        _concurrently(options, fn, tasks, results, stop)
    elif not options.pooled:
        _here(results, fn, tasks, stop)
    else:
        from ._pool import Pool  # noqa: PLC0415  # see run()

        left = _tasks_left(tracker, todo, options.workers)
        pool = Pool(payload, max(1, left), results.record, options.timeout, options.rules)
        if left:
            pool.start()  # before any try is counted: it may refuse fn
        pool.run(tasks)


def _retries_due(  # noqa: PLR0917
    tracker: ProgressTracker,
    order: Iterable[str],
    held: set[str],
    options: RunOptions,
    stop: _Stop,
    bar: Any,
) -> list[str] | None:
    """After a pass: wait for the first retry among *order* to fall due; those due then.

    A retry is a task to do with a time for its next try (``_retry_at``):
    one that failed in this run, or waited since an earlier one; not one of
    *held* (due, but refused: another writer holds it). None if there is
    nothing to wait for: no retry policy, no ``max_tries`` (retries would
    never end), ``wait_for_retries=False``, or a stop.
    """
    if (
        not options.wait_for_retries
        or tracker.retry_policy.delay is None
        or not tracker.max_tries
        or stop.signum is not None
    ):
        return None
    data = tracker._data
    waits: dict[str, float] = {}
    # Served on demand, only the tasks the store's index of retry times and
    # errors finds are read (not every task to do).
    timed = order.with_retry_times() if isinstance(order, ServedRun) else order
    for key in _prefetched(tracker, timed):
        at = due_at(data.get(key))
        # (should_try: not aborted, nor out of tries)
        if at is None or key in held or not tracker.should_try(key) or tracker.check(key):
            continue
        waits[key] = at
    if not waits:
        return None
    first = min(waits.values())
    if first > time.time():
        tracker.sync()  # what is done so far is in the store while the run waits
    while stop.signum is None and (left := first - time.time()) > 0:
        if bar is not None:
            what = "1 retry" if len(waits) == 1 else f"{len(waits)} retries"
            bar.set_postfix_str(f"waiting for {what}, the next in {left:.0f} s")
        time.sleep(min(left, 0.2))
    if bar is not None:
        bar.set_postfix_str("")
    if stop.signum is not None:
        return None
    now = time.time()
    return [key for key, at in waits.items() if at <= now]


def _concurrently(
    options: RunOptions,
    fn: Callable[[str], Any],
    tasks: Iterator[str],
    results: Outcomes,
    stop: _Stop,
) -> None:
    """The attempts on threads, the caller's executor, or an event loop."""
    # Imported here: asyncio takes ~40 ms to import.
    from ._threads import Job, run_async, run_on_executor, run_threads  # noqa: PLC0415

    job = Job(
        fn,
        tasks,
        results.record,
        results.give_back,
        stop,
        options.workers,
        options.timeout,
        options.rules,
        results.left_threads,
    )
    if options.how == "async":
        run_async(job)
    elif options.how == "threads":
        run_threads(job)
    else:
        run_on_executor(options.executor, job)


def _tasks_left(tracker: ProgressTracker, order: Iterable[str], most: int) -> int:
    """How many tasks of *order* are left to try, counting up to *most* at most."""
    left = 0
    for key in order:
        if tracker.should_do(key):
            left += 1
            if left >= most:
                break
    return left


def _tasks_to_try(
    tracker: ProgressTracker, order: Iterable[str], summary: RunSummary | None, stop: _Stop
) -> Iterator[str]:
    """Each task to try, its try counted, until the list ends or a signal stops us.

    Tasks done or aborted are counted as skipped in *summary*, if given.
    """
    if tracker._batch_claims():
        yield from _tasks_claimed_in_batches(tracker, order, summary, stop)
        return
    for key in order:
        if stop.signum is not None:
            return
        if tracker.check(key) or tracker.aborted(key):
            if summary is not None:
                summary.skipped += 1
        elif tracker.try_it(key):
            yield key


# Claims per round trip, at most: a batch is sized to last about BATCH_SECONDS
# of this run's tasks, so long tasks are claimed one at a time (no worker sits
# on tasks another could be running).
MOST_PER_BATCH = 256
BATCH_SECONDS = 0.05


def _tasks_claimed_in_batches(
    tracker: ProgressTracker, order: Iterable[str], summary: RunSummary | None, stop: _Stop
) -> Iterator[str]:
    """:func:`_tasks_to_try` where the engine claims many tasks in one round trip.

    A batch's claims that the run never gets to (a signal stopped it) are
    given back with their tries uncounted; a crash leaves them counted.
    """
    keys = _prefetched(tracker, order)  # served on demand: records read 1,000 at a time
    size = 1
    while stop.signum is None:
        chunk: list[str] = []
        for key in keys:
            if tracker.check(key) or tracker.aborted(key):
                if summary is not None:
                    summary.skipped += 1
                continue
            chunk.append(key)
            if len(chunk) >= size:
                break
        if not chunk:
            return
        claimed = tracker._fleet_try_many(chunk, tracker._tally.max_tries)
        began = time.perf_counter()
        given = 0
        try:
            for key in claimed:
                if stop.signum is not None:
                    break
                given += 1
                yield key
        finally:
            tracker._unclaim(claimed[given:])
        if given:
            each = (time.perf_counter() - began) / given
            size = max(
                1, min(MOST_PER_BATCH, int(BATCH_SECONDS / each) if each else MOST_PER_BATCH)
            )
        elif not claimed:  # all held or settled elsewhere: look further ahead at once
            size = min(MOST_PER_BATCH, size * 2)


def _here(results: Outcomes, fn: Callable[[str], Any], tasks: Iterator[str], stop: _Stop) -> None:
    """Attempt each task in this process."""
    for key in tasks:
        started = time.perf_counter()
        try:
            result = fn(key)
        except BaseException as exc:
            # A second Ctrl-C stops the task and the run; any other
            # KeyboardInterrupt, like SystemExit, is the task's own doing.
            if stop.forced and isinstance(exc, KeyboardInterrupt):
                raise
            results.failed(key, results.rules.judged(failure_of(exc), exc))
            continue
        seconds = time.perf_counter() - started
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # never awaited: no warning about it
            results.failed(key, results.rules.judged(awaitable_failure(), TypeError()))
            continue
        try:
            encode_value(result, keep=False)
        except NOT_A_STOP as exc:  # TypeError, or whatever a hostile value raises
            results.failed(key, results.rules.judged(result_failure(exc), exc))
        else:
            results.succeeded(key, result, seconds)


def _prefetched(tracker: ProgressTracker, keys: Iterable[str]) -> Iterator[str]:
    """*keys*, their records read a thousand at a time first where served on demand."""
    each = iter(keys)
    while chunk := list(islice(each, PREFETCH)):
        tracker._prefetch(chunk)
        yield from chunk


PREFETCH = 1_000


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
        self.forced = False  # a second Ctrl-C raised KeyboardInterrupt
        self._previous: dict[signal.Signals, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if not first and signum == signal.SIGINT:
            self.forced = True  # first: tells this KeyboardInterrupt from a task's own
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
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue  # ignored by the program (nohup, a background job): stays so
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
