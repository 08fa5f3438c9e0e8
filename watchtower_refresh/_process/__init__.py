"""The process around the handlers: which are alive, forks, exit, signals, pools and Celery.

- ``lifecycle``: the registry of live handlers, the exit hook and its budget, the one
  stderr line, each thread's delivery state, and the package's only ``os.register_at_fork``
  (``at_fork`` registers every other hook, in a defined order).
- ``signals``: the SIGTERM handler, deferred signals, putting it back in a forked child.
- ``pools``: multiprocessing and billiard children, pool workers, Celery's prefork children.
- ``arrangement``: what every handler's constructor calls.

Nothing here writes a handler's attributes: what the process needs from a handler is the
``Lifecycle`` protocol.
"""

from __future__ import annotations

from .arrangement import arrange
from .lifecycle import (
    Flushable,
    Lifecycle,
    at_fork,
    close_all,
    delivering,
    exit_deadline,
    exiting,
    finalizing,
    flush_all,
    live,
    mark_delivery_thread,
    one_report_line,
    register,
    report,
    summarizing,
    thread_state,
)
from .signals import (
    check_sigterm_after_fork,
    install_sigterm_handler,
    keep_sigterm_off_this_thread,
)

__all__ = [
    "Flushable",
    "Lifecycle",
    "arrange",
    "at_fork",
    "check_sigterm_after_fork",
    "close_all",
    "delivering",
    "exit_deadline",
    "exiting",
    "finalizing",
    "flush_all",
    "install_sigterm_handler",
    "keep_sigterm_off_this_thread",
    "live",
    "mark_delivery_thread",
    "one_report_line",
    "register",
    "report",
    "summarizing",
    "thread_state",
]
