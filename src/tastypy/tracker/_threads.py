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
  ignored; a new thread takes its place;
- with a caller's executor the same holds, the time counted from when the
  task was handed to it;
- a coroutine is cancelled.

On Ctrl-C or SIGTERM no new task starts. Threads and executors' tasks are
waited for (within their time limit) and recorded; coroutines are
cancelled, and their try is given back (they did not fail: they were
stopped).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
    against ``workers``, but at most ``2 * workers`` threads may be alive:
    past that, no new task starts until one ends.
    """
    outbox: queue.SimpleQueue[tuple[_Worker, str, Outcome]] = queue.SimpleQueue()
    idle: list[_Worker] = []
    busy: set[_Worker] = set()
    left: set[_Worker] = set()  # left to finish alone: what they come to is ignored
    more = True  # tasks may remain
    try:
        while True:
            left = {worker for worker in left if worker.thread.is_alive()}
            while (
                more
                and job.stop.signum is None
                and len(busy) < job.workers
                and len(busy) + len(left) < 2 * job.workers
            ):
                key = next(job.tasks, None)
                if key is None:
                    more = False
                    break
                worker = idle.pop() if idle else _Worker(job, outbox)
                worker.key, worker.deadline = key, job.deadline()
                busy.add(worker)
                worker.inbox.put(key)
            if not busy:
                if more and job.stop.signum is None and left:
                    time.sleep(0.05)  # too many left to finish: wait for one to end
                    continue
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


def run_on_executor(executor: cf.Executor, job: Job) -> None:
    """Attempt each task on the caller's *executor*, ``job.workers`` at a time at most.

    A task's time limit counts from when the executor starts it
    (``Future.running()``), not from when it was handed over.
    """
    running: dict[cf.Future[Outcome], str] = {}
    deadlines: dict[cf.Future[Outcome], float] = {}  # of those seen running
    try:
        while True:
            while (key := job.next_task(len(running))) is not None:
                running[_submit(executor, job, key, running)] = key
            if not running:
                return
            now = time.monotonic()
            for future in running:
                if future not in deadlines and future.running():
                    deadlines[future] = job.deadline()
            wait = 0.5 if job.timeout is None else 0.05  # soon: to see each start
            if deadlines:
                wait = min(wait, min(deadlines.values()) - now)
            finished, _ = cf.wait(running, timeout=max(0.0, wait), return_when=cf.FIRST_COMPLETED)
            for future in finished:
                deadlines.pop(future, None)
                job.record(running.pop(future), _outcome(future))
            now = time.monotonic()
            for future, deadline in list(deadlines.items()):
                if deadline <= now and not future.done():
                    key = running.pop(future)
                    del deadlines[future]
                    future.cancel()
                    assert job.timeout is not None
                    job.record(
                        key, timed_out(job.timeout, "its result, if any, is ignored", job.rules)
                    )
    finally:
        for future, key in running.items():  # a second Ctrl-C, a failed sync, a refusal
            if future.cancel():
                job.give_back(key)  # never started


def _submit(
    executor: cf.Executor, job: Job, key: str, running: dict[cf.Future[Outcome], str]
) -> cf.Future[Outcome]:
    """Hand *key* to *executor*; if it refuses (shut down, broken), give the try back.

    The tasks it runs already are waited for and recorded, then the
    executor's error is raised.
    """
    try:
        return executor.submit(attempt, job.fn, key, job.rules)
    except BaseException:
        job.give_back(key)
        for future, other in list(running.items()):
            if not future.cancel():
                job.record(other, _outcome(future))  # waits for it
                del running[future]
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
        inner = asyncio.ensure_future(job.fn(key))
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
        result = inner.result()
    except BaseException as exc:  # the task's own, CancelledError included
        return job.rules.judged(failure_of(exc), exc)
    seconds = time.perf_counter() - started
    try:
        data = encode_value(result, keep=False)
    except NOT_A_STOP as exc:
        return job.rules.judged(result_failure(exc), exc)
    return Success(data, seconds)


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
