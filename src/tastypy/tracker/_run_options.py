"""``run()``'s settings, checked before anything changes: where and how attempts run."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._attempt import Rules

__all__ = ["RunOptions"]


@dataclass(frozen=True)
class RunOptions:
    """Checked settings of one run."""

    how: str  # "processes", "threads", "executor" or "async"
    executor: Any  # the caller's executor, for "executor"
    workers: int
    timeout: float | None
    rules: Rules
    wait_for_retries: bool

    @property
    def pooled(self) -> bool:
        """Whether attempts run in a process pool (a time limit needs one to kill)."""
        return self.how == "processes" and (self.workers > 1 or self.timeout is not None)

    @classmethod
    def checked(
        cls,
        fn: Callable[..., Any],
        *,
        workers: object,
        executor: object,
        timeout: object,
        retry_on: object,
        giveup_on: object,
        wait_for_retries: object,
    ) -> RunOptions:
        """The options; ValueError or TypeError naming a bad one."""
        if type(workers) is not int or workers < 1:
            raise ValueError(f"workers must be a whole number >= 1, not {workers!r}")
        if type(wait_for_retries) is not bool:
            raise TypeError(f"wait_for_retries must be True or False, not {wait_for_retries!r}")
        rules = Rules(
            None if retry_on is None else _exception_types("retry_on", retry_on),
            () if giveup_on is None else _exception_types("giveup_on", giveup_on),
        )
        options = cls(
            _where(executor, fn),
            executor,
            workers,
            _checked_timeout(timeout),
            rules,
            wait_for_retries,
        )
        if options.how == "executor":
            import concurrent.futures as cf  # noqa: PLC0415  # imported already by the caller

            if isinstance(executor, cf.ProcessPoolExecutor):
                from ._pool import pickled_function  # noqa: PLC0415

                pickled_function(fn, workers, rules)  # a TypeError now, not one per task
        return options


def _checked_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < float("inf")
    ):
        raise ValueError(f"timeout must be a number of seconds > 0, or None, not {timeout!r}")
    return float(timeout)


def _exception_types(name: str, given: object) -> tuple[type[BaseException], ...]:
    types = given if isinstance(given, tuple) else (given,)
    for each in types:
        if not (isinstance(each, type) and issubclass(each, BaseException)):
            raise TypeError(f"{name} must be an exception type or a tuple of them, not {given!r}")
    return types  # checked above


def _is_async(fn: object) -> bool:
    """An ``async def`` function, an object with an async ``__call__``, or a partial of one."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(type(fn), "__call__", None)  # noqa: B004  # is the call async, not callable?
    )


def _where(executor: object, fn: Callable[..., Any]) -> str:
    """Where *fn* runs: ``"processes"``, ``"threads"``, ``"executor"`` or ``"async"``."""
    if _is_async(fn):
        if executor is not None:
            raise ValueError(
                f"fn is a coroutine function: it runs on an asyncio event loop, so give no "
                f"executor (not {executor!r})"
            )
        import asyncio  # noqa: PLC0415  # only for a coroutine function

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return "async"
        raise RuntimeError(
            "fn is a coroutine function, and run() runs it on an event loop of its own, "
            "but this thread runs one already (a Jupyter notebook, an async program): "
            "call run() from another thread, e.g. await asyncio.to_thread(tracker.run, fn)"
        )
    if executor is None or executor == "processes":
        return "processes"
    if executor == "threads":
        return "threads"
    if not isinstance(executor, str):
        import concurrent.futures as cf  # noqa: PLC0415  # only for a caller's executor

        if isinstance(executor, cf.Executor):
            return "executor"
    raise ValueError(
        'executor must be "processes", "threads" or a concurrent.futures.Executor, '
        f"not {executor!r}"
    )
