"""The sender: one scheduler thread and a few workers that deliver a handler's queue.

The scheduler takes records off the queue (as ledger claims) when a batch is full, when
``send_interval`` has passed since it saw the first waiting record, or when a flush or
``close()`` asks; it sets aside events outside the service's time window, splits the rest
into batches per stream and hands them to workers. At most one batch per stream is in flight
and at most ``max_in_flight`` in all, so a stream that is backing off (throttled, denied,
missing) holds one worker and never the others' delivery.

A ``Sender`` is one generation: ``close()`` stops it, and a record logged afterwards starts a
new one. Each generation holds the ledger's token from when it started
(``Ledger.new_generation``) and presents it at every take: once a newer generation has
started, an older one takes nothing, arms no wake-up, and ends after the batches it already
holds. Its threads are daemons that take no lock the application holds: at interpreter exit
nothing waits for them but ``close()``, which is bounded.

Once the service has throttled this process (its ``pace`` is on), workers wait for their
slot before each put (``deliver_batch``), and the scheduler holds the queue while every
queued record's stream already has a batch out or waiting: records gather meanwhile, so the
process sends less often and more per put, up to the batch limits (a full batch is taken at
once). A flush or ``close()`` takes everything at once, as before.

With self-metrics (``metrics``), the scheduler is also their timer: every interval it hands a
worker a job that writes one event to the metrics stream, and once more when ``close()``
has had everything settled, before it stops. The job goes through the same per-stream
queue as batches, so at most one such event is in flight and a slow one holds one worker.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import operator
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .._core.events import Event, split_batches, split_by_age
from .._core.ledger import Claim, Ledger, Part
from .._process import keep_sigterm_off_this_thread, mark_delivery_thread

if TYPE_CHECKING:
    from .metrics import SelfMetrics
    from .pace import Pace

__all__ = ["Sender", "SenderHost", "Waker"]

_Job = Part | Callable[[threading.Event], object]
"""A batch of records, or a self-metrics event to write (given the stop event)."""
_Task = tuple[str, _Job]
_LOOK_AHEAD = 1000  # queued records looked at to decide that a flush may wait for a worker
_stream_of = operator.itemgetter(0)


def _one_stream(events: list[Event]) -> bool:
    """Whether every event goes to the same stream (the common case), at C speed."""
    return len(set(map(_stream_of, events))) == 1


class Waker:
    """Wakes the scheduler; safe to call from anywhere, a signal handler included.

    ``threading.Event.set`` takes a lock that is not re-entrant: a signal handler that logs
    while the main thread is inside ``set()`` would wait for itself forever.
    ``SimpleQueue.put`` is documented as re-entrant.
    """

    __slots__ = ("_tokens",)

    def __init__(self) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()

    def set(self) -> None:
        """Wake the scheduler (or make its next wait return at once)."""
        self._tokens.put(None)

    def wait(self, timeout: float | None) -> None:
        """Wait until woken or ``timeout`` seconds pass, then forget every wake-up so far."""
        tokens = self._tokens
        try:
            tokens.get(timeout=timeout)
        except queue.Empty:
            return
        while not tokens.empty():
            tokens.get_nowait()


class SenderHost(Protocol):
    """What a sender needs from its handler."""

    @property
    def send_interval(self) -> float: ...
    @property
    def max_batch_size(self) -> int: ...
    @property
    def max_batch_count(self) -> int: ...
    @property
    def metrics(self) -> SelfMetrics | None:
        """The handler's self-metrics, or None (``metrics_interval`` unset)."""

    def deliver(self, stream: str, part: Part, stop: threading.Event) -> None:
        """Deliver one batch of one stream and settle it in the ledger."""

    def reject_by_age(self, claim: Claim, too_old: list[Event], too_new: list[Event]) -> None:
        """Settle events outside the service's time window as rejected."""

    def settle_failed(self, part: Part | None, exc: BaseException) -> None:
        """Settle ``part`` (if any) as an internal error and say so once."""

    def sender_stopped(self, sender: Sender) -> None:
        """``sender`` has stopped (ledger lock held): send later records the slow way."""

    def issue_warnings(self) -> None:
        """Issue the warnings ``emit()`` put aside (it must not warn under its locks)."""

    def refill(self) -> float | None:
        """Queue records the handler kept on disk beyond the caps, as room allows; return
        the seconds until records held for a refusal are due again, or None."""


class Sender:
    """One generation of delivery threads for one handler's ledger.

    Args:
        host: The handler.
        ledger: Its ledger (queue, caps and counts).
        max_in_flight: Most batches being sent at once, each to a different stream.
        generation: The ledger's token for this generation (``Ledger.new_generation``).
        pace: The process's pace of puts, or None: records are taken as they are due.
    """

    def __init__(
        self,
        host: SenderHost,
        ledger: Ledger,
        max_in_flight: int,
        generation: int,
        *,
        pace: Pace | None = None,
    ) -> None:
        self._host = host
        self._pace = pace
        self._ledger = ledger
        self._generation = generation
        self._max_in_flight = max_in_flight
        self.wake = Waker()
        """Set to make the scheduler look at the queue again."""
        self.stop = threading.Event()
        """Set to cut backoff waits short: ``close()`` ran out of time."""
        self.flush_target = 0
        """Admission number up to which a flush or close wants everything taken now."""
        self.draining = False
        """Take everything and stop once it is settled (``close()``)."""
        self.finished = False
        """The scheduler has stopped (or decided to, under the ledger's lock)."""
        self._abandoned = False
        self._thread: threading.Thread | None = None
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._pending: dict[str, collections.deque[_Job]] = {}
        self._busy: set[str] = set()
        self._workers = 0
        self._worker_threads: list[threading.Thread] = []
        self._idle_workers = 0
        self._timer_start: float | None = None
        self._final_queued = False  # the last self-metrics event of a close() is queued

    # ------------------------------------------------------------------ control

    def start(self) -> bool:
        """Start the scheduler; False if no thread can start (interpreter shutdown)."""
        thread = threading.Thread(target=self._run, name="watchtower-refresh-sender", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            return False
        self._thread = thread
        return True

    def threads(self) -> list[threading.Thread]:
        """The scheduler and workers still running."""
        found = [t for t in self._worker_threads if t.is_alive()]
        if self._thread is not None and self._thread.is_alive():
            found.insert(0, self._thread)
        return found

    @property
    def alive(self) -> bool:
        """Whether the scheduler thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the scheduler to end."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, timeout))

    def abandon(self) -> None:
        """Stop at once: what is pending was settled elsewhere (``Ledger.abandon``)."""
        self._abandoned = True
        self.stop.set()
        self.wake.set()

    @property
    def fenced(self) -> bool:
        """Whether a newer generation has started: this one takes no more records."""
        return self._ledger.generation != self._generation

    @property
    def reusable(self) -> bool:
        """Whether a record may still be handed to this generation (not stopped, not dying)."""
        return not (self.finished or self._abandoned or self.stop.is_set()) and self.alive

    # ------------------------------------------------------------------ scheduler

    def _run(self) -> None:
        mark_delivery_thread()
        keep_sigterm_off_this_thread()
        try:
            self._loop()
        finally:
            ledger = self._ledger
            with ledger.lock:
                self.finished = True
                self._host.sender_stopped(self)  # the next record starts a new sender
                # Batches not handed out: settled here if the loop failed (abandoned ones
                # were settled by Ledger.abandon already).
                for pending in self._pending.values():
                    for job in pending:
                        if isinstance(job, Part):  # a metrics event's counts wait for the next
                            ledger.settle_rest(job.claim, "internal_error")
                self._pending.clear()
                ledger.cond.notify_all()
            for _ in range(self._workers):
                self._tasks.put(None)

    def _loop(self) -> None:
        while not self._abandoned:
            self._host.issue_warnings()
            self._collect_done()
            wait = self._metrics_due(self._take_what_is_due())
            self._dispatch()
            if wait is None:
                if not self._pending and not self._busy:
                    if self._queue_final_metrics():
                        continue  # written before we stop, with everything settled
                    if self._may_stop():
                        return  # draining, and everything is settled
                wait = math.inf
            if wait > 0:
                self._arm_wake()
                if self._due_now() or not self._done.empty():
                    continue
                self.wake.wait(None if wait == math.inf else wait)

    def _metrics_due(self, wait: float | None) -> float | None:
        """Queue a periodic self-metrics event if one is due; shorten ``wait`` to the next."""
        metrics = self._host.metrics
        if metrics is None or wait is None or self.fenced:
            return wait  # off, or about to stop (close() writes the last one)
        send, next_in = metrics.due(time.monotonic())
        if send and not self._pending.get(metrics.stream):  # one waiting is enough
            self._queue_metrics(metrics, final=False)
        return min(wait, next_in)

    def _queue_final_metrics(self) -> bool:
        """Queue the self-metrics event of a close(), once everything else is settled: its
        counts then add up to ``stats``. False if there is none to write."""
        metrics = self._host.metrics
        if metrics is None or not self.draining or self.fenced or self._final_queued:
            return False
        self._final_queued = True  # again only after more records are taken
        self._queue_metrics(metrics, final=True)
        return True

    def _queue_metrics(self, metrics: SelfMetrics, *, final: bool) -> None:
        job = functools.partial(metrics.send, final=final)
        self._pending.setdefault(metrics.stream, collections.deque()).append(job)

    def _may_stop(self) -> bool:
        """Decide, under the ledger's lock, that nothing more will come (close() drains, or a
        newer generation takes what comes)."""
        with self._ledger.lock:
            if self.fenced or (self.draining and not self._ledger.queue):
                self.finished = True
                return True
            return False

    def _saturated(self) -> bool:
        """Whether batches of idle streams wait because every worker is busy.

        Batches waiting only behind their own stream's busy worker (a stream backing off)
        do not count: records of other streams are still taken and sent.
        """
        return any(stream not in self._busy for stream in self._pending)

    def _due_now(self) -> bool:
        """Re-checked after arming the wake-up: a record may have come in meanwhile.

        Agrees with ``_take_what_is_due``: what it would not take now is not due.
        """
        ledger = self._ledger
        if not ledger.queue or self.fenced:
            return False
        if self.draining or self.flush_target > ledger.drained:
            return not self._behind_busy_streams()
        if self._saturated():
            return False
        return self._timer_start is None or self._full()

    def _behind_busy_streams(self) -> bool:
        """Whether every queued record is for a stream whose worker is busy and which has a
        batch waiting already: a flush or close() then takes them once that batch is out.

        Without this, a close() under a steady stream of records took them as they came, a
        few at a time, and sent them one small put after another.
        """
        return self._behind({stream for stream in self._pending if stream in self._busy})

    def _behind(self, waiting: set[str]) -> bool:
        """Whether every queued record is for one of the ``waiting`` streams."""
        if not waiting:
            return False
        # The oldest records only, at C speed (emit() appends under the GIL, so it cannot
        # interleave): a stream whose first record lies further back waits one put at most.
        head = itertools.islice(self._ledger.queue, _LOOK_AHEAD)
        return set(map(_stream_of, head)) <= waiting

    def _gathering(self) -> float:
        """Seconds to let records gather before a take that is due: 0 to take them now.

        Taken now, they would only wait, as one more small batch: when every queued record
        is for a stream whose worker is busy and which has a batch waiting already (a
        stream backing off); and, once the service has throttled the process (its pace is
        on), when every queued record's stream has a batch out (waiting for its slot) or
        waiting. Until a worker finishes, which wakes us (inf). A full batch is taken at
        once: it is as full as a put can be.

        The slots themselves are reserved by the workers, first come first served: a
        scheduler that waited for a free slot before taking would lose it, every time, to
        the resends of a stream that is throttled again and again.

        Without this, a throttled stream's records were taken every ``send_interval`` and
        each small batch was sent, and retried, on its own.
        """
        if self._full():
            return 0.0
        if self._behind_busy_streams():
            return math.inf
        pace = self._pace
        if pace is not None and pace.on and self._behind(self._busy | self._pending.keys()):
            return math.inf
        return 0.0

    def _full(self) -> bool:
        """Whether a full batch waits, or the caps refused a record: take what is queued."""
        ledger = self._ledger
        return (
            len(ledger.queue) >= self._host.max_batch_count
            or ledger.admitted_bytes - ledger.drained_bytes >= self._full_charge()
            or ledger.overflowing
        )

    def _arm_wake(self) -> None:
        """Tell emit() when to wake us: the first record if idle, else a full batch."""
        if self.fenced:
            return  # the wake-up is the newer generation's to arm
        self._ledger.arm_wake(self._host.max_batch_count, self._full_charge())

    def _full_charge(self) -> int:
        """Bytes charged to the caps for a full batch: estimates (non-ASCII text) overstate
        sizes, by as much as the last take found, and a batch is full by its exact size.
        Never more than half the byte cap, which must hold a full batch and more."""
        ledger = self._ledger
        size = self._host.max_batch_size
        return min(int(size * ledger.queue.charge_ratio), max(size, ledger.max_bytes // 2))

    def _take_what_is_due(self) -> float | None:
        """Take records off the queue if they are due; return how long to wait (None: stop)."""
        if self.fenced:
            return None  # a newer generation takes what is queued: end once ours is settled
        held_due = None
        if self._ledger.gate.spilling:
            try:
                held_due = self._host.refill()
            except Exception as exc:  # keep the scheduler alive
                self._host.settle_failed(None, exc)
        wait = self._take_due()
        if held_due is not None and wait is not None:
            wait = min(wait, held_due)  # wake up to try what a hold kept on disk
        return wait

    def _take_due(self) -> float | None:
        ledger = self._ledger
        host = self._host
        now = time.monotonic()
        if not ledger.queue:
            self._timer_start = None
            return None if self.draining else math.inf
        if self._timer_start is None:
            self._timer_start = now
        if self.draining or self.flush_target > ledger.drained:
            if self._behind_busy_streams():
                # Taken now, they would wait behind the batch already waiting for their
                # stream's worker as one more, smaller batch: let them gather meanwhile. The
                # worker that finishes wakes us.
                return math.inf
            self._take(None, None)
            self._timer_start = None
            return 0.0 if ledger.queue else (None if self.draining else math.inf)
        if self._saturated():
            # Every worker is busy and batches wait for one: let records gather meanwhile,
            # so the next take makes fuller batches (with many streams, fewer and larger
            # puts). A worker that finishes wakes us.
            return math.inf
        gathering = self._gathering()
        if gathering > 0:
            return gathering  # emit() wakes us if a full batch gathers meanwhile
        if self._full():
            # Everything queued, so that each stream's batch is as full as it can be: with
            # many streams, one batch's worth of records would be many small puts.
            self._take(None, None)
            return 0.0
        due = self._timer_start + host.send_interval
        if now >= due:
            self._take(None, None)
            self._timer_start = None
            return math.inf if not ledger.queue else 0.0
        return due - now

    def _take(self, max_events: int | None, max_bytes: int | None) -> None:
        taken = self._ledger.take(max_events, max_bytes, generation=self._generation)
        if taken is None:
            return
        claim, events = taken
        self._final_queued = False  # these are in no close()'s last metrics event yet
        try:
            events, too_old, too_new = split_by_age(events, int(time.time() * 1000))
            if too_old or too_new:
                self._host.reject_by_age(claim, too_old, too_new)
            by_stream: dict[str, list[Event]] = {}
            if events and events[0][0] == events[-1][0] and _one_stream(events):
                by_stream[events[0][0]] = events
            else:
                for event in events:
                    by_stream.setdefault(event[0], []).append(event)
            host = self._host
            for stream, stream_events in by_stream.items():
                pending = self._pending.setdefault(stream, collections.deque())
                batches = split_batches(stream_events, host.max_batch_size, host.max_batch_count)
                pending.extend(claim.part(batch) for batch in batches)
        except Exception as exc:  # keep the scheduler alive; count what it could not place
            self._host.settle_failed(None, exc)
            self._ledger.settle_rest(claim, "internal_error")

    def _collect_done(self) -> None:
        done = self._done
        while not done.empty():
            self._busy.discard(done.get_nowait())
            self._idle_workers += 1

    def _dispatch(self) -> None:
        """Hand each idle stream's next batch to a worker, up to ``max_in_flight``."""
        for stream in list(self._pending):
            if stream in self._busy:
                continue
            if len(self._busy) >= self._max_in_flight:
                return
            pending = self._pending[stream]
            job = pending.popleft()
            if not pending:
                del self._pending[stream]
            self._busy.add(stream)
            if self._idle_workers:
                self._idle_workers -= 1
            elif not self._start_worker():
                self._work((stream, job))  # no thread can start: send from here
                self._busy.discard(stream)
                continue
            self._tasks.put((stream, job))

    def _start_worker(self) -> bool:
        worker = threading.Thread(
            target=self._run_worker, name="watchtower-refresh-worker", daemon=True
        )
        try:
            worker.start()
        except RuntimeError:
            return False
        self._workers += 1
        self._worker_threads.append(worker)
        return True

    # ------------------------------------------------------------------ workers

    def _run_worker(self) -> None:
        mark_delivery_thread()
        keep_sigterm_off_this_thread()
        while True:
            task = self._tasks.get()
            if task is None:
                return
            self._work(task)
            self._done.put(task[0])
            self.wake.set()

    def _work(self, task: _Task) -> None:
        stream, job = task
        if not isinstance(job, Part):
            job(self.stop)  # a self-metrics event: it reports its own failures
            return
        try:
            self._host.deliver(stream, job, self.stop)
        except Exception as exc:  # settle it as an error; the worker goes on
            self._host.settle_failed(job, exc)
