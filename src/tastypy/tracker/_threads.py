"""``run()`` with threads, a caller's executor, or asyncio: many tasks in flight.

For I/O-bound work (a crawler, an API client), hundreds of tasks wait on
the network at once in one process. Only the run's own thread touches the
tracker: a thread, an executor's worker or a coroutine only computes
(:func:`._attempt.attempt`: the result encoded, any exception as text), and
the run records what it came to.

A time limit (``timeout``) makes an attempt that runs over it a failure,
recorded as ``TimeoutError``, and the run goes on:

- a thread cannot be stopped: its attempt is recorded as failed when the
  time is up, the thread is left to finish in the background (a daemon, so
  it never holds up the program's exit) and whatever it comes to is
  ignored; a new thread takes its place, ``2 * workers`` alive at most;
- with a caller's executor the same holds, the time counted from when the
  executor starts the task (:class:`_OnExecutor`);
- a coroutine is cancelled.

On Ctrl-C or SIGTERM no new task starts. Threads and executors' tasks are
waited for (within their time limit) and recorded, tasks still waiting in
an executor given back; coroutines are cancelled, and their try is given
back (they did not fail: they were stopped).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._codec import encode_value
from ._attempt import (
    EVERY_ERROR,
    NOT_A_STOP,
    Failure,
    Rules,
    Success,
    attempt,
    failure_of,
    result_failure,
    timed_out,
)

__all__ = ["run_async", "run_on_executor", "run_threads"]

Outcome = Success | Failure
Record = Callable[[str, Outcome], None]


class Stop(Protocol):
    signum: int | None


@dataclass
class Job:
    """One run's attempts: what to call on which tasks, and where outcomes go."""

    fn: Callable[[str], Any]
    tasks: Iterator[str]  # each task to try, its try counted
    record: Record  # in the run's thread: what an attempt came to
    give_back: Callable[[str], None]  # uncount the try of a task stopped unfinished
    stop: Stop  # its signum set: start no new task
    workers: int  # tasks in flight at most
    timeout: float | None  # seconds an attempt may take
    rules: Rules = EVERY_ERROR  # which failures give up at once
    # Threads left past their time limit, alive across the run's passes.
    left: set[Any] = field(default_factory=set)

    def next_task(self, running: int) -> str | None:
        """The next task to start, if *running* leaves room and the run goes on."""
        if self.stop.signum is not None or running >= self.workers:
            return None
        return next(self.tasks, None)

    def deadline(self) -> float:
        return float("inf") if self.timeout is None else time.monotonic() + self.timeout


class _Worker:
    """A thread that runs the tasks it is handed, one at a time, until told to end."""

    def __init__(self, job: Job, outbox: queue.SimpleQueue[Any]) -> None:
        self.inbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.key: str | None = None  # the task it runs now
        self.deadline = float("inf")
        self.thread = threading.Thread(
            target=self._loop, args=(job, outbox), name="tastypy run() worker", daemon=True
        )
        self.thread.start()

    def _loop(self, job: Job, outbox: queue.SimpleQueue[Any]) -> None:
        while (key := self.inbox.get()) is not None:
            outbox.put((self, key, attempt(job.fn, key, job.rules)))


def run_threads(job: Job) -> None:
    """Attempt each task on up to ``job.workers`` threads at once.

    A thread left to finish an attempt over its time limit does not count
    against ``workers``, but at most ``2 * workers`` threads may be alive
    (across the run's passes): past that, the next task waits for one to
    end (or for a stop, which gives its try back).
    """
    outbox: queue.SimpleQueue[tuple[_Worker, str, Outcome]] = queue.SimpleQueue()
    idle: list[_Worker] = []
    busy: set[_Worker] = set()
    left = job.left
    try:
        while True:
            while job.stop.signum is None and len(busy) < job.workers:
                key = next(job.tasks, None)
                if key is None:
                    break
                if not _room_for(job, busy, left):
                    job.give_back(key)  # a stop came while it waited
                    break
                worker = idle.pop() if idle else _Worker(job, outbox)
                worker.key, worker.deadline = key, job.deadline()
                busy.add(worker)
                worker.inbox.put(key)
            if not busy:
                return
            wait = min(worker.deadline for worker in busy) - time.monotonic()
            try:
                worker, key, outcome = outbox.get(timeout=max(0.0, min(wait, 0.2)))
            except queue.Empty:
                pass
            else:
                if worker in busy and worker.key == key:
                    busy.discard(worker)
                    worker.key = None
                    idle.append(worker)
                    job.record(key, outcome)
            if job.timeout is not None:  # each time: outcomes may keep coming meanwhile
                left |= _leave_overdue(job, busy)
    finally:
        for worker in (*busy, *idle):  # busy: a second Ctrl-C, or a failed sync
            worker.inbox.put(None)


def _room_for(job: Job, busy: set[_Worker], left: set[Any]) -> bool:
    """Wait until one more thread may start (``2 * workers`` alive at most); False on a stop."""
    while True:
        left -= {worker for worker in left if not worker.thread.is_alive()}
        if len(busy) + len(left) < 2 * job.workers:
            return True
        if job.stop.signum is not None:
            return False
        time.sleep(0.05)


def _leave_overdue(job: Job, busy: set[_Worker]) -> set[_Worker]:
    """Fail the tasks over their time limit; their threads are left to finish alone."""
    now = time.monotonic()
    overdue = {each for each in busy if each.deadline <= now}
    for worker in overdue:
        busy.discard(worker)  # what it comes to is ignored
        key, worker.key = worker.key, None
        assert key is not None
        assert job.timeout is not None
        job.record(key, timed_out(job.timeout, "its thread was left to finish", job.rules))
        worker.inbox.put(None)  # and then to end
    return overdue


class _OnExecutor:
    """The tasks handed to a caller's executor: started, waiting in it, or done.

    A task counts as started when its future says it runs (for a
    ``ProcessPoolExecutor``, when it moves to the pool's call queue). Its
    time limit counts from then. A task that never started — its future
    cancelled (by a stop, or by the executor) or broken with the executor —
    is given back, its try uncounted.
    """

    def __init__(self, executor: cf.Executor, job: Job) -> None:
        self.executor = executor
        self.job = job
        self.keys: dict[cf.Future[Outcome], str] = {}
        self.deadlines: dict[cf.Future[Outcome], float] = {}  # of those started

    def submit(self, key: str) -> None:
        try:
            future = self.executor.submit(attempt, self.job.fn, key, self.job.rules)
        except BaseException:
            self.job.give_back(key)
            raise
        self.keys[future] = key

    def look(self) -> None:
        """Note starts, and give back tasks whose futures were cancelled unstarted."""
        for future, key in list(self.keys.items()):
            if future.cancelled():
                del self.keys[future]
                self.deadlines.pop(future, None)
                self.job.give_back(key)
            elif future not in self.deadlines and (future.running() or future.done()):
                self.deadlines[future] = self.job.deadline()

    def settle(self, wait: float) -> None:
        """Record what finished within *wait* seconds, and fail what ran over its limit."""
        self.look()
        if self.deadlines:
            wait = min(wait, min(self.deadlines.values()) - time.monotonic())
        finished, _ = cf.wait(self.keys, timeout=max(0.0, wait), return_when=cf.FIRST_COMPLETED)
        for future in finished:
            key = self.keys.pop(future)
            started = self.deadlines.pop(future, None) is not None
            if not started and isinstance(future.exception(), cf.BrokenExecutor):
                self.job.give_back(key)  # broke with the executor before it started
            else:
                self.job.record(key, _outcome(future))
        now = time.monotonic()
        for future, deadline in list(self.deadlines.items()):
            if deadline <= now and not future.done():
                key = self.keys.pop(future)
                del self.deadlines[future]
                future.cancel()
                assert self.job.timeout is not None
                why = "its result, if any, is ignored"
                self.job.record(key, timed_out(self.job.timeout, why, self.job.rules))

    def unstarted_back(self) -> None:
        """Cancel the tasks still waiting in the executor, their tries given back."""
        for future in list(self.keys):
            future.cancel()
        self.look()


def run_on_executor(executor: cf.Executor, job: Job) -> None:
    """Attempt each task on the caller's *executor*, ``job.workers`` at a time at most.

    On a stop, or if the executor refuses a task, the tasks waiting in it
    are given back and those it runs are waited for (within their time
    limit) and recorded; then a refusal's error is raised.
    """
    handed = _OnExecutor(executor, job)
    poll = 0.1 if job.timeout is None else 0.05  # soon: to see a stop, and each start
    try:
        while True:
            while (key := job.next_task(len(handed.keys))) is not None:
                handed.submit(key)
            if job.stop.signum is not None:
                handed.unstarted_back()
            if not handed.keys:
                return
            handed.settle(poll)
    except BaseException:
        handed.unstarted_back()
        while handed.keys and not getattr(job.stop, "forced", False):
            handed.settle(poll)  # a refusal: the started ones still finish
        raise


def _outcome(future: cf.Future[Outcome]) -> Outcome:
    try:
        return future.result()
    except BaseException as exc:  # the executor's own trouble (attempt never raises)
        return failure_of(exc)


def run_async(job: Job) -> None:
    """Await ``fn(key)`` for each task on an event loop, ``job.workers`` at a time at most."""
    asyncio.run(_run_async(job))


async def _attempt_async(job: Job, key: str) -> Outcome:
    """Await ``fn(key)`` within the time limit; never raises but the run's own cancel.

    The attempt runs as a task of its own, so what it raises, a
    ``TimeoutError`` or a ``CancelledError`` of its own included, is its
    failure; only the run's deadline makes a timeout, and only the run's
    stop cancels it from outside.
    """
    started = time.perf_counter()
    try:
        inner = asyncio.ensure_future(_contained(job, key))
    except BaseException as exc:  # fn raised at once, or returned no awaitable
        return job.rules.judged(failure_of(exc), exc)
    try:
        done, _ = await asyncio.wait({inner}, timeout=job.timeout)
    except asyncio.CancelledError:  # the run stops: so does the attempt
        inner.cancel()
        raise
    if not done:
        # Cancelled, not waited for: one that ignores cancellation goes on
        # alone, and what it comes to is ignored.
        inner.cancel()
        assert job.timeout is not None
        return timed_out(job.timeout, "it was cancelled", job.rules)
    try:
        ended, result = inner.result()
    except BaseException as exc:  # the task's own, CancelledError included
        return job.rules.judged(failure_of(exc), exc)
    if ended is not None:
        return job.rules.judged(failure_of(ended), ended)
    seconds = time.perf_counter() - started
    try:
        data = encode_value(result, keep=False)
    except NOT_A_STOP as exc:
        return job.rules.judged(result_failure(exc), exc)
    return Success(data, seconds)


async def _contained(job: Job, key: str) -> tuple[BaseException | None, Any]:
    """``await fn(key)``: its ``SystemExit`` or ``KeyboardInterrupt`` as a value.

    The event loop lets those two out of any task and ends; the task's own
    are its failure. A second Ctrl-C (the run's ``stop.forced``) is not.
    """
    try:
        return None, await job.fn(key)
    except (SystemExit, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt) and getattr(job.stop, "forced", False):
            raise
        return exc, None


async def _run_async(job: Job) -> None:
    running: dict[asyncio.Task[Outcome], str] = {}
    try:
        while True:
            while (key := job.next_task(len(running))) is not None:
                running[asyncio.ensure_future(_attempt_async(job, key))] = key
            if not running or job.stop.signum is not None:
                return
            finished, _ = await asyncio.wait(
                running, timeout=0.2, return_when=asyncio.FIRST_COMPLETED
            )
            for task in finished:
                job.record(running.pop(task), task.result())
    finally:
        # Stopped (a signal, a second Ctrl-C, a failed sync): cancel what runs.
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        for task, key in running.items():
            if task.cancelled():
                job.give_back(key)
            else:
                job.record(key, task.result())
