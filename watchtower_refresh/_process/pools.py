"""Delivery in the children of multiprocessing, billiard and Celery, which end without notice.

- ``multiprocessing`` children end with ``os._exit`` after running their finalizers: one of
  them closes the handlers.
- Pool workers end without notice: ``Pool.terminate()`` sends them SIGTERM, and billiard's
  end with ``os._exit`` without finalizers. In them each record is sent before its logging
  call returns (``send_synchronously``), and SIGTERM ends them at once, as it did. Celery's
  prefork children are billiard's too, but Celery sends ``worker_process_shutdown`` in each
  before it exits, recycling by ``--max-tasks-per-child`` included: the handlers are closed
  then, and they keep batching.

None of multiprocessing, billiard or Celery is imported here: each hook is set up only once
the application has imported the library.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .._compat import register_multiprocessing_after_fork
from .lifecycle import at_fork
from .signals import (
    holding_sigterm,
    leave_sigterm_alone_in_this_child,
    live_handlers,
    pass_on_deferred,
    settle,
    step_aside,
)

__all__ = ["hook_pools"]

_CELERY_UID = "watchtower_refresh.close_handlers"
_hooked = False  # a handler was made: every later fork looks for pools and Celery
_billiard_parent: object = None  # billiard's current process just before a fork


class _ForkToken:
    """What multiprocessing's after-fork registry holds a weak reference to."""


_FORK_TOKEN = _ForkToken()
_hooked_registries: set[int] = set()


def hook_pools() -> None:
    """Hook multiprocessing, billiard and Celery if imported, and at every later fork."""
    global _hooked
    _hooked = True
    _hook_multiprocessing()
    _hook_celery(may_import=True)


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
            name, _FORK_TOKEN, _close_at_child_exit, also=_prepare_child
        ):
            _hooked_registries.add(id(registry))


def _close_at_child_exit() -> None:  # pragma: no cover - runs as a forked child exits
    # Pool.terminate() may send SIGTERM right now: it waits until this is done.
    with holding_sigterm():
        settle("child process exit", close=True)
    pass_on_deferred()


def _before_fork() -> None:
    global _billiard_parent
    if not _hooked:
        return
    process = sys.modules.get("billiard.process")
    _billiard_parent = process.current_process() if process is not None else None
    # The application may have imported these after its handlers were made; Celery forks
    # its prefork children only after it is imported.
    _hook_multiprocessing()
    _hook_celery(may_import=False)


def _prepare_child() -> None:
    """In a child multiprocessing or billiard started, arrange its end as its pool ends it.

    Its SIGTERM is left as the pool sets it. A pool worker sends each record before its
    logging call returns: ``multiprocessing.Pool.terminate()`` (so ``with Pool()``) sends
    it SIGTERM while it waits for a task, and billiard's end with ``os._exit`` without
    finalizers (after ``close()`` too) and replace our SIGTERM handler with theirs. A
    SIGTERM handler in Python cannot be relied on there: one that comes just before the
    worker blocks on the task queue's lock is never run, and the worker would outlive
    ``terminate()``, which waits for it. So such a worker gets SIGTERM's previous action
    back (it dies at once, as without us) and sends synchronously: right after the fork
    nothing is queued in it yet, so that loses nothing. Celery's children are billiard
    workers too, but Celery's ``worker_process_shutdown`` closes their handlers at their
    end: they keep batching.
    """
    leave_sigterm_alone_in_this_child()
    if not (_in_multiprocessing_pool_worker() or _in_billiard_worker()):
        return
    step_aside()
    for handler in live_handlers():
        handler.send_synchronously()


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
    with holding_sigterm():
        settle("Celery worker process exit", close=True)
    pass_on_deferred()


at_fork(before=_before_fork)
