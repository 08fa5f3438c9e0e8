"""Process-wide state shared by every handler: which threads deliver, which handlers are
alive, forks, and how far the interpreter is on its way out.

This module holds the package's only ``os.register_at_fork``: every other module registers
its fork hooks with ``at_fork``, so the order they run in is written down in one place.

The interpreter's exit goes through three phases that matter to a handler:

1. running: records are queued and sent by each handler's sender threads;
2. exiting, once our ``atexit`` hook has run (it runs before ``logging.shutdown``, which was
   registered first): every handler has been flushed and closed within its
   ``flush_timeout``; a record logged later (by another atexit hook, say) is sent from the
   caller's thread, within what is left of that budget, and no thread is started;
3. finalizing (``sys.is_finalizing()``): no thread can start (``Thread.start()`` blocks
   forever on 3.10 and 3.11) and calling into botocore can crash the interpreter (3.13), so
   a record is counted as ``shutdown`` and one line on stderr says so.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._core.ledger import DeliveryStats

__all__ = [
    "Flushable",
    "Lifecycle",
    "at_fork",
    "close_all",
    "delivering",
    "exit_deadline",
    "exiting",
    "finalizing",
    "flush_all",
    "live",
    "mark_delivery_thread",
    "one_report_line",
    "register",
    "report",
    "summarizing",
    "thread_state",
]


class Flushable(Protocol):
    """What ``flush_all`` needs from a handler."""

    def request_flush(self) -> int:
        """Ask the sender to send everything now; return the admission number to wait for."""

    def wait_flushed(self, target: int, deadline: float) -> bool:
        """Wait until ``target`` is settled or the monotonic ``deadline`` passes."""


class Lifecycle(Flushable, Protocol):
    """What the process needs from each live handler."""

    def close(self) -> None:
        """Deliver what is held within ``flush_timeout`` and stop."""

    def close_by(self, deadline: float) -> None:
        """Deliver what is held until the monotonic ``deadline`` and stop."""

    @property
    def flush_timeout(self) -> float:
        """Seconds ``close()`` waits for delivery."""

    @property
    def stats(self) -> DeliveryStats:
        """What became of the records given to the handler so far."""

    @property
    def kept_in_spool(self) -> int:
        """Records this process wrote to its spool and has not acknowledged: a later
        process delivers them (0 without a spool)."""

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child: the parent keeps and delivers what it held."""

    def held_here(self) -> bool:
        """Whether this thread holds the lock delivery needs (a signal interrupted it)."""

    def send_synchronously(self) -> None:
        """From now on, send each record before its logging call returns.

        For a process that may end without notice (a pool worker, one whose SIGTERM may be
        taken back by a server as it stops): what is already queued is still sent by the
        sender.
        """


class _Local(threading.local):
    # Class attributes: a getattr() default on a threading.local costs ten times more.
    delivering = False
    """This thread is sending logs: records it logs are not handled (or are deferred)."""
    deferred: list[tuple[Any, Any]] | None = None
    """Records logged by a signal handler during a put from this thread, handled after it."""
    sync_deadline: float | None = None
    """While this thread sends those deferred records: when its caller's log call must return
    (monotonic seconds); later ones are queued for the background sender instead."""


thread_state = _Local()
"""This thread's delivery state, read by every handler's ``handle()``."""
_live: weakref.WeakSet[Lifecycle] = weakref.WeakSet()
_exit_started: float | None = None
_exit_closed: float | None = None
_EXIT_BUDGET = 10.0  # seconds for records logged after our atexit hook, all handlers together


def mark_delivery_thread() -> None:
    """Mark this thread as one that delivers logs: records it logs are not handled.

    botocore and urllib3 log while we send; handling those records would recurse.
    """
    thread_state.delivering = True


@contextlib.contextmanager
def delivering() -> Iterator[None]:
    """Mark the caller's thread as delivering for the duration of the block."""
    before = thread_state.delivering
    thread_state.delivering = True
    try:
        yield
    finally:
        thread_state.delivering = before


def register(handler: Lifecycle) -> None:
    """Track ``handler`` for exit, fork and ``flush_all``."""
    _live.add(handler)


def live() -> list[Lifecycle]:
    """Every handler alive in this process."""
    return list(_live)


def flush_all(timeout: float, handlers: Iterable[Flushable] | None = None) -> bool:
    """Flush every live handler at once, on one shared deadline of ``timeout`` seconds.

    Every sender is asked first, then each is waited for until the same deadline, so one
    stuck handler never eats the others' time.
    """
    chosen = list(handlers if handlers is not None else _live)
    deadline = time.monotonic() + max(0.0, timeout)
    targets = [(handler, handler.request_flush()) for handler in chosen]
    done = True
    for handler, target in targets:
        done = handler.wait_flushed(target, deadline) and done
    return done


def close_all(handlers: Iterable[Lifecycle], deadline: float) -> None:
    """Close ``handlers`` on one shared monotonic ``deadline``: every sender is asked to
    send at once, then each handler is closed, so one stuck handler never eats the others'
    time. What a handler cannot deliver by then is counted as ``shutdown``."""
    chosen = list(handlers)
    for handler in chosen:
        handler.request_flush()
    for handler in chosen:
        handler.close_by(deadline)


def exiting() -> bool:
    """Whether our exit hook has run or the interpreter is finalizing."""
    return _exit_started is not None or sys.is_finalizing()


def finalizing() -> bool:
    """Whether the interpreter is finalizing: no thread may start, no AWS call be made."""
    return sys.is_finalizing()


def exit_deadline() -> float:
    """The monotonic time until which records logged during exit may still be sent."""
    closed = _exit_closed if _exit_closed is not None else time.monotonic()
    return closed + _EXIT_BUDGET


def report(line: str) -> None:
    """Write one line to stderr, whatever state the interpreter is in."""
    with contextlib.suppress(Exception):
        sys.stderr.write(f"watchtower-refresh: {line}\n")
        sys.stderr.flush()


_summarizing = 0  # > 0 while a caller reports every handler's losses in one line of its own


@contextlib.contextmanager
def one_report_line() -> Iterator[None]:
    """Within the block, handlers leave reporting their losses to the caller's one line."""
    global _summarizing
    _summarizing += 1
    try:
        yield
    finally:
        _summarizing -= 1


def summarizing() -> bool:
    """Whether a caller will report every handler's losses in one line (``one_report_line``)."""
    return _summarizing > 0


def _at_exit() -> None:
    global _exit_started, _exit_closed
    _exit_started = time.monotonic()  # records logged from now on take the exit path
    handlers = list(_live)
    if handlers:
        close_all(handlers, time.monotonic() + max(h.flush_timeout for h in handlers))
    _exit_closed = time.monotonic()


# --------------------------------------------------------------------------- forks

_Hook = Callable[[], None]
_before_fork: list[_Hook] = []
_after_fork_in_child: list[_Hook] = []


def at_fork(*, before: _Hook | None = None, after_in_child: _Hook | None = None) -> None:
    """Register hooks to run around ``os.fork()``, as ``os.register_at_fork`` does.

    The order is defined, as ``os.register_at_fork`` defines its own: ``before`` hooks run
    in the parent in the reverse order of registration, ``after_in_child`` hooks in the
    child in the order of registration. This module's own child hook, registered first,
    runs first: every handler starts afresh before any other module's hook runs. A hook
    that raises is reported on stderr and the others still run.

    Args:
        before: Called in the parent just before the fork.
        after_in_child: Called in the child just after the fork, on the forking thread.
    """
    if before is not None:
        _before_fork.append(before)
    if after_in_child is not None:
        _after_fork_in_child.append(after_in_child)


def _run(hooks: Iterable[_Hook]) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception as exc:  # a fork must go on: the other hooks still run
            report(f"a fork hook failed: {exc!r}")


def _reset_handlers_in_child() -> None:
    for handler in list(_live):
        handler.after_fork_in_child()


at_fork(after_in_child=_reset_handlers_in_child)
# Registered after logging's own hook, so it runs before logging.shutdown.
atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _run(reversed(_before_fork)),
        after_in_child=lambda: _run(list(_after_fork_in_child)),
    )
