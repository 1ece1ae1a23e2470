"""One attempt at a task, as plain data that any process can send and receive.

A task can raise anything, exit, or return anything. What comes out of
:func:`attempt` is a :class:`Success` (the result already encoded as JSON) or
a :class:`Failure` (the exception as text, formatted where it was raised):
only strings, bytes and floats, which pickle always carries back from a
worker process, whatever the task's own objects do to pickle.
"""

from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .._codec import encode_value

__all__ = [
    "EVERY_ERROR",
    "MESSAGE_CHARS",
    "NOT_A_STOP",
    "TRACEBACK_CHARS",
    "Failure",
    "Rules",
    "Success",
    "attempt",
    "awaitable_failure",
    "failure_of",
    "result_failure",
    "timed_out",
]

# What a task's own code may raise, even from a __str__ or a result's items():
# everything but KeyboardInterrupt, which the run tells apart itself.
NOT_A_STOP = (Exception, SystemExit, GeneratorExit)
TRACEBACK_CHARS = 4000
MESSAGE_CHARS = 1000


@dataclass(frozen=True)
class Success:
    """The task returned: its result as JSON, and the seconds the call took."""

    data: bytes
    seconds: float


@dataclass(frozen=True)
class Failure:
    """The attempt failed: the exception's type name, message and traceback, as text."""

    type: str
    message: str
    traceback: str
    timed_out: bool = False  # ran over the run's time limit (``timed_out``)
    give_up: bool = False  # not worth another try (``giveup_on``, or not ``retry_on``)


def failure_of(exc: BaseException) -> Failure:
    """*exc* as text, cut to the lengths a task record keeps.

    Never raises, whatever the exception's ``__str__`` does.
    """
    name = type(exc).__name__
    try:
        message = str(exc)
    except NOT_A_STOP:  # a hostile __str__ must not cost the record, nor end the run
        message = f"<{name} whose str() failed>"
    try:
        text = "".join(traceback.format_exception(exc))
    except NOT_A_STOP:
        text = f"{name}: {message}\n"
    return Failure(name, message[:MESSAGE_CHARS], text[-TRACEBACK_CHARS:])


@dataclass(frozen=True)
class Rules:
    """Which exceptions are worth another try: ``run()``'s ``retry_on`` and ``giveup_on``."""

    retry_on: tuple[type[BaseException], ...] | None = None  # None: every exception
    giveup_on: tuple[type[BaseException], ...] = ()

    def give_up(self, exc: BaseException) -> bool:
        """Whether *exc* ends the task for good."""
        if self.giveup_on and isinstance(exc, self.giveup_on):
            return True
        return self.retry_on is not None and not isinstance(exc, self.retry_on)

    def judged(self, failure: Failure, exc: BaseException) -> Failure:
        """*failure* (of *exc*), marked to give up if the rules say so."""
        if not self.give_up(exc):
            return failure
        return replace(failure, give_up=True)


EVERY_ERROR = Rules()


def result_failure(exc: BaseException) -> Failure:
    """The failure of a task whose return value JSON cannot hold."""
    message = f"fn returned a value JSON cannot hold: {failure_of(exc).message}"
    return Failure("TypeError", message[:MESSAGE_CHARS], f"TypeError: {message}\n")


def attempt(fn: Callable[[str], Any], key: str, rules: Rules = EVERY_ERROR) -> Success | Failure:
    """Call ``fn(key)`` and encode its result; never raises.

    For a worker process, where nothing the task does may escape: exceptions
    of every kind (``SystemExit`` and ``KeyboardInterrupt`` too) become a
    :class:`Failure`. The process that handles the run's signals calls *fn*
    itself instead, to tell the task's own ``KeyboardInterrupt`` from Ctrl-C.
    """
    started = time.perf_counter()
    try:
        result = fn(key)
    except BaseException as exc:
        return rules.judged(failure_of(exc), exc)
    seconds = time.perf_counter() - started
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # never awaited: no warning about it
        return rules.judged(awaitable_failure(), TypeError())
    try:
        data = encode_value(result, keep=False)
    except NOT_A_STOP as exc:  # TypeError, or whatever a hostile value raises
        return rules.judged(result_failure(exc), exc)
    return Success(data, seconds)


def awaitable_failure() -> Failure:
    """The failure of a plain function that returned a coroutine (or another awaitable)."""
    message = (
        "fn returned an awaitable, which run() does not await: make fn an async def "
        "function (run() then runs it on an event loop)"
    )
    return Failure("TypeError", message, f"TypeError: {message}\n")


def timed_out(timeout: float, how: str, rules: Rules = EVERY_ERROR) -> Failure:
    """The failure of an attempt that ran over its time limit of *timeout* seconds."""
    message = f"the task ran over its time limit of {timeout:g} s; {how}"
    failure = Failure("TimeoutError", message, f"TimeoutError: {message}\n", timed_out=True)
    return rules.judged(failure, TimeoutError(message))
