"""``run()`` with ``workers > 1``: attempts in a pool of worker processes.

The function is pickled once, here, and loaded once per worker, so a
function pickle cannot write or a worker cannot load is refused before any
task is tried. Workers send back only what :mod:`._attempt` makes of an
attempt (text, JSON bytes), so nothing a task raises or returns can break
the pool. A worker that dies (``os._exit``, a segfault, a signal) breaks the
pool and fails every task in it; those tasks are *suspects*, and each is run
again alone in a process of its own: the one that kills that process is
recorded as failed, the others finish normally. Their interrupted attempt
and the rerun are one try (``try_it`` counted it when the task first
started), so a task that kills its worker every time fails once per run and
is given up on at ``max_tries``.

With a time limit (``timeout``), the pool holds no more tasks than it has
workers, so a task starts as it is handed over, and one that runs over its
limit is recorded as failed (``TimeoutError``). A process pool cannot kill
one of its workers alone, so the pool is stopped (its processes killed) and
a new one takes its place; the other tasks that were running in it are
started again there, within the same try (their attempt was cut short by
another task, not failed), each with a new time limit.

Workers ignore SIGINT: a Ctrl-C reaches the whole process group, and the run
(in this process) decides when to stop.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.reduction import ForkingPickler
from typing import Any

from ._attempt import EVERY_ERROR, Failure, Rules, Success, attempt, failure_of, timed_out

__all__ = ["Pool", "pickled_function"]

Outcome = Success | Failure
Record = Callable[[str, Outcome], None]

# How long a task run alone may take to exit after sending its outcome (its
# program's threads, say) before it is killed: the outcome is in already.
_EXIT_GRACE = 10.0
_BROKEN = "BrokenProcessPool"


def pickled_function(fn: Callable[[str], Any], workers: int, rules: Rules = EVERY_ERROR) -> bytes:
    """*fn* and *rules* as the pool sends them to workers.

    Raises
    ------
    TypeError
        If pickle cannot write *fn* (a lambda, a nested function) or the
        exception types of *rules* (a class defined in a function).
    """
    for what, thing in (("fn", fn), ("retry_on and giveup_on", rules)):
        try:
            ForkingPickler.dumps(thing)
        except Exception as exc:  # PicklingError, AttributeError, TypeError, ...
            raise TypeError(
                f"with workers={workers}, a process pool sends {what} to worker processes "
                "with pickle, which "
                f"cannot write {thing!r} ({type(exc).__name__}: {exc}); pass module-level "
                "functions and classes (or a functools.partial of one), or use "
                'executor="threads" (or workers=1 without timeout) to run fn in this process'
            ) from exc
    return bytes(ForkingPickler.dumps((fn, rules)))


class Pool:
    """The worker processes of one run, and what to do when one dies.

    Each outcome goes to *record*, in this process. Not thread-safe: one
    thread runs it.
    """

    def __init__(
        self,
        payload: bytes,
        workers: int,
        record: Record,
        timeout: float | None = None,
        rules: Rules = EVERY_ERROR,
    ) -> None:
        self.payload = payload
        self.workers = workers
        self.record = record
        self.timeout = timeout
        self.rules = rules
        self.context = multiprocessing.get_context()
        self.executor: cf.ProcessPoolExecutor | None = None
        self.running: dict[cf.Future[Outcome], str] = {}
        self.deadlines: dict[cf.Future[Outcome], float] = {}  # with a time limit

    def start(self) -> None:
        """Start the workers, and check that they can load the function.

        Raises
        ------
        TypeError
            If a worker process cannot unpickle the function.
        """
        self.executor = self._new_executor()
        try:
            failure = self.executor.submit(_load_failure).result()
        except BaseException:  # e.g. too many open files to start the workers
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
            raise
        if failure is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
            raise TypeError(
                f"a worker process cannot load fn ({failure.type}: {failure.message}); with "
                f"workers={self.workers}, fn must be a module-level function of a module "
                "that a new process can import (or a functools.partial of one), or use "
                "workers=1 to run it in this process"
            )

    def run(self, tasks: Iterator[str]) -> None:
        """Attempt each of *tasks* (its try already counted) until they run out."""
        held = self.workers if self.timeout is not None else 2 * self.workers
        try:
            while True:
                while len(self.running) < held:
                    key = next(tasks, None)
                    if key is None:
                        break
                    self._submit(key)
                if not self.running:
                    return
                wait = 0.5
                if self.deadlines:
                    wait = min(wait, max(0.0, min(self.deadlines.values()) - time.monotonic()))
                finished, _ = cf.wait(self.running, timeout=wait, return_when=cf.FIRST_COMPLETED)
                broken = False
                for future in finished:
                    if _broke(future):
                        broken = True  # stays in running: a suspect
                    else:
                        self.deadlines.pop(future, None)
                        self.record(self.running.pop(future), _outcome(future))
                if broken:
                    self._find_the_killer()
                elif self._overdue():
                    self._replace_the_pool()
        finally:
            self._finish()

    def _overdue(self) -> list[cf.Future[Outcome]]:
        now = time.monotonic()
        return [f for f, deadline in self.deadlines.items() if deadline <= now and not f.done()]

    def _kill_workers(self) -> None:
        """Kill the pool's processes (a stuck task holds one; the pool cannot tell which)."""
        assert self.executor is not None
        processes = getattr(self.executor, "_processes", None) or {}
        for process in list(processes.values()):
            with suppress(OSError, ValueError):
                process.kill()

    def _replace_the_pool(self) -> None:
        """Tasks ran over their time limit: fail them, and start the others again anew."""
        assert self.executor is not None
        assert self.timeout is not None
        overdue = set(self._overdue())
        for future in overdue:
            self.record(
                self.running[future], timed_out(self.timeout, "its worker was killed", self.rules)
            )
        self._kill_workers()
        self.executor.shutdown(wait=True, cancel_futures=True)
        again = []
        for future, key in self.running.items():
            if future in overdue:
                continue
            if future.done() and not _broke(future) and not future.cancelled():
                self.record(key, _outcome(future))
            else:
                again.append(key)  # cut short by the killing: the same try, started anew
        self.running.clear()
        self.deadlines.clear()
        self.start()  # its workers up before the time limits start again
        for key in again:
            self._submit(key)

    def _new_executor(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            self.workers,
            mp_context=self.context,
            initializer=_start_worker,
            initargs=(self.payload,),
        )

    def _submit(self, key: str) -> None:
        if self.executor is None:
            self.start()
        assert self.executor is not None
        try:
            future = self.executor.submit(_attempt_in_worker, key)
        except cf.process.BrokenProcessPool:  # it broke since we last looked
            self._find_the_killer()
            assert self.executor is not None
            future = self.executor.submit(_attempt_in_worker, key)
        self.running[future] = key
        if self.timeout is not None:
            self.deadlines[future] = time.monotonic() + self.timeout

    def _find_the_killer(self) -> None:
        """A worker died: run each task that was in the pool alone, then go on."""
        assert self.executor is not None
        # Waits for the pool to settle: every one of its futures is then done.
        self.executor.shutdown(wait=True, cancel_futures=True)
        suspects = []
        for future, key in self.running.items():
            if not future.done() or _broke(future):
                suspects.append(key)
            else:
                self.record(key, _outcome(future))
        self.running.clear()
        self.deadlines.clear()
        # Even after a stop request: these tasks were running (or about to).
        for key in suspects:
            self.record(key, run_alone(self.context, self.payload, key, self.timeout, self.rules))
        self.executor = self._new_executor()

    def _finish(self) -> None:
        """Let the tasks in the pool finish and record them; start no new ones.

        Only an exception (a second Ctrl-C, a failed sync) leaves tasks here,
        so a pool that breaks now has its tasks recorded as failed rather
        than run again alone.
        """
        try:
            for future, key in list(self.running.items()):
                deadline = self.deadlines.get(future)
                cf.wait(
                    [future], None if deadline is None else max(0.0, deadline - time.monotonic())
                )
                del self.running[future]
                if not future.done():  # over its time limit: the rest break with the pool
                    assert self.timeout is not None
                    self.record(key, timed_out(self.timeout, "its worker was killed", self.rules))
                    self._kill_workers()
                    continue
                if _broke(future):
                    message = (
                        "a worker process died while this task was in the pool, and the "
                        "run was stopped before it could tell which task killed it"
                    )
                    self.record(key, Failure(_BROKEN, message, f"{_BROKEN}: {message}\n"))
                else:
                    self.record(key, _outcome(future))
        finally:
            if self.executor is not None:
                self.executor.shutdown(wait=True, cancel_futures=True)


def _broke(future: cf.Future[Outcome]) -> bool:
    return isinstance(future.exception(), cf.process.BrokenProcessPool)


def _outcome(future: cf.Future[Outcome]) -> Outcome:
    try:
        return future.result()
    except Exception as exc:  # the pool's own trouble: the worker sends no exception
        return failure_of(exc)


def run_alone(
    context: BaseContext,
    payload: bytes,
    key: str,
    timeout: float | None = None,
    rules: Rules = EVERY_ERROR,
) -> Outcome:
    """Attempt *key* in a process of its own; its death is this task's failure."""
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(  # type: ignore[attr-defined]
        target=_alone, args=(payload, key, writer), name=f"tastypy task {key[:40]!r}"
    )
    process.start()
    writer.close()
    data = None
    try:
        # Wait for the outcome or the process's end, whichever comes first;
        # a task's own child processes may hold the pipe open after its end.
        ready = multiprocessing.connection.wait([reader, process.sentinel], timeout)
        if not ready:
            assert timeout is not None
            return timed_out(timeout, "its process was killed", rules)  # (killed below)
        if reader.poll():
            with suppress(EOFError, OSError):  # it died mid-send, or sent nothing
                data = reader.recv_bytes()
        process.join(_EXIT_GRACE if data is not None else None)
    finally:
        reader.close()
        if process.exitcode is None:
            process.kill()
        process.join()
    if data is not None:
        outcome: Outcome = pickle.loads(data)
        return outcome
    return _died(process.exitcode)


def _died(exitcode: int | None) -> Failure:
    if exitcode is not None and exitcode < 0:
        try:
            how = f"signal {-exitcode}, {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"signal {-exitcode}"
    else:
        how = f"exit code {exitcode}"
    message = (
        f"the worker process died ({how}) while running this task, alone (run again "
        "by itself after a worker died with this task in the pool)"
    )
    return Failure(_BROKEN, message, f"{_BROKEN}: {message}\n")


# -- in the worker processes ----------------------------------------------------------

_fn: Callable[[str], Any] | None = None
_rules: Rules = EVERY_ERROR
_load_error: Failure | None = None


def _start_worker(payload: bytes) -> None:
    """The pool's initializer: never raises (a raising initializer breaks the pool)."""
    global _fn, _rules, _load_error
    _as_a_worker()
    try:
        _fn, _rules = pickle.loads(payload)
    except BaseException as exc:
        _load_error = failure_of(exc)


def _load_failure() -> Failure | None:
    return _load_error


def _attempt_in_worker(key: str) -> Outcome:
    if _fn is None:
        return _load_error or Failure("RuntimeError", "fn was not loaded in this worker", "")
    return attempt(_fn, key, _rules)


def _as_a_worker() -> None:
    """Ctrl-C is the run's to handle; SIGTERM ends a worker, as it would any process.

    (A forked worker inherits the run's handlers: SIGTERM would only have
    set a stop flag in the worker's copy.)
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _alone(payload: bytes, key: str, writer: Connection) -> None:
    _as_a_worker()
    outcome: Outcome
    try:
        fn, rules = pickle.loads(payload)
    except BaseException as exc:
        outcome = failure_of(exc)
    else:
        outcome = attempt(fn, key, rules)
    writer.send_bytes(pickle.dumps(outcome))
    writer.close()
