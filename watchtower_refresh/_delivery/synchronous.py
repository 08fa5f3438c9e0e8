"""The synchronous path: records sent from the caller's thread, within the call's bound.

With ``use_queues=False``, at interpreter exit, or when no sender thread can start, the
pipeline delivers a record from the thread that logged it. The call waits at most
``flush_timeout`` seconds, less at exit (what is left of the exit budget) or inside an outer
synchronous call (that call's bound). What a signal handler logs meanwhile is deferred and
sent once the put is done, within the same bound. While the interpreter is finalizing
nothing is sent at all: such records are counted as ``shutdown``, said once on stderr.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from .._core.events import Event
from .._core.ledger import Ledger
from .._core.reasons import DropReason
from .._process import delivering, exit_deadline, exiting, finalizing, report
from .._process import thread_state as _thread_state
from .outcome import Outcomes

__all__ = ["Synchronous"]


class Settings(Protocol):
    """The options the synchronous path reads."""

    @property
    def log_group_name(self) -> str: ...
    @property
    def flush_timeout(self) -> float: ...


class Synchronous:
    """Delivers records from the caller's thread and settles them in the ledger.

    Args:
        settings: The handler's options.
        ledger: Claims the records and settles what the put left unsettled.
        outcomes: Delivers one claim and settles it.
    """

    def __init__(self, settings: Settings, ledger: Ledger, outcomes: Outcomes) -> None:
        self._settings = settings
        self._ledger = ledger
        self._outcomes = outcomes
        self._exit_reported = False  # the one stderr line of refuse_finalizing

    def send(self, events: list[Event], *, exit_path: bool = False) -> None:
        """Deliver ``events`` from the caller's thread and settle them.

        Waits at most ``flush_timeout`` seconds, or what is left of the exit budget. During
        finalization nothing is sent: the events are counted as ``shutdown``.
        """
        ledger = self._ledger
        if finalizing():
            self.refuse_finalizing(len(events))
            return
        claim = ledger.claim_now(events)
        deadline = time.monotonic() + self._settings.flush_timeout
        if exit_path or exiting():
            deadline = min(deadline, exit_deadline())
        outer = _thread_state.sync_deadline
        if outer is not None:  # a deferred record of an outer call: that call's bound holds
            deadline = min(deadline, outer)
        deferred: list[tuple[logging.Handler, logging.LogRecord]] = []
        before = _thread_state.deferred
        _thread_state.deferred = deferred
        try:
            with delivering():
                self._outcomes.deliver_claim(claim, events, None, deadline=deadline)
        finally:
            _thread_state.deferred = before
            ledger.settle_rest(claim, DropReason.INTERNAL_ERROR)
        if not deferred:
            return
        # Logged by a signal handler while we were sending: sent within this call's bound,
        # however fast it logs; what comes past the bound goes to the background sender.
        _thread_state.sync_deadline = deadline
        try:
            for handler, record in deferred:
                handler.handle(record)
        finally:
            _thread_state.sync_deadline = outer

    def refuse_finalizing(self, count: int) -> None:
        """Count ``count`` records logged while the interpreter is finalizing as shutdown,
        and say so once on stderr: nothing can be sent, or even safely formatted, then."""
        self._ledger.drop(DropReason.SHUTDOWN, count)
        if not self._exit_reported:
            self._exit_reported = True
            report(
                f"records logged to log group {self._settings.log_group_name} while the "
                "interpreter is finalizing cannot be sent; they are counted in "
                "stats.dropped['shutdown']"
            )
