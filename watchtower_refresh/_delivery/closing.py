"""``close()`` on deadlines: join one under way, drain, restart a sender, settle the rest.

A close sets the pipeline ``CLOSING`` with a deadline and closes the gate, so that every
later record takes the slow path. It then waits for the sender to drain: each settlement
wakes it; a record logged meanwhile is delivered by a fresh generation if the last one
stopped (at most one start every ``RESTART_SPACING`` seconds). At the deadline it stops the
sender (cutting a backoff short), gives it ``STOP_GRACE`` seconds, and counts whatever is
still held as ``shutdown``: queued, in flight, or on disk. A put answered later moves its
records from ``shutdown`` to what became of them. A second close() waits for the first,
bringing its deadline forward if its own is earlier.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .._compat import holds_logging_lock
from .._core.events import EVENT_OVERHEAD
from .._core.reasons import DropReason
from .._process import delivering, finalizing, report, summarizing
from .._report import records
from .lifecycle import State

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .scheduler import Sender

__all__ = ["RESTART_SPACING", "STOP_GRACE", "close_by"]

RESTART_SPACING = 0.05  # seconds between two senders close() starts, and between its looks
STOP_GRACE = 1.0  # seconds close() gives a stopped sender past its deadline to settle


def close_by(pipeline: Pipeline, deadline: float) -> bool:
    """Deliver what is held until the monotonic ``deadline``, then stop.

    Returns:
        Whether logging's own ``Handler.close`` should now run (not for a ``close()``
        that joined one under way, whose caller runs it).
    """
    ledger = pipeline.ledger
    sender: Sender | None = None
    with ledger.lock:
        state = pipeline.state
        if state is State.CLOSING:
            lost = _join_close(pipeline, deadline)
        else:
            done = state in (State.NEW, State.CLOSED) and not (ledger.held or ledger.on_disk)
            if done:
                pipeline.state = State.CLOSED
                pipeline.spool.close_writer()
            else:
                sender = pipeline.open_for_close()
                pipeline.state = State.CLOSING
                pipeline.closing_deadline = deadline
                ledger.close_gate()
                if sender is not None:
                    sender.draining = True
                    sender.wake.set()
    if state is State.CLOSING:
        _report_lost(pipeline, lost)
        return False
    if done:
        _mark_the_rest(pipeline, deadline)
        return True
    try:
        if holds_logging_lock():
            # dictConfig (uvicorn applies one at start-up) closes old handlers while it
            # holds logging's lock, which the sender needs: it delivers the rest and
            # stops on its own once the lock is released. At interpreter exit no lock
            # is held: we wait.
            with ledger.lock:
                pipeline.state = State.CLOSED
                ledger.cond.notify_all()
            return True
        if not _finish_close(pipeline, sender):
            _mark_the_rest(pipeline, min(deadline, pipeline.closing_deadline or deadline))
        return True
    except BaseException:
        # Interrupted (a signal handler raised, say): leave the handler as a dictConfig
        # close does, its sender still delivering, so that a later close() waits for
        # what is held and counts what it cannot deliver; CLOSING would make every later
        # close() return at once.
        with ledger.lock:
            if pipeline.state is State.CLOSING:
                pipeline.state = State.CLOSED
                ledger.cond.notify_all()
        raise


def _join_close(pipeline: Pipeline, deadline: float) -> int:
    """Wait for the close() under way (ledger lock held); return what it had to give up.

    Waits until the earlier of the two deadlines: a process that ends sooner (close_all
    at exit or on SIGTERM) makes that close() give up sooner too, and one that cannot
    run meanwhile (on the thread our signal handler interrupted) is settled from here.
    """
    ledger = pipeline.ledger
    closing = pipeline.closing_deadline or deadline
    if deadline < closing:
        pipeline.closing_deadline = closing = deadline
        ledger.cond.notify_all()
    ledger.cond.wait_for(
        lambda: pipeline.state is not State.CLOSING,
        max(0.0, closing + STOP_GRACE - time.monotonic()),
    )
    return _settle_close(pipeline, None) if pipeline.state is State.CLOSING else 0


def _finish_close(pipeline: Pipeline, sender: Sender | None) -> int:
    """Wait for the sender to drain, or the deadline; return how many records were lost."""
    ledger = pipeline.ledger
    watch = _CloseWatch(pipeline)
    while True:
        # Wait even if ``sender`` has already stopped: it may have emptied the queue just
        # as other threads logged more, which a fresh sender delivers.
        with ledger.cond:
            while not watch.settled_or_stopped():
                remaining = watch.deadline() - time.monotonic()
                if remaining <= 0:
                    break
                ledger.cond.wait(min(remaining, RESTART_SPACING))
            # Settled by a close_by() meanwhile, the handler may have reopened: leave
            # its sender alone.
            sender = (pipeline.sender or sender) if pipeline.state is State.CLOSING else None
        if sender is not None:
            sender.stop.set()  # cut a backoff wait short: the time is up
            sender.wake.set()
            wait = watch.grace()
            if pipeline.metrics is not None and not (ledger.held or ledger.on_disk):
                # Settled: the sender writes the last self-metrics event before it ends.
                wait = max(wait, watch.deadline() - time.monotonic())
            sender.join(wait)
            replayer = pipeline.replayer
            if replayer is not None:  # let it release what it adopted, for the next one
                replayer.join(watch.grace())
        with ledger.lock:
            if pipeline.state is not State.CLOSING:
                lost = 0  # a close_by() that could not wait longer settled it
            elif (
                (ledger.held or ledger.on_disk)
                and not watch.no_thread
                and (time.monotonic() < watch.deadline())
            ):
                # Logged while we stopped the sender, with time left: wait for them as
                # for the others.
                continue
            else:
                lost = _settle_close(pipeline, sender)
        break
    _report_lost(pipeline, lost)
    pipeline.issue_warnings()
    return lost


def _mark_the_rest(pipeline: Pipeline, deadline: float) -> None:
    """Everything was settled in time: with what is left of it, write the drop markers that
    no put to their streams has written yet (a stream that got no record since its loss).
    Not while the interpreter is finalizing, when calling into botocore can crash it."""
    ledger = pipeline.ledger
    if ledger.gaps is None or finalizing() or time.monotonic() >= deadline:
        return
    with ledger.lock:
        if not ledger.gaps.streams():
            return
    with delivering():  # what botocore logs meanwhile is not handled
        pipeline.outcomes.mark_the_rest(deadline)


def _settle_close(pipeline: Pipeline, sender: Sender | None) -> int:
    """End ``CLOSING`` (ledger lock held): count what is still held as ``shutdown``,
    stop the senders and return how many records that was."""
    ledger = pipeline.ledger
    lost = 0
    if ledger.held or ledger.on_disk:
        for stopping in {sender, pipeline.sender}:
            if stopping is not None:
                stopping.abandon()
        lost = ledger.abandon(DropReason.SHUTDOWN)
    pipeline.spool.end_backlog()  # counted as shutdown; it stays on disk
    pipeline.state = State.CLOSED
    if not lost:
        # With records abandoned in flight, the writer stays open for their acks.
        pipeline.spool.close_writer()
    ledger.cond.notify_all()
    return lost


def _report_lost(pipeline: Pipeline, lost: int) -> None:
    if lost and not summarizing():
        settings = pipeline.settings
        report(
            f"{records(lost)} for log group {settings.log_group_name} could not be "
            f"delivered within flush_timeout={settings.flush_timeout:g}s of close(); "
            "they are counted in stats.dropped['shutdown']"
        )


class _CloseWatch:
    """What ``close()`` watches while it waits: settled, stopped, or a sender to restart."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._restart_at = 0.0
        self.no_thread = False
        """No thread could start: what is held now is counted."""

    def deadline(self) -> float:
        """The close's deadline: a close_by() with an earlier one may bring it forward."""
        return self._pipeline.closing_deadline or time.monotonic()

    def grace(self) -> float:
        """Up to STOP_GRACE past the deadline, for a backoff just cut short or a put timing
        out to settle; one still unanswered then is counted as shutdown, and moves to what
        became of it if its answer comes later."""
        return min(STOP_GRACE, max(0.0, self.deadline() + STOP_GRACE - time.monotonic()))

    def settled_or_stopped(self) -> bool:
        """Whether to stop waiting (ledger lock held); starts a fresh sender if needed."""
        pipeline = self._pipeline
        ledger = pipeline.ledger
        if (ledger.held == 0 and not ledger.on_disk) or pipeline.state is not State.CLOSING:
            return True  # settled, or by a close_by() that could wait no longer
        current = pipeline.sender
        if current is not None and current.reusable:
            return False  # it delivers; each settlement wakes us
        if not (ledger.queue or (ledger.on_disk and ledger.has_room(EVENT_OVERHEAD))):
            # Held in flight only (a synchronous put, a replayed batch, a record that emit()
            # is still appending), or on disk behind a full queue: a settlement wakes us. A
            # sender would find nothing to take and stop at once.
            return False
        # Logged meanwhile and the last sender has stopped: a fresh one delivers them, one
        # at a time at most every RESTART_SPACING seconds.
        now = time.monotonic()
        if now < self._restart_at:
            return False
        self._restart_at = now + RESTART_SPACING
        if pipeline.closing_sender() is None:
            self.no_thread = True  # no thread can start: count what is held now
            return True
        return False
