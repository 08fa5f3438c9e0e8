"""The lifecycle of one pipeline: its state, its sender generations and their replayers.

The pipeline decides what becomes of a record; this object alone knows where the handler is
in its lifecycle (``lifecycle.State``), which sender generation delivers for it (with its
replayer, when a spool is set), the deadline of a ``close()`` under way, and whether records
are queued at all (``use_queues``). It makes every transition, under the ledger's lock:
open (start a sender, or keep one still draining), begin and end a close, fall back to
sending from the caller's thread. ``closing`` asks for the transitions of ``close()``.

Each start of a sender is a new generation with a new ledger token
(``Ledger.new_generation``): an older generation that is still running takes no more
records (``Ledger.take``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .._core.ledger import Ledger
from .._process import check_sigterm_after_fork, finalizing
from .backlog import Replayer
from .lifecycle import State
from .pace import Pace
from .scheduler import Sender, SenderHost

__all__ = ["MAX_IN_FLIGHT", "Generations", "Replay"]

MAX_IN_FLIGHT = 8
"""Most batches a handler sends at once, each to a different stream."""

Replay = Callable[[threading.Event, Callable[[], bool]], None]
"""One pass over dead processes' spools, given its stop event and whether to go on."""


class Generations:
    """Which state a pipeline is in, and which sender generation delivers for it.

    Every attribute is written only here, under the ledger's lock (``Ledger.lock``), except
    ``use_queues``, which ``send_synchronously`` turns off once and for all. Admission and
    warnings also read ``sender`` and ``use_queues`` without the lock, to wake a sender or
    choose a path.

    Args:
        host: What a sender calls back: the pipeline.
        ledger: The pipeline's ledger: its lock guards this object, its token fences stale
            generations, its gate lets records take the fast path.
        use_queues: False: every record is sent from the caller's thread.
        pace: The pace of puts, shared by every handler of the process.
        replay: With a spool, a replay pass, run by each generation's replayer; else None.
        replay_failed: Settles what a replay pass that raised had claimed.
    """

    def __init__(
        self,
        host: SenderHost,
        ledger: Ledger,
        *,
        use_queues: bool,
        pace: Pace,
        replay: Replay | None,
        replay_failed: Callable[[BaseException], None],
    ) -> None:
        self._host = host
        self._ledger = ledger
        self._pace = pace
        self._replay = replay
        self._replay_failed = replay_failed
        self.state = State.NEW
        self.sender: Sender | None = None
        """The latest generation's scheduler; None before the first start."""
        self.replayer: Replayer | None = None
        """The replay thread of the latest generation that started one, or None."""
        self.closing_deadline: float | None = None
        """The monotonic deadline of the ``close()`` under way, or None."""
        self.use_queues = use_queues
        """False: every record is sent from the caller's thread (``send_synchronously``)."""

    def running(self) -> bool:
        """Whether the handler is open with a sender that takes records (ledger lock held)."""
        sender = self.sender
        return self.state is State.OPEN and sender is not None and sender.reusable

    def open(self) -> None:
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
            self._ledger.open_gate()
        if sender is not None and self._replay is not None:
            self._start_replayer(sender, self._replay)  # after OPEN: a pass stops once it is not

    def closing_sender(self) -> Sender | None:
        """The sender that delivers for close(): a new one if the last has stopped.

        Records logged while close() runs are delivered too (ledger lock held).
        """
        sender = self.sender
        if sender is not None and sender.reusable:
            return sender
        if finalizing():
            return None  # no thread can start
        return self._start_sender(draining=True)

    def sender_stopped(self, sender: Sender) -> None:
        """``sender`` has stopped (ledger lock held): later records take the slow path."""
        if self.sender is sender:
            self._ledger.close_gate()

    def send_synchronously(self) -> None:
        """From now on, send each record from the caller's thread (a pool worker, which may
        end without notice); what is already queued is still sent by the sender."""
        self.use_queues = False
        self._ledger.close_gate()  # every later record takes emit()'s slow path

    # ------------------------------------------------------------------ close()'s transitions

    def begin_close(self, deadline: float) -> Sender | None:
        """``OPEN``, ``NEW`` or ``CLOSED`` with records held → ``CLOSING`` (ledger lock held).

        Closes the gate and has a sender drain what is held until the monotonic
        ``deadline``: the running one, or a new one if records were left behind.

        Returns:
            The draining sender, or None if none could start.
        """
        sender = self.sender
        if sender is None or not sender.reusable:
            self.open()  # records were left behind: a sender to deliver them
            sender = self.sender if self.state is State.OPEN else None
        self.state = State.CLOSING
        self.closing_deadline = deadline
        self._ledger.close_gate()
        if sender is not None:
            sender.draining = True
            sender.wake.set()
        return sender

    def bring_forward(self, deadline: float) -> float:
        """A second close() with an earlier ``deadline`` brings the first's forward (ledger
        lock held); return the close's deadline, monotonic seconds."""
        closing = self.closing_deadline or deadline
        if deadline < closing:
            self.closing_deadline = closing = deadline
            self._ledger.cond.notify_all()
        return closing

    def closed(self) -> None:
        """→ ``CLOSED``, and wake whoever waits for a close (ledger lock held)."""
        self.state = State.CLOSED
        self._ledger.cond.notify_all()

    # ------------------------------------------------------------------ generations

    def _start_sender(self, *, draining: bool) -> Sender | None:
        """Start a new sender generation (ledger lock held); None if no thread can start
        (interpreter shutdown: 3.12 refuses threads in atexit hooks too)."""
        ledger = self._ledger
        sender = Sender(self._host, ledger, MAX_IN_FLIGHT, ledger.new_generation(), pace=self._pace)
        sender.draining = draining
        if not sender.start():
            return None
        self.sender = sender
        return sender

    def _start_replayer(self, sender: Sender, replay: Replay) -> None:
        """Replay what dead processes left, on a thread that ends with ``sender``."""
        replayer = Replayer(
            lambda stop: replay(stop, lambda: self.state is State.OPEN),
            self._replay_failed,
            sender.stop,
            lambda: sender.finished,
        )
        if replayer.start():
            self.replayer = replayer
