"""Sync every live store when the program ends, however it ends.

* normal exit, uncaught exception, ``KeyboardInterrupt``: an ``atexit`` hook;
* SIGTERM: our handler syncs, then hands over to the handler that was
  installed before it; if that was the default, it re-raises SIGTERM with the
  default action, so the process still dies "killed by SIGTERM";
* garbage collection: the store's own ``__del__`` (in :mod:`tastypy.pod`).

Signals only reach Python in the main thread, between bytecodes, so they can
interrupt a sync that the main thread is running. :func:`critical` marks such
stretches: SIGTERM and SIGINT arriving inside one are held back and delivered
when it ends, so a sync is never torn in memory by our own exit path.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from itertools import compress
from types import FrameType
from typing import Any, Protocol

from .storage import engines

__all__ = ["critical", "install_signal_handler", "register", "report", "sync_all"]

log = logging.getLogger(__name__)

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class ExitSyncable(Protocol):
    def _exit_sync(self, how: str = ...) -> None: ...

    def _forked(self) -> None: ...


# id -> weak reference; stores are mappings, hence unhashable, so no WeakSet.
_live: dict[int, weakref.ref[Any]] = {}
_previous_sigterm: _Handler = signal.SIG_DFL
_state = threading.local()  # .depth: nesting of critical() in this thread
_pending: list[int] = []
_handling_sigterm = False
exiting = False  # the at-exit sync ran: the interpreter is shutting down
EXIT_WAIT_SECONDS = 10.0  # an exit sync waits at most this long for another writer's commit


def register(store: ExitSyncable) -> None:
    """Sync *store* at exit and on SIGTERM for as long as it lives."""
    key = id(store)
    _live[key] = weakref.ref(store, lambda _ref: _live.pop(key, None))
    install_signal_handler()


def unregister(store: ExitSyncable) -> None:
    _live.pop(id(store), None)


def sync_all(how: str = "at exit") -> None:
    """Sync every live store; failures are reported on stderr, never raised."""
    global exiting
    if how == "at exit":
        exiting = True
    interrupted: BaseException | None = None
    for ref in list(_live.values()):
        store = ref()
        if store is None:
            continue
        try:
            store._exit_sync(how)
        except Exception as exc:  # _exit_sync reports its own failures; this is a bug
            report(f"tastypy: could not sync {store!r} {how}: {exc!r}")
        except KeyboardInterrupt as exc:
            # A Ctrl-C held back during one store's sync: that sync is done;
            # sync the others too, then let the interrupt go on.
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def report(line: str) -> None:
    """Tell the user, at exit, about data that could not be saved.

    Written straight to stderr, whatever the program's logging setup (the
    one place tastypy prints): at exit nobody may be left to read a log, and
    losing data silently is worse than one line of noise.
    """
    stream = sys.stderr
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):  # stderr closed: nothing more to do
        stream.write(line + "\n")
        stream.flush()


def install_signal_handler() -> None:
    """Put our SIGTERM handler in front of whatever is installed now.

    Only the main thread may install handlers; elsewhere this does nothing
    (the handler installed when tastypy was imported still covers us).
    """
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm:
        return
    _previous_sigterm = current
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _handling_sigterm
    if getattr(_state, "depth", 0):
        _pending.append(signum)  # mid-sync: finish it first
        return
    if _handling_sigterm:
        # A handler we chained to chained back to us: nothing further down.
        _die_by(signum)
        return
    _handling_sigterm = True
    try:
        sync_all("on SIGTERM")
        previous = _previous_sigterm
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # SIG_DFL, or installed outside Python
            _die_by(signum)
    finally:
        _handling_sigterm = False


def _die_by(signum: int) -> None:
    """End the process with the default action of *signum* (status -signum)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _defer(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)


try:  # the C module's getsignal is ten times faster: no enum conversion
    import _signal  # type: ignore[import-not-found]

    _getsignal: Callable[[int], Any] = _signal.getsignal
    _setsignal: Callable[[int, Any], Any] = _signal.signal
except ImportError:  # pragma: no cover - another interpreter
    _getsignal = signal.getsignal
    _setsignal = signal.signal
_CATCHABLE = [int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]


class critical:  # used as a function: ``with critical():``
    """Hold back every signal that has a Python handler while the block runs.

    Python runs signal handlers in the main thread, between any two
    bytecodes; one that raises (a ``SIGALRM`` timeout, Ctrl-C's
    ``KeyboardInterrupt``) or that writes to the store would otherwise land
    in the middle of a sync. Each is delivered, in order, when the block
    ends. Only the main thread needs this (and only it may set handlers).
    A class, not a generator: it runs at every sync and every claim.
    """

    __slots__ = ("_depth", "_held", "_outermost")

    def __enter__(self) -> None:
        depth = getattr(_state, "depth", 0)
        outermost = depth == 0 and threading.current_thread() is threading.main_thread()
        held: dict[int, Callable[[int, FrameType | None], Any]] = {}
        if outermost:
            # SIG_DFL and SIG_IGN are ints (and a handler set outside Python is
            # None): only callables are Python handlers. map() and compress()
            # keep the scan of every signal in C; Python looks only at the
            # few signals that have a handler.
            handlers = list(map(_getsignal, _CATCHABLE))
            for signum, handler in zip(
                compress(_CATCHABLE, map(callable, handlers)),
                compress(handlers, map(callable, handlers)),
                strict=True,
            ):
                if handler is not _on_sigterm and handler is not _defer:
                    held[signum] = handler
            for signum in held:
                _setsignal(signum, _defer)
        self._depth, self._held, self._outermost = depth, held, outermost
        _state.depth = depth + 1

    def __exit__(self, *exc_info: object) -> None:
        _state.depth = self._depth
        if self._outermost:
            held = self._held
            for signum, handler in held.items():
                _setsignal(signum, handler)
            _deliver_pending(held)


def _deliver_pending(held: dict[int, Callable[[int, FrameType | None], Any]]) -> None:
    # Every signal held back is delivered, SIGTERM first, even if a handler
    # raises (the default SIGINT handler raises KeyboardInterrupt): the first
    # exception goes on once all have been handled.
    raised: BaseException | None = None
    _pending.sort(key=lambda signum: signum != signal.SIGTERM)
    while _pending:
        signum = _pending.pop(0)
        try:
            if signum in held:
                held[signum](signum, None)
            elif signum == signal.SIGTERM:
                _on_sigterm(signum, None)
        except BaseException as exc:
            if raised is None:
                raised = exc
    if raised is not None:
        raise raised


def _give_up(waited: float) -> bool:
    """Whether a shared writer waiting for another's commit should stop waiting.

    Yes if a signal was held back meanwhile (Ctrl-C, SIGTERM: the program is
    asked to stop) or, at exit or on SIGTERM, once it has waited the exit's
    bound: an exit never hangs on another process.
    """
    if _pending:
        return True
    return (exiting or _handling_sigterm) and waited >= EXIT_WAIT_SECONDS


def _forget_in_child() -> None:
    # A forked child must never write its parent's stores, at its exit or
    # before: each refuses changes from now on (they could never be synced).
    for ref in list(_live.values()):
        store = ref()
        if store is not None:
            store._forked()
    _live.clear()
    _pending.clear()


atexit.register(sync_all)
os.register_at_fork(after_in_child=_forget_in_child)
install_signal_handler()


engines.set_give_up(_give_up)  # a shared writer's wait for the commit lock asks it
