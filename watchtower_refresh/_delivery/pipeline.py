"""The delivery pipeline of one handler in one process: lifecycle, sender generations, flush, close.

The handler formats a record, sizes it and picks its stream; then it hands the record to
the pipeline, which owns everything after that. Threads, states and the lock order are
described in ``docs/design.md``; in short:

- ``NEW``: built, nothing sent yet. The first record starts a sender: ``OPEN``.
- ``OPEN``: records are queued (the handler's fast path appends to the ledger's queue under
  the handler's lock) and the scheduler (``Sender``) sends them in the background.
- ``CLOSING``: ``close()`` delivers what is held until its deadline; records logged
  meanwhile are delivered too, by a new sender generation if the last one has stopped.
- ``CLOSED``: the sender has stopped; what could not be delivered was counted as
  ``shutdown`` and reported in one line on stderr. A record logged now reopens: ``OPEN``.

Each start of a sender is a new generation with a new ledger token: an older generation that
is still running takes no more records (``Ledger.take``). Lock order: the handler's lock, then
the ledger's (``Ledger.lock``, re-entrant; ``Ledger.cond`` is on it). Nothing is called under
the ledger's lock that takes the handler's or logging's, except ``SpoolSide.close_writer``,
which only tries the handler's lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._compat import holds_logging_lock
from .._core.events import SIZE, SPOOL_ID, STREAM, TIMESTAMP, Event, size_exactly
from .._core.ledger import Claim, Ledger, Part
from .._core.markers import PLAIN, Style
from .._core.reasons import DropReason
from .._process import (
    check_sigterm_after_fork,
    delivering,
    exit_deadline,
    exiting,
    finalizing,
    report,
)
from .._process import thread_state as _thread_state
from .._report import Reporter
from . import backlog, closing, metrics, outcome
from .backlog import Replayer, SpoolSide
from .deliver import Target
from .lifecycle import State
from .metrics import SelfMetrics
from .outcome import Outcomes
from .pace import PACE, Pace
from .scheduler import Sender

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = ["MAX_IN_FLIGHT", "Pipeline", "State"]

MAX_IN_FLIGHT = 8
"""Most batches a handler sends at once, each to a different stream."""


class Settings(backlog.Settings, outcome.Settings, metrics.Settings, Protocol):
    """The options the pipeline reads: its own, and those of the parts it builds."""

    @property
    def use_queues(self) -> bool: ...
    @property
    def send_interval(self) -> float: ...
    @property
    def queue_max_events(self) -> int: ...
    @property
    def queue_max_bytes(self) -> int: ...
    @property
    def flush_timeout(self) -> float: ...
    @property
    def drop_markers(self) -> bool: ...


class Pipeline:
    """What becomes of a handler's records once ``emit()`` has made them events.

    Args:
        settings: The handler's options.
        lock: The handler's lock: ``emit()`` admits records under it.
        target: The client and the set-up of the group and streams.
        put: Sends one batch.
        reporter: The handler's warnings.
        marker_style: How the handler's formatter writes records, for drop markers.
        pace: The pace of puts, shared by every handler of the process (``pace.PACE``).
    """

    def __init__(
        self,
        settings: Settings,
        lock: threading.RLock | None,
        target: Target,
        put: Callable[[CloudWatchLogsClient, str, Sequence[Event]], Any],
        reporter: Reporter,
        marker_style: Callable[[], Style] = lambda: PLAIN,
        pace: Pace = PACE,
    ) -> None:
        self.settings = settings
        self.pace = pace
        self._lock = lock
        self.ledger = ledger = Ledger(
            settings.queue_max_events,
            settings.queue_max_bytes,
            drop_markers=settings.drop_markers,
        )
        self._reporter = reporter
        reporter.after_fork(ledger.lock)
        self.state = State.NEW
        self.sender: Sender | None = None
        self.closing_deadline: float | None = None
        self._exit_reported = False
        # No hold while close() runs (it tries once more), nor for records sent from the
        # caller's thread: no sender would try them again.
        self.spool = SpoolSide(
            settings,
            ledger,
            lock,
            self.warn_soon,
            lambda: self.closing_deadline is not None or not self.use_queues,
        )
        self.outcomes = Outcomes(
            settings,
            ledger,
            target,
            put,
            reporter,
            self.spool.own_acker,
            lambda: self.closing_deadline,
            self.spool,
            marker_style,
            pace,
        )
        self.metrics = (
            None
            if settings.metrics_interval is None
            else SelfMetrics(
                settings, ledger, target, put, reporter, lambda: self.closing_deadline, pace
            )
        )
        """The self-metrics, which the sender writes (``metrics_interval``), or None."""
        self.replayer: Replayer | None = None
        self.use_queues = settings.use_queues
        """False: every record is sent from the caller's thread (``send_synchronously``)."""

    # ------------------------------------------------------------------ the scheduler's host

    @property
    def send_interval(self) -> float:
        """Longest time, in seconds, a record waits before its batch is sent."""
        return self.settings.send_interval

    @property
    def max_batch_size(self) -> int:
        """Largest batch in bytes."""
        return self.settings.max_batch_size

    @property
    def max_batch_count(self) -> int:
        """Most events per batch."""
        return self.settings.max_batch_count

    def deliver(self, stream: str, part: Part, stop: threading.Event) -> None:
        """Deliver one batch and settle it (or hold it); the scheduler's workers call this."""
        self.outcomes.deliver(stream, part, stop)

    def reject_by_age(self, claim: Claim, too_old: list[Event], too_new: list[Event]) -> None:
        """Settle events outside the service's time window as rejected."""
        self.outcomes.reject_by_age(claim, too_old, too_new)

    def settle_failed(self, part: Part | None, exc: BaseException) -> None:
        """Settle ``part`` as an internal error and say so once."""
        self.outcomes.settle_failed(part, exc)

    def refill(self) -> float | None:
        """Queue records kept on disk beyond the caps, as room allows; seconds until held
        records are due, or None."""
        return self.spool.refill()

    def sender_stopped(self, sender: Sender) -> None:
        """``sender`` has stopped (ledger lock held): later records take the slow path."""
        if self.sender is sender:
            self.ledger.close_gate()

    def issue_warnings(self) -> None:
        """Issue the warnings ``emit()`` put aside."""
        self._reporter.issue_pending()

    # ------------------------------------------------------------------ admission

    def wake_sender(self) -> None:
        """A record went into the queue while the sender waited or the gate was closing."""
        ledger = self.ledger
        ledger.woken()
        sender = self.sender
        if sender is not None:
            sender.wake.set()
        if ledger.gate.gated:
            self._emit_raced_close()

    def _emit_raced_close(self) -> None:
        """A record went into the queue as close() stopped the sender: see that it is sent."""
        with self.ledger.lock:
            sender = self.sender
            if sender is not None and sender.reusable:
                return
            if self.state is State.CLOSING:
                self._closing_sender()
            else:
                self._open()

    def admit_slow(self, event: Event, cost: int) -> None:
        """Admit ``event`` when the fast path cannot: start, reopen, exit, sync or full."""
        if event[SIZE] < 0:  # an estimate: its exact size matters from here on
            sized, _, cost = size_exactly([event])
            event = sized[0]
        if not self.use_queues:
            outer = _thread_state.sync_deadline
            if outer is not None and time.monotonic() >= outer:
                # Logged by a signal handler during a synchronous put whose caller is out of
                # time: sent in the background, so that the log call returns in its bound.
                self._queue_for_later(event, cost)
                return
            self.send_now([event])
            if self.metrics is not None:
                self._start_metrics()
            return
        ledger = self.ledger
        with ledger.lock:
            if exiting():
                if self._running() and not ledger.gate.spilling and ledger.has_room(cost):
                    # Only the sender's wake-up kept it off the fast path: queue it.
                    self._queue_and_wake(event, cost)
                    return
            else:
                if self.state is State.CLOSING:
                    # close() delivers it, or counts it as shutdown once its time is up.
                    self._admit_or_refuse(event, cost)
                    sender = self._closing_sender()
                    if sender is not None:
                        sender.wake.set()
                    return
                if not self._running():
                    self._open()
                if self.state is State.OPEN and self.sender is not None:
                    self._queue_and_wake(event, cost)
                    return
        # Exiting, or no thread can start.
        self.send_now([event], exit_path=True)

    def _start_metrics(self) -> None:
        """With ``use_queues=False``, start a sender all the same: it writes the self-metrics
        on its own thread, never on the caller's (the records still go from the caller's)."""
        sender = self.sender
        if (sender is not None and sender.reusable) or exiting() or finalizing():
            return
        with self.ledger.lock:
            if self.state is not State.CLOSING and not self._running():
                self._open()

    def _running(self) -> bool:
        """Whether the handler is open with a sender that takes records (ledger lock held)."""
        sender = self.sender
        return self.state is State.OPEN and sender is not None and sender.reusable

    def _queue_and_wake(self, event: Event, cost: int) -> None:
        """Queue ``event`` for the running sender and wake it (ledger lock held)."""
        self._admit_or_refuse(event, cost)
        self.ledger.woken()  # once is enough: the sender arms the next wake-up
        sender = self.sender
        if sender is not None:
            sender.wake.set()

    def _admit_or_refuse(self, event: Event, cost: int) -> None:
        """Queue ``event`` under the caps (ledger lock held), keep it on disk only, or count
        it as ``queue_full``."""
        ledger = self.ledger
        spooled = len(event) > SPOOL_ID
        if spooled and self.spool.keep_on_disk(event, cost):
            return
        if ledger.has_room(cost) or (ledger.size_queued() and ledger.has_room(cost)):
            ledger.admitted += 1
            ledger.admitted_bytes += cost
            ledger.queue.append(event)
            return
        if not spooled and self.spool.full:
            # Neither on disk (the spool is full) nor in memory: this one is lost.
            ledger.drop(DropReason.SPOOL_FULL, stream=event[STREAM], timestamp=event[TIMESTAMP])
            return
        # A spooled record stays on disk for later: late, not lost, so no marker.
        lost = None if spooled else event[STREAM]
        ledger.drop(DropReason.QUEUE_FULL, stream=lost, timestamp=event[TIMESTAMP])
        if not ledger.overflowing:
            ledger.overflowing = True
            settings = self.settings
            self.warn_soon(
                f"the queue of log group {settings.log_group_name} is full "
                f"({settings.queue_max_events} records or {settings.queue_max_bytes} bytes): "
                "records are dropped and counted in stats.dropped['queue_full'] until it drains"
            )

    def drop_one(self, reason: DropReason, warning: str) -> None:
        """Count one record refused on arrival and warn once about the reason."""
        self.ledger.drop(reason)
        self.warn_soon(warning, reason.value)

    def warn_soon(self, message: str, key: str | None = None) -> None:
        """Warn from ``emit()``, or soon after from a delivery thread or ``flush()``."""
        if not self._reporter.soon(message, key):
            return
        sender = self.sender
        if sender is not None and sender.alive:
            sender.wake.set()
        elif not self.use_queues:
            self.issue_warnings()

    def send_synchronously(self) -> None:
        """From now on, send each record from the caller's thread (a pool worker, which may
        end without notice); what is already queued is still sent by the sender."""
        self.use_queues = False
        self.ledger.close_gate()  # every later record takes emit()'s slow path

    # ------------------------------------------------------------------ senders

    def _open(self) -> None:
        """Start a sender, or keep the one that is still draining (ledger lock held)."""
        check_sigterm_after_fork()  # a forked child's SIGTERM may have been reset
        sender: Sender | None = self.sender
        if sender is not None and sender.reusable:
            sender.draining = False  # a dictConfig closed us without waiting: carry on
            sender = None  # and so does its replayer
        else:
            sender = self._start_sender(draining=False)
            if sender is None:
                return  # the caller sends from its own thread
        self.state = State.OPEN
        self.closing_deadline = None
        if self.use_queues:  # else every record goes the slow way, sent at once
            self.ledger.open_gate()
        if sender is not None and self.settings.spool_dir is not None:
            self._start_replayer(sender)  # after OPEN: a pass stops once it is not

    def _start_replayer(self, sender: Sender) -> None:
        replayer = Replayer(
            lambda stop: self.spool.replay_once(
                self.outcomes, stop, lambda: self.state is State.OPEN
            ),
            lambda exc: self.outcomes.settle_failed(None, exc),
            sender.stop,
            lambda: sender.finished,
        )
        if replayer.start():
            self.replayer = replayer

    def _closing_sender(self) -> Sender | None:
        """The sender that delivers for close(): a new one if the last has stopped.

        Records logged while close() runs are delivered too (ledger lock held).
        """
        sender = self.sender
        if sender is not None and sender.reusable:
            return sender
        if finalizing():
            return None  # no thread can start
        return self._start_sender(draining=True)

    def _start_sender(self, *, draining: bool) -> Sender | None:
        """Start a new sender generation (ledger lock held); None if no thread can start
        (interpreter shutdown: 3.12 refuses threads in atexit hooks too)."""
        sender = Sender(
            self, self.ledger, MAX_IN_FLIGHT, self.ledger.new_generation(), pace=self.pace
        )
        sender.draining = draining
        if not sender.start():
            return None
        self.sender = sender
        return sender

    # ------------------------------------------------------------------ the caller's thread

    def send_now(self, events: list[Event], *, exit_path: bool = False) -> None:
        """Deliver ``events`` from the caller's thread and settle them.

        Waits at most ``flush_timeout`` seconds, or what is left of the exit budget. During
        finalization nothing is sent: the events are counted as ``shutdown``.
        """
        ledger = self.ledger
        if finalizing():
            self.refuse_finalizing(len(events))
            return
        claim = ledger.claim_now(events)
        deadline = time.monotonic() + self.settings.flush_timeout
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
                self.outcomes.deliver_claim(claim, events, None, deadline=deadline)
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

    def _queue_for_later(self, event: Event, cost: int) -> None:
        """Queue ``event`` for a background sender, started if none runs (use_queues=False)."""
        with self.ledger.lock:
            self._admit_or_refuse(event, cost)
            if self.state is State.CLOSING:
                sender = self._closing_sender()  # close() delivers it, or counts it
            else:
                if not self._running():
                    self._open()
                sender = self.sender
            if sender is not None:
                sender.flush_target = max(sender.flush_target, self.ledger.admitted)
                sender.wake.set()

    def refuse_finalizing(self, count: int) -> None:
        """Count ``count`` records logged while the interpreter is finalizing as shutdown,
        and say so once on stderr: nothing can be sent, or even safely formatted, then."""
        self.ledger.drop(DropReason.SHUTDOWN, count)
        if not self._exit_reported:
            self._exit_reported = True
            report(
                f"records logged to log group {self.settings.log_group_name} while the "
                "interpreter is finalizing cannot be sent; they are counted in "
                "stats.dropped['shutdown']"
            )

    # ------------------------------------------------------------------ flush

    def request_flush(self) -> int:
        """Ask the sender to send everything queued now; return what to wait for.

        Returns:
            The admission number up to which everything must be settled.
        """
        ledger = self.ledger
        if self.settings.spool_dir is not None and self.state is State.NEW and not exiting():
            with ledger.lock:  # start delivering, so what dead processes left is replayed
                if self.state is State.NEW:
                    self._open()
        target = ledger.admitted
        sender = self.sender
        if sender is not None and target > ledger.drained:
            sender.flush_target = max(sender.flush_target, target)
            sender.wake.set()
        return target

    def wait_flushed(self, target: int, deadline: float) -> bool:
        """Wait until every record up to ``target`` is settled, or the monotonic ``deadline``."""
        if holds_logging_lock():
            deadline = 0.0  # inside dictConfig: the sender needs that lock; it sends once free
        replayer = self.replayer
        if replayer is not None:  # a replay pass settles what it claims before it is idle
            replayer.idle.wait(max(0.0, deadline - time.monotonic()))
        ledger = self.ledger
        while True:
            while self.spool.backlog_from is not None:  # on disk: admitted as the queue drains
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                target = max(target, self.request_flush())
                with ledger.cond:
                    ledger.cond.wait(min(remaining, 0.05))
            if ledger.admitted > target:  # what the backlog admitted meanwhile
                target = self.request_flush()
            sender = self.sender
            if sender is None or not sender.alive:
                settled = ledger.settled_through >= target
            else:
                settled = ledger.wait_settled(target, max(0.0, deadline - time.monotonic()))
            if not settled or self.spool.backlog_from is None:
                return settled
            # Settled by a hold: back on disk, to be tried again; wait for those too.

    # ------------------------------------------------------------------ close

    def close_by(self, deadline: float) -> bool:
        """Deliver what is held until the monotonic ``deadline``, then stop (``closing``).

        Returns:
            Whether logging's own ``Handler.close`` should now run (not for a ``close()``
            that joined one under way, whose caller runs it).
        """
        return closing.close_by(self, deadline)

    def open_for_close(self) -> Sender | None:
        """Make sure a sender runs to deliver what close() must (ledger lock held)."""
        sender = self.sender
        if sender is None or not sender.reusable:
            self._open()  # records were left behind: a sender to deliver them
            sender = self.sender if self.state is State.OPEN else None
        return sender

    def closing_sender(self) -> Sender | None:
        """The sender that delivers for close(): a new one if the last has stopped.

        Records logged while close() runs are delivered too (ledger lock held).
        """
        return self._closing_sender()
