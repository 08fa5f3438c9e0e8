"""The pipeline's side of the disk spool: this process's writer, the backlog, and replay.

With ``spool_dir``, ``emit()`` writes each record to this process's writer before it is
queued, and the event carries its spool id; the id is acknowledged when the record is settled
(``Outcomes.acknowledge``). Past the in-memory caps, records wait on disk only: the backlog,
from ``backlog_from`` on, refilled into the queue in order as it drains (``refill``). A replay
thread per sender generation adopts what dead processes left and delivers it one batch at a
time through the same ledger (``replay_once``).

A refusal an operator can fix (``reasons.FIXABLE``: a denied policy, missing or unrecognised
credentials, no region, a KMS key that refuses) holds the refused records instead of
dropping them (``hold``): they leave memory, stay on disk and counted as queued, and become
the backlog again, from their first id on. Until the hold's interval has passed no record of
ours is put; then the refill admits one batch's worth, once every record of ours has left
memory (so that nothing is read back twice), as a probe. A put that succeeds ends the hold
(``resumed``); a probe refused again doubles the interval, up to ``HOLD_MAX``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from .._compat import holds_lock
from .._core.events import EVENT_OVERHEAD, SPOOL_ID, Event
from .._core.ledger import Ledger, Part
from .._core.reasons import DropReason
from .._core.sizing import Sizing
from .._process import mark_delivery_thread
from .._spool import DEFAULT_SEGMENT_BYTES, Adoption, Spool, SpooledRecord, adopt
from .outcome import HOLD_FIRST, HOLD_MAX, Acknowledge, Outcomes

__all__ = ["REPLAY_INTERVAL", "Replayer", "SpoolSide"]

REPLAY_INTERVAL = 30.0
"""Seconds between looks for records that dead processes left in the spool."""


class Settings(Protocol):
    """The options the spool side reads."""

    @property
    def log_group_name(self) -> str: ...
    @property
    def spool_dir(self) -> str | None: ...
    @property
    def spool_max_bytes(self) -> int: ...
    @property
    def spool_fsync(self) -> bool: ...
    @property
    def max_batch_size(self) -> int: ...
    @property
    def max_batch_count(self) -> int: ...
    @property
    def max_message_size(self) -> int: ...
    @property
    def large_events(self) -> str: ...


class SpoolSide:
    """One handler's spool writer and disk backlog, in one process.

    Args:
        settings: The handler's options.
        ledger: The handler's ledger.
        lock: The handler's lock, under which every admission is made.
        warn_soon: Warns from ``emit()`` (or soon after), once per key.
        closing: Whether ``close()`` runs: held records are then tried at once, not held.
    """

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        lock: threading.RLock | None,
        warn_soon: Callable[[str, str | None], None],
        closing: Callable[[], bool] = lambda: False,
    ) -> None:
        self._settings = settings
        self._sizing = Sizing(settings)  # records read back are sized as emit() sizes them
        self._ledger = ledger
        self._lock = lock
        self._warn_soon = warn_soon
        self._closing = closing
        # The hold's schedule (under the ledger's lock): when held records are next tried,
        # and the interval that led there, in seconds (monotonic clock).
        self._retry_at = 0.0
        self._step = 0.0
        self.holding: str | None = None
        """Why records of ours are held on disk (a refusal an operator can fix), or None: no
        hold. Written under the ledger's lock; ``on_disk`` counts the held records."""
        # The writer is opened at the first record of each process (a forked child opens its
        # own); ``pending`` says it is still to be opened.
        self.writer: Spool | None = None
        self.pending = settings.spool_dir is not None
        self._full_seen = 0
        self.backlog_from: int | None = None
        """The first spool id of the records kept on disk only, beyond the caps."""

    def kept(self) -> int:
        """Records this process's writer holds unacknowledged: a later process delivers them."""
        writer = self.writer
        return 0 if writer is None else writer.stats.appended - writer.stats.acked

    def own_acker(self) -> Acknowledge | None:
        """Acknowledges records of this process's writer, if it has one."""
        writer = self.writer
        return writer.ack if writer is not None else None

    # ------------------------------------------------------------------ the writer

    def open_writer(self) -> Spool | None:
        """Open this process's writer at its first record; None means memory only."""
        self.pending = False
        settings = self._settings
        directory = settings.spool_dir
        if directory is None:
            return None
        # Segments small enough that a small spool still has several.
        segment = max(4096, min(DEFAULT_SEGMENT_BYTES, settings.spool_max_bytes // 8))
        self.writer = Spool.open(  # warns once and returns None if it cannot be used
            directory,
            settings.log_group_name,
            max_bytes=settings.spool_max_bytes,
            segment_bytes=segment,
            fsync=settings.spool_fsync,
            warn=lambda message: self._warn_soon(message, None),  # under the handler's lock
        )
        return self.writer

    def write(
        self, stream: str, timestamp: int, message: str, size: int, text: bytes | None
    ) -> Event:
        """Write a record to this process's spool (``emit()``, under the handler's lock,
        opening the writer at the first record) and return its event: with its spool id, or
        without one if the spool cannot be used or refused it (see ``refused``).

        ``size`` is the message's size in bytes (a split's, see ``Event``); ``text`` is its
        UTF-8 encoding when ``emit()`` has made it, else None.
        """
        writer = self.writer
        if writer is None:
            writer = self.open_writer()
            if writer is None:  # warned once: memory only from now on
                return (stream, timestamp, message, size)
        spool_id = writer.append(stream, timestamp, message, text)
        if spool_id is None:
            self.refused(writer)
            return (stream, timestamp, message, size)
        return (stream, timestamp, message, size, spool_id)

    def refused(self, writer: Spool) -> None:
        """Note a record the writer did not take: full (warned once), or an I/O failure
        (which the spool warns about itself)."""
        full = writer.stats.full
        if full == self._full_seen:
            self._full_seen = 0  # an I/O failure, not a full spool
            return
        self._full_seen = full
        settings = self._settings
        self._warn_soon(  # emit() holds the handler's lock
            f"the spool in {settings.spool_dir} holds spool_max_bytes={settings.spool_max_bytes}"
            " bytes: new records are kept in memory only, and dropped and counted in "
            "stats.dropped['spool_full'] when the memory queue is full too",
            DropReason.SPOOL_FULL.value,
        )

    @property
    def full(self) -> bool:
        """Whether the writer refused the last record for want of room."""
        return self.writer is not None and bool(self._full_seen)

    def close_writer(self) -> None:
        """Close the writer once nothing it wrote is held or in flight (ledger lock held); the
        next record opens a new one. Its unacknowledged records stay for an adopter."""
        writer = self.writer
        ledger = self._ledger
        if writer is None or ledger.held or ledger.in_flight or self.backlog_from is not None:
            return  # a put abandoned by close() may still be answered: it acks here
        # emit() holds the handler's lock from writing a record to the spool until it is
        # queued: a writer closed in between would never see that record acknowledged, and
        # the next process would deliver it again. The writer then stays open, for a later
        # close().
        lock = self._lock
        if lock is None or holds_lock(lock) or not lock.acquire(blocking=False):
            return  # in emit() on this thread (a signal handler closes us) or on another
        try:
            writer.close()
            self.writer = None
            self.pending = self._settings.spool_dir is not None
        finally:
            lock.release()

    # ------------------------------------------------------------------ the backlog

    def keep_on_disk(self, event: Event, cost: int) -> bool:
        """Whether spooled ``event`` waits on disk only, behind the backlog (ledger lock held).

        The first record that finds the queue full starts the backlog: it and every later
        one wait on disk, refilled in order as the queue drains.
        """
        ledger = self._ledger
        if self.backlog_from is None and not ledger.has_room(cost):
            self.backlog_from = event[-1]
            ledger.spill()
        if self.backlog_from is None:
            return False
        ledger.on_disk += 1
        return True

    def end_backlog(self) -> None:
        """``close()`` counted the backlog and the held records as shutdown; they stay on
        disk, and the hold is over (ledger lock held)."""
        self.holding = None
        self._step = 0.0
        if self.backlog_from is not None:
            self.backlog_from = None
            self._ledger.unspill()

    # ------------------------------------------------------------------ the hold

    def waiting(self, part: Part) -> bool:
        """Whether ``part`` holds records of ours that a hold keeps from being put now."""
        events = part.events
        return (
            self.holding is not None
            and part.claim.acker is None
            and bool(events)
            and len(events[0]) > SPOOL_ID
            and time.monotonic() < self._retry_at
            and not self._closing()
        )

    def hold(self, part: Part, reason: str, *, refused: bool) -> float | None:
        """Hold the spooled records of ``part`` on disk for ``reason`` and settle ``part``.

        Its records leave memory and become the backlog again from their first id on; any
        memory-only record of it is dropped as ``reason``. ``refused``: the service refused
        them just now (a first refusal starts the hold, a refused probe doubles its
        interval); else they met a hold already in force and were not sent.

        Returns:
            Seconds until held records are tried again, or None when ``part`` cannot be
            held (none of it is on disk, it was adopted from a dead process, or ``close()``
            runs): the caller settles it.
        """
        events = part.events
        spooled: list[Event] = [event for event in events if len(event) > SPOOL_ID]
        claim = part.claim
        if not spooled or claim.acker is not None or self.writer is None or self._closing():
            return None
        ledger = self._ledger
        with ledger.lock:
            if claim.abandoned or part.settled or (self.holding is None and not refused):
                return None  # (the hold ended since ``waiting``: send them)
            now = time.monotonic()
            if self.holding is None:
                self._step = HOLD_FIRST
                self._retry_at = now + self._step
            elif refused and now >= self._retry_at:  # a probe refused again
                self._step = min(max(self._step, HOLD_FIRST) * 2, HOLD_MAX)
                self._retry_at = now + self._step
            first = min(event[-1] for event in spooled)  # the spool ids
            if self.backlog_from is None or first < self.backlog_from:
                self.backlog_from = first
            ledger.spill()
            if len(spooled) < len(events):
                memory: list[Event] = [event for event in events if len(event) <= SPOOL_ID]
                in_memory, on_disk = ledger.divide(part, [memory, spooled])
                ledger.settle(in_memory, reason=reason)
                held = ledger.settle(on_disk, reason=reason, hold=True)
            else:
                held = ledger.settle(part, reason=reason, hold=True)
            if held:
                self.holding = reason
            return max(0.0, self._retry_at - now)

    def resumed(self) -> None:
        """A put of this process's records succeeded: the hold, if any, is over."""
        if self.holding is None:
            return
        with self._ledger.lock:
            self.holding = None
            self._step = 0.0

    def refill(self) -> float | None:
        """Admit records kept on disk beyond the caps, oldest first, as far as the caps
        allow; back to the fast path once none is left. The scheduler calls this.

        Returns:
            Seconds until held records are due to be tried, or None: nothing to wait for
            (a worker that settles a batch wakes the scheduler).
        """
        start = self.backlog_from
        writer = self.writer
        if start is None or writer is None:
            return None
        ledger = self._ledger
        probe = self.holding is not None
        if probe:
            if not self._closing():
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    return wait
            if ledger.held or ledger.in_flight:
                # Records of ours may still be in memory with ids past the hold's first:
                # read back now, they would be delivered twice.
                return None
        room = ledger.max_events - ledger.held
        room_bytes = ledger.max_bytes - (ledger.admitted_bytes - ledger.released_bytes)
        if room <= 0 or room_bytes <= 0:
            return None
        most = self._settings.max_batch_count if probe else 1000
        limits = {"max_records": min(room, most), "max_bytes": max(1, min(room_bytes, 1 << 20))}
        records = writer.backlog(start, **limits)  # read without holding up emit()
        lock = self._lock
        if lock is None:
            return None
        with lock:  # admissions are made under it
            if self.backlog_from != start:
                return None  # closed or held meanwhile
            if not records:
                # emit() cannot append while we hold its lock: empty now means caught up.
                records = writer.backlog(start, **limits)
            with ledger.lock:
                if self.backlog_from != start:
                    # close() counted them as shutdown meanwhile (it takes the ledger's lock
                    # only): queueing them now would count them twice.
                    return None
                self.backlog_from = self._admit(records, start)
        return None

    def _admit(self, records: Sequence[SpooledRecord], start: int) -> int | None:
        """Queue ``records`` read from the backlog as room allows; the next id to read, or
        None once the backlog is caught up (both locks held)."""
        ledger = self._ledger
        if not records:
            unreadable, ledger.on_disk = ledger.on_disk, 0
            if unreadable:  # damaged on disk under us (counted in spool stats too)
                ledger.drop(DropReason.SPOOL_ERROR, unreadable)
            ledger.unspill()
            return None
        for record in records:
            message, size = self._sizing.read_back(record.message, ledger)
            cost = size + EVENT_OVERHEAD
            if not ledger.has_room(cost):
                break
            ledger.admitted += 1
            ledger.admitted_bytes += cost
            ledger.queue.append((record.stream, record.timestamp_ms, message, size, record.id))
            ledger.on_disk = max(0, ledger.on_disk - 1)
            start = record.id + 1
        return start

    # ------------------------------------------------------------------ replay

    def replay_once(
        self, outcomes: Outcomes, stop: threading.Event, is_open: Callable[[], bool]
    ) -> None:
        """Adopt what dead processes of this log group left in the spool and deliver it.

        Oldest first, one batch at a time (so memory holds one batch of it), with the
        original timestamps and stream names. Each record is settled in ``stats`` like one
        given to ``emit()`` and counted in ``replayed`` once delivered; records that cannot
        be delivered now stay in the spool for a later pass or process.
        """
        settings = self._settings
        ledger = self._ledger
        with adopt(
            settings.spool_dir or "",
            settings.log_group_name,
            batch_records=settings.max_batch_count,
            batch_bytes=settings.max_batch_size,
        ) as adoption:
            corrupt = 0
            try:
                for batch in adoption:
                    if adoption.stats.corrupt > corrupt:
                        ledger.count("corrupt", adoption.stats.corrupt - corrupt)
                        corrupt = adoption.stats.corrupt
                        self._mark_damage(adoption)
                    if not is_open() or stop.is_set():
                        return  # closing: the rest stays claimed by nobody once we return
                    if self._replay_batch(outcomes, batch.records, batch.ack, stop):
                        return  # refused until fixed: the rest stays too, for a later pass
            finally:
                if adoption.stats.corrupt > corrupt:
                    ledger.count("corrupt", adoption.stats.corrupt - corrupt)
                    self._mark_damage(adoption)

    def _mark_damage(self, adoption: Adoption) -> None:
        """What a dead process's spool lost to damage, for the drop marker of its stream: the
        dead process cannot say so, and the records are not in anyone's ``received``."""
        damage = adoption.take_damage()
        gaps = self._ledger.gaps
        if gaps is None or not damage:
            return
        with self._ledger.lock:
            for lost in damage:
                gaps.add(lost.stream, lost.first_ms, lost.last_ms, "corrupt", lost.lost)

    def _replay_batch(
        self,
        outcomes: Outcomes,
        records: Sequence[SpooledRecord],
        ack: Acknowledge,
        stop: threading.Event,
    ) -> bool:
        """Deliver one adopted batch; True if the service refused it for a reason an operator
        can fix (it went back to its spool)."""
        lock = self._lock
        if lock is None:
            return False
        ledger = self._ledger
        events: list[Event] = []
        for record in records:  # sized without the lock, which emit() waits for
            message, size = self._sizing.read_back(record.message, ledger, lock)
            events.append((record.stream, record.timestamp_ms, message, size, record.id))
        with lock:  # admissions are made under it
            claim = ledger.claim_now(events)
        claim.acker = ack
        try:
            return outcomes.deliver_claim(claim, events, stop, deadline=None)
        finally:
            self._ledger.settle_rest(claim, DropReason.INTERNAL_ERROR)


class Replayer:
    """One sender generation's replay thread: a pass at start, then every REPLAY_INTERVAL.

    Args:
        run_once: One replay pass; it returns early once ``stop`` is set.
        on_error: Reports an unexpected exception of a pass.
        stop: The generation's stop event.
        finished: Whether the generation has stopped.
    """

    def __init__(
        self,
        run_once: Callable[[threading.Event], None],
        on_error: Callable[[BaseException], None],
        stop: threading.Event,
        finished: Callable[[], bool],
    ) -> None:
        self._run_once = run_once
        self._on_error = on_error
        self._stop = stop
        self._finished = finished
        self.idle = threading.Event()
        """Clear while a pass runs or is due; ``flush()`` waits for it."""
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start the thread; False if no thread can start (interpreter shutdown)."""
        thread = threading.Thread(target=self._run, name="watchtower-refresh-replay", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            self.idle.set()
            return False
        self._thread = thread
        return True

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the thread to end (its sender has stopped)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        mark_delivery_thread()
        try:
            while not self._stop.is_set() and not self._finished():
                self.idle.clear()
                try:
                    self._run_once(self._stop)
                except Exception as exc:  # keep the application's logging going
                    self._on_error(exc)
                finally:
                    self.idle.set()
                self._stop.wait(REPLAY_INTERVAL)
        finally:
            self.idle.set()
