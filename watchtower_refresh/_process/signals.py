"""SIGTERM: deliver what every handler holds, then let the signal do what it did before us.

Python's default SIGTERM action ends the process at once (``docker stop``, ECS, Kubernetes),
skipping logging's exit hook. ``install_sigterm_handler`` puts a handler in front that
delivers within ``SHUTDOWN_BUDGET`` seconds and then does what would have happened without
it: it calls the application's own handler, or ends the process as the default action does
(killed by SIGTERM, status 143), also when the process is PID 1 of its namespace, where the
default action does nothing. A SIGTERM ignored on purpose (``SIG_IGN``) stays ignored.

uvicorn restores the handler it found and raises the signal again after its graceful
shutdown, so what uvicorn logs while stopping is delivered by the handler installed here.
A forked child whose SIGTERM was changed after the fork (gunicorn's workers reset every
signal; uvicorn's worker then installs its own over the default) gets ours back in front
at its first delivery: see ``check_sigterm_after_fork``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn

from .._compat import holds_logging_lock
from .._report import records
from .lifecycle import Lifecycle, at_fork, close_all, flush_all, one_report_line, report

__all__ = [
    "SHUTDOWN_BUDGET",
    "check_sigterm_after_fork",
    "holding_sigterm",
    "install_sigterm_handler",
    "keep_sigterm_off_this_thread",
    "leave_sigterm_alone_in_this_child",
    "live_handlers",
    "pass_on_deferred",
    "settle",
    "step_aside",
    "watch",
]

SHUTDOWN_BUDGET = 8.0
"""Seconds that SIGTERM gives delivery, at most: docker waits 10 s before SIGKILL, ECS and
Kubernetes 30 s; the rest is left to the application's own shutdown."""

_JOIN_MARGIN = 3.0  # seconds past the budget a stuck close() may take before we stop waiting

_SignalHandler = Callable[[int, FrameType | None], Any]

_live: Callable[[], Sequence[Lifecycle]] = list
_wanted = False  # a handler asked for our SIGTERM handler (handle_signals)
# Main thread only: a SIGTERM handler or an exit hook is delivering. A SIGTERM that comes
# then waits in _deferred: starting a second delivery from inside the first could wait on a
# lock the interrupted one holds.
_busy = False
_deferred: list[tuple[_OnSigterm, int]] = []
# SIGTERM's action in the parent at the last fork; in a child, _check_pending says the first
# delivery still has to look whether it was changed since.
_at_fork: object = None
_check_pending = False


def watch(live: Callable[[], Sequence[Lifecycle]], *, handle_signals: bool) -> None:
    """Deliver the handlers ``live()`` returns on SIGTERM; ``handle_signals``: install ours."""
    global _live, _wanted
    _live = live
    _wanted = _wanted or handle_signals


def live_handlers() -> Sequence[Lifecycle]:
    """The handlers SIGTERM and a pool worker's end deliver."""
    return _live()


# --------------------------------------------------------------------------- deferred


@contextlib.contextmanager
def holding_sigterm() -> Iterator[None]:
    """Within the block a SIGTERM waits, and is passed on by ``pass_on_deferred``."""
    global _busy
    _busy = True
    try:
        yield
    finally:
        _busy = False


def pass_on_deferred() -> None:
    """Handle the SIGTERMs that came while a delivery was under way, one by one."""
    while _deferred:
        handler, signum = _deferred.pop(0)
        handler(signum, None)


# --------------------------------------------------------------------------- the handler


class _OnSigterm:
    """Our SIGTERM handler: deliver, then pass the signal on to what was there before us.

    With ``synchronous_after``, every handler then sends each record before its logging
    call returns: the handler we pass the signal on to may end the process in a way we
    cannot see (uvicorn restores the default action it found and raises SIGTERM again), and
    what is logged while it stops would be lost in a queue.
    """

    __slots__ = ("previous", "synchronous_after")

    def __init__(self, previous: _SignalHandler | int, *, synchronous_after: bool = False) -> None:
        self.previous = previous
        self.synchronous_after = synchronous_after

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if _busy:
            _deferred.append((self, signum))  # passed on once that delivery is over
            return
        previous = self.previous
        if self.synchronous_after:
            for handler in _live():
                handler.send_synchronously()
        with holding_sigterm():
            _settle_in_background(f"signal {signum}", close=not callable(previous))
        if callable(previous):
            previous(signum, frame)
            pass_on_deferred()
            return
        _end_as_default(signum)  # pragma: no cover - ends the process (test_signals's workers)

    def __repr__(self) -> str:
        return f"<watchtower_refresh SIGTERM handler, then {self.previous!r}>"


def install_sigterm_handler() -> bool:
    """Deliver every handler's records on SIGTERM, then let the signal do what it did.

    Every handler's constructor calls this (unless ``handle_signals=False``); a forked
    child whose SIGTERM handler was changed after the fork gets it back at its first
    delivery (gunicorn's uvicorn worker with ``--preload``). Call it yourself where a
    framework resets SIGTERM after logging is configured and before it installs its own,
    such as that worker (in a ``post_worker_init`` hook), to keep records in batches while
    the worker stops.

    Works from the main thread only, and is idempotent. The current handler is kept and
    called after delivery: the application's own handler, whether it was installed before
    this call or (on a later call) after an earlier one. With the default action, the
    process then ends as it would have (status 143, PID 1 included). ``SIG_IGN``, and a
    handler not installed from Python, are left alone.

    Returns:
        True if our handler is the current one.
    """
    return _install(synchronous_after=False)


def _install(*, synchronous_after: bool) -> bool:
    global _check_pending
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        current = signal.getsignal(signal.SIGTERM)
        if not isinstance(current, _OnSigterm):
            if current is None or current == signal.SIG_IGN:
                return False  # ignored on purpose, or set outside Python: not ours to change
            synchronous_after = synchronous_after and callable(current)
            signal.signal(signal.SIGTERM, _OnSigterm(current, synchronous_after=synchronous_after))
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return False
    # Ours is current since the fork (a post_worker_init hook, say): a server that installs
    # its own over it restores ours when it stops, and records keep their batches.
    _check_pending = False
    return True


def step_aside() -> None:
    """Give SIGTERM back the action that was there before our handler, if ours is current."""
    with contextlib.suppress(ValueError, OSError):
        current = signal.getsignal(signal.SIGTERM)
        if isinstance(current, _OnSigterm):
            signal.signal(signal.SIGTERM, current.previous)


def keep_sigterm_off_this_thread() -> None:
    """Block SIGTERM in the calling thread, one of ours, so the kernel hands it to another.

    Python runs signal handlers on the main thread only, when it next runs bytecode. If
    the kernel delivers SIGTERM to another thread while the main thread waits on a lock
    (a ``multiprocessing.Pool`` worker waiting for a task, which ``Pool.terminate()``
    then waits for), the main thread never wakes to run our handler: the process would
    outlive the SIGTERM that used to end it. Every thread this package starts calls this
    first; the main thread never blocks SIGTERM.
    """
    if threading.current_thread() is threading.main_thread():
        return
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no pthread_sigmask
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _end_as_default(signum: int) -> NoReturn:  # pragma: no cover - ends the process
    """End the process as the default action of ``signum`` does, also as PID 1."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    # Still here: PID 1 of a PID namespace, to which the default action does not apply.
    # Exit with the status a shell or a container runtime reports for that signal.
    os._exit(128 + signum)


# --------------------------------------------------------------------------- delivery


def settle(reason: str, *, close: bool, budget: float | None = None) -> int:
    """Deliver what every live handler holds, within one shared deadline.

    Every handler is woken first, then waited for; with ``close`` each is closed, which
    counts what it could not deliver as ``shutdown``, and one line on stderr says how many,
    and whether they are kept in the spool for a later process.

    Args:
        reason: What ends the process, for that line.
        close: Close the handlers (the process is ending).
        budget: Seconds to wait in all; default the smaller of ``SHUTDOWN_BUDGET`` and the
            largest ``flush_timeout``.

    Returns:
        How many records were left undelivered (0 without ``close``).
    """
    handlers = list(_live())
    if not handlers:
        return 0
    if budget is None:
        budget = min(SHUTDOWN_BUDGET, max(h.flush_timeout for h in handlers))
    if not close:
        flush_all(budget, handlers)  # every sender woken at once, then one shared deadline
        return 0
    before = sum(_shutdown_count(h) for h in handlers)
    # Read before the close, which may close a spool writer: when every record held is on
    # disk too, whatever the close cannot deliver stays there for the next process.
    on_disk = all(h.kept_in_spool >= h.stats.queued for h in handlers)
    with one_report_line():
        close_all(handlers, time.monotonic() + budget)
    left = sum(_shutdown_count(h) + int(h.stats.queued) for h in handlers) - before
    if left > 0:
        report(_left_line(reason, left, budget, kept=on_disk))
    return left


def _left_line(reason: str, left: int, budget: float, *, kept: bool) -> str:
    """The stderr line for ``left`` records not delivered; ``kept``: all are in a spool."""
    if kept:
        return (
            f"{reason}: {records(left)} not delivered within {budget:g} s "
            f"{'is' if left == 1 else 'are'} kept in the spool: the next process that uses it "
            "delivers them"
        )
    return (
        f"{reason}: {records(left)} not delivered within {budget:g} s, "
        "counted in stats.dropped['shutdown']"
    )


def _shutdown_count(handler: Lifecycle) -> int:
    return int(handler.stats.dropped.get("shutdown", 0))


def _settle_in_background(reason: str, *, close: bool) -> None:
    """Run ``settle`` on a thread of its own and wait for it, a bounded time.

    A signal handler runs between two bytecodes of the main thread, which may hold a lock
    that delivery needs (a handler's, logging's): waiting on another thread keeps that from
    turning into a hang; the process then ends at the deadline all the same.
    """

    if holds_logging_lock() or any(handler.held_here() for handler in _live()):
        # Interrupted while holding a lock delivery needs (logging's, in getLogger or
        # dictConfig; a handler's ledger lock, around a thread start): a thread of ours
        # would wait for it until the budget is gone. Both are re-entrant: deliver from here.
        settle(reason, close=close)
        return

    def run() -> None:
        keep_sigterm_off_this_thread()
        settle(reason, close=close)

    worker = threading.Thread(
        target=run,
        name="watchtower-refresh-stop",
        daemon=True,  # if it is stuck, the application's own exit must not wait for it
    )
    try:
        worker.start()
    except RuntimeError:  # the interpreter is finalizing: no thread can start
        settle(reason, close=close)
        return
    worker.join(SHUTDOWN_BUDGET + _JOIN_MARGIN)
    if worker.is_alive():
        report(
            f"{reason}: delivery did not finish within "
            f"{SHUTDOWN_BUDGET + _JOIN_MARGIN:g} s; records still queued are lost"
        )


# --------------------------------------------------------------------------- forks


def _before_fork() -> None:
    global _at_fork
    _at_fork = signal.getsignal(signal.SIGTERM)


def _after_fork_in_child() -> None:
    global _busy, _check_pending
    _busy = False
    _deferred.clear()
    _check_pending = _wanted


def leave_sigterm_alone_in_this_child() -> None:
    """This child's end is arranged otherwise (a pool's): ``check_sigterm_after_fork``
    leaves its SIGTERM as it finds it."""
    global _check_pending
    _check_pending = False


def check_sigterm_after_fork() -> None:
    """In a forked child, the first time a handler starts delivering: put our SIGTERM
    handler back in front if the child's was changed since the fork.

    gunicorn's workers reset every signal to the default after the fork; uvicorn's worker
    then installs its own, and after its graceful shutdown restores the default it found
    and raises SIGTERM again: what the worker logged while stopping, still queued, was
    lost. Ours goes in front of the current handler, which it calls after delivery, and
    has every handler send each later record before its logging call returns. A child
    that put ours back itself since the fork (``install_sigterm_handler`` in gunicorn's
    ``post_worker_init``) is left as it is. From another thread than the main one nothing
    can be installed: one line on stderr says so.
    """
    global _check_pending
    if not _check_pending:
        return
    _check_pending = False
    current = signal.getsignal(signal.SIGTERM)
    if isinstance(current, _OnSigterm) or current is None or current == signal.SIG_IGN:
        return
    if current == _at_fork or _install(synchronous_after=True):
        return  # as the parent left it, or ours is back
    report(
        f"SIGTERM's handler was changed in process {os.getpid()} after it was forked, and "
        "it could not be put back from this thread: records it logs while it stops may be "
        "lost. Call watchtower_refresh.install_sigterm_handler() in it from the main thread "
        "(gunicorn: in a post_worker_init hook)"
    )


at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
