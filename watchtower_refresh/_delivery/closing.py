"""``close()`` on deadlines: join one under way, drain, restart a sender, settle the rest.

A close sets the pipeline ``CLOSING`` with a deadline and closes the gate, so that every
later record takes the slow path. It then waits for the sender to drain: each settlement
wakes it; a record logged meanwhile is delivered by a fresh generation if the last one
stopped (at most one start every ``RESTART_SPACING`` seconds). At the deadline it stops the
sender (cutting a backoff short), gives it ``STOP_GRACE`` seconds, and counts whatever is
still held as ``shutdown``: queued, in flight, or on disk. A put answered later moves its
records from ``shutdown`` to what became of them. A second close() waits for the first,
bringing its deadline forward if its own is earlier.

The transitions themselves are made by ``Generations``, which owns the state; a ``Closer``
decides when, and waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .._compat import holds_logging_lock
from .._core.events import EVENT_OVERHEAD
from .._core.reasons import DropReason
from .._process import delivering, finalizing, report, summarizing
from .._report import records
from .lifecycle import State

if TYPE_CHECKING:
    from .._core.ledger import Ledger
    from .backlog import SpoolSide
    from .generations import Generations
    from .outcome import Outcomes
    from .scheduler import Sender

__all__ = ["RESTART_SPACING", "STOP_GRACE", "Closer"]

RESTART_SPACING = 0.05  # seconds between two senders close() starts, and between its looks
STOP_GRACE = 1.0  # seconds close() gives a stopped sender past its deadline to settle


class Settings(Protocol):
    """The options a close reads, for its one line about what it gave up."""

    @property
    def log_group_name(self) -> str: ...
    @property
    def flush_timeout(self) -> float: ...


class Closer:
    """``close()`` of one pipeline: when to make its transitions, and how long to wait.

    Args:
        generations: The pipeline's lifecycle, which makes the transitions.
        ledger: The pipeline's ledger: what is held, and the condition to wait on.
        spool: The spool side: its backlog ends and its writer closes with the close.
        outcomes: Writes the drop markers of streams with no put since their loss.
        settings: The handler's options.
        metrics: Whether the sender writes self-metrics, one last event before it ends.
        issue_warnings: Issues the warnings ``emit()`` put aside.
    """

    def __init__(
        self,
        generations: Generations,
        ledger: Ledger,
        spool: SpoolSide,
        outcomes: Outcomes,
        settings: Settings,
        *,
        metrics: bool,
        issue_warnings: Callable[[], None],
    ) -> None:
        self._generations = generations
        self._ledger = ledger
        self._spool = spool
        self._outcomes = outcomes
        self._settings = settings
        self._metrics = metrics
        self._issue_warnings = issue_warnings

    def close_by(self, deadline: float) -> bool:
        """Deliver what is held until the monotonic ``deadline``, then stop.

        Returns:
            Whether logging's own ``Handler.close`` should now run (not for a ``close()``
            that joined one under way, whose caller runs it).
        """
        ledger = self._ledger
        generations = self._generations
        sender: Sender | None = None
        with ledger.lock:
            state = generations.state
            if state is State.CLOSING:
                lost = self._join_close(deadline)
            else:
                done = state in (State.NEW, State.CLOSED) and not (ledger.held or ledger.on_disk)
                if done:
                    generations.closed()
                    self._spool.close_writer()
                else:
                    sender = generations.begin_close(deadline)
        if state is State.CLOSING:
            self._report_lost(lost)
            return False
        if done:
            self._mark_the_rest(deadline)
            return True
        try:
            if holds_logging_lock():
                # dictConfig (uvicorn applies one at start-up) closes old handlers while it
                # holds logging's lock, which the sender needs: it delivers the rest and
                # stops on its own once the lock is released. At interpreter exit no lock
                # is held: we wait.
                with ledger.lock:
                    generations.closed()
                return True
            if not self._finish_close(sender):
                self._mark_the_rest(min(deadline, generations.closing_deadline or deadline))
            return True
        except BaseException:
            # Interrupted (a signal handler raised, say): leave the handler as a dictConfig
            # close does, its sender still delivering, so that a later close() waits for
            # what is held and counts what it cannot deliver; CLOSING would make every later
            # close() return at once.
            with ledger.lock:
                if generations.state is State.CLOSING:
                    generations.closed()
            raise

    def _join_close(self, deadline: float) -> int:
        """Wait for the close() under way (ledger lock held); return what it had to give up.

        Waits until the earlier of the two deadlines: a process that ends sooner (close_all
        at exit or on SIGTERM) makes that close() give up sooner too, and one that cannot
        run meanwhile (on the thread our signal handler interrupted) is settled from here.
        """
        generations = self._generations
        closing = generations.bring_forward(deadline)
        self._ledger.cond.wait_for(
            lambda: generations.state is not State.CLOSING,
            max(0.0, closing + STOP_GRACE - time.monotonic()),
        )
        return self._settle_close(None) if generations.state is State.CLOSING else 0

    def _finish_close(self, sender: Sender | None) -> int:
        """Wait for the sender to drain, or the deadline; return how many records were lost."""
        ledger = self._ledger
        generations = self._generations
        watch = _CloseWatch(generations, ledger)
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
                closing = generations.state is State.CLOSING
                sender = (generations.sender or sender) if closing else None
            if sender is not None:
                sender.stop.set()  # cut a backoff wait short: the time is up
                sender.wake.set()
                wait = watch.grace()
                if self._metrics and not (ledger.held or ledger.on_disk):
                    # Settled: the sender writes the last self-metrics event before it ends.
                    wait = max(wait, watch.deadline() - time.monotonic())
                sender.join(wait)
                replayer = generations.replayer
                if replayer is not None:  # let it release what it adopted, for the next one
                    replayer.join(watch.grace())
            with ledger.lock:
                if generations.state is not State.CLOSING:
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
                    lost = self._settle_close(sender)
            break
        self._report_lost(lost)
        self._issue_warnings()
        return lost

    def _mark_the_rest(self, deadline: float) -> None:
        """Everything was settled in time: with what is left of it, write the drop markers
        that no put to their streams has written yet (a stream that got no record since its
        loss). Not while the interpreter is finalizing, when calling into botocore can crash
        it."""
        ledger = self._ledger
        if ledger.gaps is None or finalizing() or time.monotonic() >= deadline:
            return
        with ledger.lock:
            if not ledger.gaps.streams():
                return
        with delivering():  # what botocore logs meanwhile is not handled
            self._outcomes.mark_the_rest(deadline)

    def _settle_close(self, sender: Sender | None) -> int:
        """End ``CLOSING`` (ledger lock held): count what is still held as ``shutdown``,
        stop the senders and return how many records that was."""
        ledger = self._ledger
        generations = self._generations
        lost = 0
        if ledger.held or ledger.on_disk:
            for stopping in {sender, generations.sender}:
                if stopping is not None:
                    stopping.abandon()
            lost = ledger.abandon(DropReason.SHUTDOWN)
        self._spool.end_backlog()  # counted as shutdown; it stays on disk
        generations.closed()  # whoever waits wakes once the ledger's lock is released
        if not lost:
            # With records abandoned in flight, the writer stays open for their acks.
            self._spool.close_writer()
        return lost

    def _report_lost(self, lost: int) -> None:
        if lost and not summarizing():
            settings = self._settings
            report(
                f"{records(lost)} for log group {settings.log_group_name} could not be "
                f"delivered within flush_timeout={settings.flush_timeout:g}s of close(); "
                "they are counted in stats.dropped['shutdown']"
            )


class _CloseWatch:
    """What ``close()`` watches while it waits: settled, stopped, or a sender to restart."""

    def __init__(self, generations: Generations, ledger: Ledger) -> None:
        self._generations = generations
        self._ledger = ledger
        self._restart_at = 0.0
        self.no_thread = False
        """No thread could start: what is held now is counted."""

    def deadline(self) -> float:
        """The close's deadline: a close_by() with an earlier one may bring it forward."""
        return self._generations.closing_deadline or time.monotonic()

    def grace(self) -> float:
        """Up to STOP_GRACE past the deadline, for a backoff just cut short or a put timing
        out to settle; one still unanswered then is counted as shutdown, and moves to what
        became of it if its answer comes later."""
        return min(STOP_GRACE, max(0.0, self.deadline() + STOP_GRACE - time.monotonic()))

    def settled_or_stopped(self) -> bool:
        """Whether to stop waiting (ledger lock held); starts a fresh sender if needed."""
        generations = self._generations
        ledger = self._ledger
        if (ledger.held == 0 and not ledger.on_disk) or generations.state is not State.CLOSING:
            return True  # settled, or by a close_by() that could wait no longer
        current = generations.sender
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
        if generations.closing_sender() is None:
            self.no_thread = True  # no thread can start: count what is held now
            return True
        return False
