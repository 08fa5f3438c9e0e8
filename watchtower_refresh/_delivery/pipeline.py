"""The delivery pipeline of one handler in one process: admission, flush, close.

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

The pipeline builds the parts and admits records; the state, the sender generations and
their transitions belong to ``Generations``, the waits of ``close()`` to ``Closer``, sends
from the caller's thread to ``Synchronous``. Each start of a sender is a new generation with
a new ledger token: an older generation that is still running takes no more records
(``Ledger.take``). Lock order: the handler's lock, then the ledger's (``Ledger.lock``,
re-entrant; ``Ledger.cond`` is on it). Nothing is called under the ledger's lock that takes
the handler's or logging's, except ``SpoolSide.close_writer``, which only tries the
handler's lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._compat import holds_logging_lock
from .._core.events import SIZE, SPOOL_ID, STREAM, TIMESTAMP, Event, size_exactly
from .._core.ledger import Claim, Ledger, Part
from .._core.markers import PLAIN, Style
from .._core.reasons import DropReason
from .._process import exiting, finalizing
from .._process import thread_state as _thread_state
from .._report import Reporter
from . import backlog, metrics, outcome
from .backlog import Replayer, SpoolSide
from .closing import Closer
from .deliver import Target
from .generations import Generations
from .lifecycle import State
from .metrics import SelfMetrics
from .outcome import Outcomes
from .pace import PACE, Pace
from .scheduler import Sender
from .synchronous import Synchronous

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = ["Pipeline", "State"]


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
        self.ledger = ledger = Ledger(
            settings.queue_max_events,
            settings.queue_max_bytes,
            drop_markers=settings.drop_markers,
        )
        self._reporter = reporter
        reporter.after_fork(ledger.lock)
        self.generations = generations = Generations(
            self,
            ledger,
            use_queues=settings.use_queues,
            pace=pace,
            replay=None if settings.spool_dir is None else self._replay,
            replay_failed=lambda exc: self.settle_failed(None, exc),
        )
        """The lifecycle state and the sender generations."""
        # No hold while close() runs (it tries once more), nor for records sent from the
        # caller's thread: no sender would try them again.
        self.spool = SpoolSide(
            settings,
            ledger,
            lock,
            self.warn_soon,
            lambda: generations.closing_deadline is not None or not generations.use_queues,
        )
        self.outcomes = Outcomes(
            settings,
            ledger,
            target,
            put,
            reporter,
            self.spool.own_acker,
            lambda: generations.closing_deadline,
            self.spool,
            marker_style,
            pace,
        )
        self.metrics = (
            None
            if settings.metrics_interval is None
            else SelfMetrics(
                settings, ledger, target, put, reporter, lambda: generations.closing_deadline, pace
            )
        )
        """The self-metrics, which the sender writes (``metrics_interval``), or None."""
        self.synchronous = Synchronous(settings, ledger, self.outcomes)
        """Sends records from the caller's thread (``use_queues=False``, exit, no thread)."""
        self._closer = Closer(
            generations,
            ledger,
            self.spool,
            self.outcomes,
            settings,
            metrics=self.metrics is not None,
            issue_warnings=self.issue_warnings,
        )

    @property
    def state(self) -> State:
        """Where the handler is in its lifecycle."""
        return self.generations.state

    @property
    def sender(self) -> Sender | None:
        """The latest sender generation's scheduler; None before the first."""
        return self.generations.sender

    @property
    def replayer(self) -> Replayer | None:
        """The latest generation's replay thread (with a spool), or None."""
        return self.generations.replayer

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
        self.generations.sender_stopped(sender)

    def issue_warnings(self) -> None:
        """Issue the warnings ``emit()`` put aside."""
        self._reporter.issue_pending()

    def _replay(self, stop: threading.Event, is_open: Callable[[], bool]) -> None:
        """One pass over what dead processes left, on a generation's replayer."""
        self.spool.replay_once(self.outcomes, stop, is_open)

    # ------------------------------------------------------------------ admission

    def wake_sender(self) -> None:
        """A record went into the queue while the sender waited or the gate was closing."""
        ledger = self.ledger
        ledger.woken()
        sender = self.generations.sender
        if sender is not None:
            sender.wake.set()
        if ledger.gate.gated:
            self._emit_raced_close()

    def _emit_raced_close(self) -> None:
        """A record went into the queue as close() stopped the sender: see that it is sent."""
        generations = self.generations
        with self.ledger.lock:
            sender = generations.sender
            if sender is not None and sender.reusable:
                return
            if generations.state is State.CLOSING:
                generations.closing_sender()
            else:
                generations.open()

    def admit_slow(self, event: Event, cost: int) -> None:
        """Admit ``event`` when the fast path cannot: start, reopen, exit, sync or full."""
        if event[SIZE] < 0:  # an estimate: its exact size matters from here on
            sized, _, cost = size_exactly([event])
            event = sized[0]
        generations = self.generations
        if not generations.use_queues:
            outer = _thread_state.sync_deadline
            if outer is not None and time.monotonic() >= outer:
                # Logged by a signal handler during a synchronous put whose caller is out of
                # time: sent in the background, so that the log call returns in its bound.
                self._queue_for_later(event, cost)
                return
            self.synchronous.send([event])
            if self.metrics is not None:
                self._start_metrics()
            return
        ledger = self.ledger
        with ledger.lock:
            if exiting():
                if generations.running() and not ledger.gate.spilling and ledger.has_room(cost):
                    # Only the sender's wake-up kept it off the fast path: queue it.
                    self._queue_and_wake(event, cost)
                    return
            else:
                if generations.state is State.CLOSING:
                    # close() delivers it, or counts it as shutdown once its time is up.
                    self._admit_or_refuse(event, cost)
                    sender = generations.closing_sender()
                    if sender is not None:
                        sender.wake.set()
                    return
                if not generations.running():
                    generations.open()
                if generations.state is State.OPEN and generations.sender is not None:
                    self._queue_and_wake(event, cost)
                    return
        # Exiting, or no thread can start.
        self.synchronous.send([event], exit_path=True)

    def _start_metrics(self) -> None:
        """With ``use_queues=False``, start a sender all the same: it writes the self-metrics
        on its own thread, never on the caller's (the records still go from the caller's)."""
        generations = self.generations
        sender = generations.sender
        if (sender is not None and sender.reusable) or exiting() or finalizing():
            return
        with self.ledger.lock:
            if generations.state is not State.CLOSING and not generations.running():
                generations.open()

    def _queue_and_wake(self, event: Event, cost: int) -> None:
        """Queue ``event`` for the running sender and wake it (ledger lock held)."""
        self._admit_or_refuse(event, cost)
        self.ledger.woken()  # once is enough: the sender arms the next wake-up
        sender = self.generations.sender
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
        sender = self.generations.sender
        if sender is not None and sender.alive:
            sender.wake.set()
        elif not self.generations.use_queues:
            self.issue_warnings()

    def send_synchronously(self) -> None:
        """From now on, send each record from the caller's thread (a pool worker, which may
        end without notice); what is already queued is still sent by the sender."""
        self.generations.send_synchronously()

    # ------------------------------------------------------------------ the caller's thread

    def _queue_for_later(self, event: Event, cost: int) -> None:
        """Queue ``event`` for a background sender, started if none runs (use_queues=False)."""
        generations = self.generations
        with self.ledger.lock:
            self._admit_or_refuse(event, cost)
            if generations.state is State.CLOSING:
                sender = generations.closing_sender()  # close() delivers it, or counts it
            else:
                if not generations.running():
                    generations.open()
                sender = generations.sender
            if sender is not None:
                sender.flush_target = max(sender.flush_target, self.ledger.admitted)
                sender.wake.set()

    def refuse_finalizing(self, count: int) -> None:
        """Count ``count`` records logged while the interpreter is finalizing as shutdown,
        and say so once on stderr (``Synchronous``): nothing can be sent then."""
        self.synchronous.refuse_finalizing(count)

    # ------------------------------------------------------------------ flush

    def request_flush(self) -> int:
        """Ask the sender to send everything queued now; return what to wait for.

        Returns:
            The admission number up to which everything must be settled.
        """
        ledger = self.ledger
        generations = self.generations
        if self.settings.spool_dir is not None and generations.state is State.NEW and not exiting():
            with ledger.lock:  # start delivering, so what dead processes left is replayed
                if generations.state is State.NEW:
                    generations.open()
        target = ledger.admitted
        sender = generations.sender
        if sender is not None and target > ledger.drained:
            sender.flush_target = max(sender.flush_target, target)
            sender.wake.set()
        return target

    def wait_flushed(self, target: int, deadline: float) -> bool:
        """Wait until every record up to ``target`` is settled, or the monotonic ``deadline``."""
        if holds_logging_lock():
            deadline = 0.0  # inside dictConfig: the sender needs that lock; it sends once free
        replayer = self.generations.replayer
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
            sender = self.generations.sender
            if sender is None or not sender.alive:
                settled = ledger.settled_through >= target
            else:
                settled = ledger.wait_settled(target, max(0.0, deadline - time.monotonic()))
            if not settled or self.spool.backlog_from is None:
                return settled
            # Settled by a hold: back on disk, to be tried again; wait for those too.

    # ------------------------------------------------------------------ close

    def close_by(self, deadline: float) -> bool:
        """Deliver what is held until the monotonic ``deadline``, then stop (``Closer``).

        Returns:
            Whether logging's own ``Handler.close`` should now run (not for a ``close()``
            that joined one under way, whose caller runs it).
        """
        return self._closer.close_by(deadline)
