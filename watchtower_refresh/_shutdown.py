"""Delivery when a process is told to stop: SIGTERM, pool workers, Celery's prefork children.

Records wait in memory for up to ``send_interval`` seconds. A clean interpreter exit sends
them (logging's exit hook closes every handler), but several common endings skip that hook:

- Python's default SIGTERM action ends the process at once (``docker stop``, ECS, Kubernetes).
  ``install_sigterm_handler`` puts a handler in front that delivers within ``SHUTDOWN_BUDGET``
  seconds and then does what would have happened without it: it calls the application's own
  handler, or ends the process as the default action does (killed by SIGTERM, status 143),
  also when the process is PID 1 of its namespace, where the default action does nothing.
  A SIGTERM ignored on purpose (``SIG_IGN``) stays ignored.
- uvicorn restores the handler it found and raises the signal again after its graceful
  shutdown, so what uvicorn logs while stopping is delivered by the handler installed here.
- ``multiprocessing`` children end with ``os._exit`` after running their finalizers: one of
  them closes the handlers.
- Pool workers end without notice: ``Pool.terminate()`` sends them SIGTERM, and billiard's
  end with ``os._exit`` without finalizers. In them each record is sent before its logging
  call returns (``use_queues=False``), and SIGTERM ends them at once, as it did. Celery's
  prefork children are billiard's too, but Celery sends ``worker_process_shutdown`` in each
  before it exits, recycling by ``--max-tasks-per-child`` included: the handlers are closed
  then, and they keep batching.

None of multiprocessing, billiard or Celery is imported here: each hook is set up only once
the application has imported the library.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn

from ._compat import holds_logging_lock, register_multiprocessing_after_fork
from ._process import Lifecycle, close_all, flush_all, one_report_line, report

__all__ = [
    "SHUTDOWN_BUDGET",
    "arrange",
    "install_sigterm_handler",
    "keep_sigterm_off_this_thread",
    "settle",
]

SHUTDOWN_BUDGET = 8.0
"""Seconds that SIGTERM gives delivery, at most: docker waits 10 s before SIGKILL, ECS and
Kubernetes 30 s; the rest is left to the application's own shutdown."""

_JOIN_MARGIN = 3.0  # seconds past the budget a stuck close() may take before we stop waiting
_CELERY_UID = "watchtower_refresh.close_handlers"


_SignalHandler = Callable[[int, FrameType | None], Any]

_live: Callable[[], Sequence[Lifecycle]] = list
_arranged = False
_billiard_parent: object = None  # billiard's current process just before a fork
# Main thread only: a SIGTERM handler or an exit hook is delivering. A SIGTERM that comes
# then waits in _deferred: starting a second delivery from inside the first could wait on a
# lock the interrupted one holds.
_busy = False
_deferred: list[tuple[_OnSigterm, int]] = []


def arrange(live: Callable[[], Sequence[Lifecycle]], *, handle_signals: bool = True) -> None:
    """Arrange that the handlers ``live()`` returns are delivered however the process ends.

    Called by every handler's constructor; cheap and idempotent. The fork hooks are set once
    per process; the SIGTERM handler, with ``handle_signals``, on every call from the main
    thread, so one that the application installed since is chained to from then on.

    Args:
        live: Returns every handler alive in the process.
        handle_signals: Also install the SIGTERM handler (main thread only).
    """
    global _live, _arranged
    _live = live
    if not _arranged:
        _arranged = True
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    _hook_multiprocessing()
    _hook_celery(may_import=True)
    if handle_signals:
        install_sigterm_handler()


# --------------------------------------------------------------------------- SIGTERM


@contextlib.contextmanager
def _delivering() -> Iterator[None]:
    global _busy
    _busy = True
    try:
        yield
    finally:
        _busy = False


def _pass_on_deferred() -> None:
    """Handle the SIGTERMs that came while a delivery was under way, one by one."""
    while _deferred:
        handler, signum = _deferred.pop(0)
        handler(signum, None)


class _OnSigterm:
    """Our SIGTERM handler: deliver, then pass the signal on to what was there before us."""

    __slots__ = ("previous",)

    def __init__(self, previous: _SignalHandler | int) -> None:
        self.previous = previous

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if _busy:
            _deferred.append((self, signum))  # passed on once that delivery is over
            return
        previous = self.previous
        with _delivering():
            _settle_in_background(f"signal {signum}", close=not callable(previous))
        if callable(previous):
            previous(signum, frame)
            _pass_on_deferred()
            return
        _end_as_default(signum)  # pragma: no cover - ends the process (test_shutdown's workers)

    def __repr__(self) -> str:
        return f"<watchtower_refresh SIGTERM handler, then {self.previous!r}>"


def install_sigterm_handler() -> bool:
    """Deliver every handler's records on SIGTERM, then let the signal do what it did.

    Every handler's constructor calls this (unless ``handle_signals=False``); call it
    yourself where a framework resets SIGTERM after logging is configured, such as
    gunicorn's uvicorn worker with ``--preload`` (in a ``post_worker_init`` hook).

    Works from the main thread only, and is idempotent. The current handler is kept and
    called after delivery: the application's own handler, whether it was installed before
    this call or (on a later call) after an earlier one. With the default action, the
    process then ends as it would have (status 143, PID 1 included). ``SIG_IGN``, and a
    handler not installed from Python, are left alone.

    Returns:
        True if our handler is the current one.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        current = signal.getsignal(signal.SIGTERM)
        if isinstance(current, _OnSigterm):
            return True
        if current is None or current == signal.SIG_IGN:
            return False  # ignored on purpose, or set outside Python: not ours to change
        signal.signal(signal.SIGTERM, _OnSigterm(current))
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return False
    return True


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
    counts what it could not deliver as ``shutdown``, and one line on stderr says how many.

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
    with one_report_line():
        close_all(handlers, time.monotonic() + budget)
    left = sum(_shutdown_count(h) + int(h.stats.queued) for h in handlers) - before
    if left > 0:
        report(
            f"{reason}: {left} records not delivered within "
            f"{budget:g} s, counted in stats.dropped['shutdown']"
        )
    return left


def _shutdown_count(handler: Lifecycle) -> int:
    return int(handler.stats.dropped.get("shutdown", 0))


def _settle_in_background(reason: str, *, close: bool) -> None:
    """Run ``settle`` on a thread of its own and wait for it, a bounded time.

    A signal handler runs between two bytecodes of the main thread, which may hold a lock
    that delivery needs (a handler's, logging's): waiting on another thread keeps that from
    turning into a hang; the process then ends at the deadline all the same.
    """

    if holds_logging_lock() or any(handler._held_here() for handler in _live()):
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


# --------------------------------------------------------------------------- pools


class _ForkToken:
    """What multiprocessing's after-fork registry holds a weak reference to."""


_FORK_TOKEN = _ForkToken()
_hooked_registries: set[int] = set()


def _hook_multiprocessing() -> None:
    """Close our handlers in every child multiprocessing (or billiard) starts, at its end.

    Such a child ends with ``os._exit``, which skips logging's exit hook; multiprocessing
    runs its finalizers first, so one of them delivers what the child queued. billiard
    shares multiprocessing's registry; registered once per registry, which would otherwise
    grow with every handler.
    """
    for name in ("multiprocessing.util", "billiard.util"):
        registry = getattr(sys.modules.get(name), "register_after_fork", None)
        if registry is None or id(registry) in _hooked_registries:
            continue
        if register_multiprocessing_after_fork(
            name, _FORK_TOKEN, _close_at_child_exit, also=_prepare_pool_worker
        ):
            _hooked_registries.add(id(registry))


def _close_at_child_exit() -> None:  # pragma: no cover - runs as a forked child exits
    # Pool.terminate() may send SIGTERM right now: it waits until this is done.
    with _delivering():
        settle("child process exit", close=True)
    _pass_on_deferred()


def _before_fork() -> None:
    global _billiard_parent
    process = sys.modules.get("billiard.process")
    _billiard_parent = process.current_process() if process is not None else None
    # The application may have imported these after its handlers were made; Celery forks
    # its prefork children only after it is imported.
    _hook_multiprocessing()
    _hook_celery(may_import=False)


def _after_fork_in_child() -> None:
    global _busy
    _busy = False
    _deferred.clear()


def _prepare_pool_worker() -> None:
    """In a pool worker, send each record before its logging call returns.

    Pool workers end without notice: ``multiprocessing.Pool.terminate()`` (so ``with
    Pool()``) sends them SIGTERM while they wait for a task, and billiard's end with
    ``os._exit`` without finalizers (after ``close()`` too) and replace our SIGTERM handler
    with theirs. A SIGTERM handler in Python cannot be relied on there: one that comes just
    before the worker blocks on the task queue's lock is never run, and the worker would
    outlive ``terminate()``, which waits for it. So such a worker gets SIGTERM's previous
    action back (it dies at once, as without us) and sends synchronously: right after the
    fork nothing is queued in it yet, so switching to ``use_queues=False`` loses nothing.
    Celery's children are billiard workers too, but Celery's ``worker_process_shutdown``
    closes their handlers at their end: they keep batching.
    """
    if not (_in_multiprocessing_pool_worker() or _in_billiard_worker()):
        return
    with contextlib.suppress(ValueError, OSError):
        current = signal.getsignal(signal.SIGTERM)
        if isinstance(current, _OnSigterm):
            signal.signal(signal.SIGTERM, current.previous)
    for handler in _live():
        with contextlib.suppress(AttributeError):
            handler.use_queues = False  # type: ignore[attr-defined]


def _in_multiprocessing_pool_worker() -> bool:
    process = sys.modules.get("multiprocessing.process")
    # Pool names its workers ForkPoolWorker-N (SpawnPoolWorker-N, ForkServerPoolWorker-N).
    return process is not None and "PoolWorker" in process.current_process().name


def _in_billiard_worker() -> bool:
    process = sys.modules.get("billiard.process")
    if process is None or _billiard_parent is None:
        return False
    if process.current_process() is _billiard_parent:
        return False  # started by multiprocessing, or by os.fork
    return "celery.concurrency.prefork" not in sys.modules


# --------------------------------------------------------------------------- Celery


def _hook_celery(*, may_import: bool) -> None:
    """Close the handlers when a Celery prefork child exits, once Celery is imported.

    ``celery.signals`` is imported only when the application has imported ``celery``, and
    never just before a fork (``may_import=False``), where the worker has it already.
    """
    signals = sys.modules.get("celery.signals")
    if signals is None:
        if not may_import or "celery" not in sys.modules:
            return
        try:
            signals = importlib.import_module("celery.signals")
        except Exception:  # a broken or unrelated "celery" module: nothing to hook
            return
    # dispatch_uid makes connecting again a no-op; a module function is never collected.
    signals.worker_process_shutdown.connect(
        _on_worker_process_shutdown, weak=False, dispatch_uid=_CELERY_UID
    )


def _on_worker_process_shutdown(sender: object = None, **kwargs: Any) -> None:
    with _delivering():
        settle("Celery worker process exit", close=True)
    _pass_on_deferred()
