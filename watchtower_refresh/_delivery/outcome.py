"""One place that delivers a batch and settles what became of it.

A batch goes out through ``deliver_batch`` (put, refresh, create, back off), then, in this
order: its spool copies are acknowledged unless a later process may do better on them, the
replayed count is kept, a warning is given once per episode, and the batch is settled in the
ledger. A refusal an operator can fix (``reasons.FIXABLE``) holds spooled records on disk
instead (``Holder.hold``): they stay queued and are tried again after the hold's interval;
records adopted from a dead process go back to its spool, unreceived, for a later pass.
Everything that follows from the outcome happens before the settlement: a ``flush()`` that
returns once a batch is settled sees the spool acknowledged and the warning issued, and
``close()`` never shuts a spool writer still owed an acknowledgement.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._core.events import (
    EVENT_OVERHEAD,
    SIZE,
    SPOOL_ID,
    Event,
    RejectedCounts,
    split_batches,
    split_by_age,
    utf8_size,
)
from .._core.ledger import Claim, Ledger, Part
from .._core.markers import PLAIN, Gap, Style, render, stamp
from .._core.parts import plan_puts
from .._core.reasons import DropReason, is_fixable, keeps_spooled
from .._process import summarizing
from .._report import Reporter, records
from .deliver import Delivered, Target, deliver_batch

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

    from .pace import Pace

__all__ = ["HOLD_FIRST", "HOLD_MAX", "Acknowledge", "Holder", "Outcomes"]

HOLD_FIRST = 5.0
"""Seconds before records held for a refusal an operator can fix are first tried again."""
HOLD_MAX = 300.0
"""Longest interval, in seconds, between tries of held records: it doubles up to this."""


Acknowledge = Callable[[list[int]], None]
"""Removes settled records, by spool id, from the spool they were read from."""

_size_of = operator.itemgetter(SIZE)
_NONE_REJECTED = RejectedCounts(0, 0, 0)


class Settings(Protocol):
    """The options a batch's delivery reads."""

    @property
    def log_group_name(self) -> str: ...
    @property
    def create_log_group(self) -> bool: ...
    @property
    def create_log_stream(self) -> bool: ...
    @property
    def max_batch_size(self) -> int: ...
    @property
    def max_batch_count(self) -> int: ...
    @property
    def log_group_retention_days(self) -> int | None: ...
    @property
    def max_message_size(self) -> int: ...
    @property
    def large_events(self) -> str: ...


class Holder(Protocol):
    """Where records refused for a reason an operator can fix wait (the spool side)."""

    @property
    def holding(self) -> str | None: ...
    def waiting(self, part: Part) -> bool: ...
    def hold(self, part: Part, reason: str, *, refused: bool) -> float | None: ...
    def resumed(self) -> None: ...


class Outcomes:
    """Delivers batches of one handler and settles each once.

    Args:
        settings: The handler's options.
        ledger: Where each batch is settled.
        target: The client and the set-up of the group and streams.
        put: Sends one batch (the handler's, so that watchtower's hook is honoured).
        reporter: Gives the warnings.
        own_acker: The acknowledgement of this process's own spool writer, or None.
        closing_deadline: When ``close()`` gives up, or None while the handler is open.
        holder: Holds refused records of this process's spool, or None (no spool).
        marker_style: How the handler's formatter writes records (text or JSON, the zone),
            asked when a drop marker is written.
        pace: The process's pace of puts, or None: not paced.
    """

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        target: Target,
        put: Callable[[CloudWatchLogsClient, str, Sequence[Event]], Any],
        reporter: Reporter,
        own_acker: Callable[[], Acknowledge | None],
        closing_deadline: Callable[[], float | None],
        holder: Holder | None = None,
        marker_style: Callable[[], Style] = lambda: PLAIN,
        pace: Pace | None = None,
    ) -> None:
        self._settings = settings
        self._pace = pace
        self._marker_style = marker_style
        self.last_put_succeeded = False
        """Whether the latest put answered (records' or a marker's, of any thread): a hint
        for ``mark_the_rest``, which tries nothing against a service that does not answer."""
        self._ledger = ledger
        self.target = target
        self._put = put
        self._reporter = reporter
        self._own_acker = own_acker
        self._closing_deadline = closing_deadline
        self._holder = holder
        # Records over this many bytes are split records, cut into parts as they are sent.
        self._split_at = (
            settings.max_message_size - EVENT_OVERHEAD if settings.large_events == "split" else None
        )

    def deliver_claim(
        self,
        claim: Claim,
        events: list[Event],
        stop: threading.Event | None,
        *,
        deadline: float | None,
    ) -> bool:
        """Deliver ``events`` of ``claim`` from this thread: by stream, in batches.

        Returns whether a batch was refused for a reason an operator can fix (held, or given
        back to the spool it was adopted from).
        """
        settings = self._settings
        now_ms = int(time.time() * 1000)
        refused = False
        for stream, stream_events in _by_stream(events):
            sendable, too_old, too_new = split_by_age(stream_events, now_ms)
            if too_old or too_new:
                self.reject_by_age(claim, too_old, too_new)
            for batch in split_batches(sendable, settings.max_batch_size, settings.max_batch_count):
                refused |= self.deliver(stream, claim.part(batch), stop, deadline=deadline)
        return refused

    def deliver(
        self,
        stream: str,
        part: Part,
        stop: threading.Event | None,
        *,
        deadline: float | None = None,
    ) -> bool:
        """Deliver one batch and settle it; the scheduler's workers call this.

        Returns whether it was refused for a reason an operator can fix (and held, or given
        back to the spool it was adopted from).
        """
        split_at = self._split_at
        if split_at is not None and part.events and max(map(_size_of, part.events)) > split_at:
            return self._deliver_split(stream, part, split_at, stop, deadline)
        return self._deliver(stream, part, None, stop, deadline)

    def _deliver_split(
        self,
        stream: str,
        part: Part,
        split_at: int,
        stop: threading.Event | None,
        deadline: float | None,
    ) -> bool:
        """Deliver a batch that holds split records: the records whose parts fit in one put
        together, each in its own part of the batch, so that what a put delivered is settled
        as delivered even when a later put fails."""
        settings = self._settings
        groups = plan_puts(part.events, split_at, settings.max_batch_size, settings.max_batch_count)
        if len(groups) == 1:
            return self._deliver(stream, part, groups[0][1:], stop, deadline)
        refused = False
        divided = self._ledger.divide(part, [records for records, _, _ in groups])
        if not divided:
            return False  # settled already
        for sub, (_, puts, counts) in zip(divided, groups, strict=True):
            try:
                refused |= self._deliver(stream, sub, (puts, counts), stop, deadline)
            except Exception as exc:  # settle it as an error; the next group goes on
                self.settle_failed(sub, exc)
        return refused

    def _deliver(
        self,
        stream: str,
        part: Part,
        puts: tuple[list[list[Event]], list[int]] | None,
        stop: threading.Event | None,
        deadline: float | None,
    ) -> bool:
        """``deliver``, with the puts that carry ``part``'s records when some are split."""
        holder = self._holder
        stop = stop or threading.Event()
        if self._on_hold(part):
            return True
        limit = self._limit(deadline)

        def send(batch: Sequence[Event]) -> Delivered:
            return self._put_batch(stream, batch, limit, stop)

        result = send(part.events) if puts is None else _send_parts(send, *puts)
        self.last_put_succeeded = result.reason is None
        gaps = self._ledger.gaps
        if result.reason is None and gaps is not None and stream in gaps:
            # Before settling, like everything that follows from the outcome: a flush()
            # that returns has seen the marker written.
            self._mark(stream, limit, stop)
        acker = part.claim.acker
        if result.reason is None and acker is None and holder is not None:
            holder.resumed()
        if (
            result.reason is not None
            and is_fixable(result.reason)
            and not result.delivered
            and self._keep(part, result.reason, result.warning)
        ):
            return True
        if not keeps_spooled(result.reason):
            self.acknowledge(part.events, acker)
        if acker is not None and result.delivered:
            self._ledger.count("replayed", result.delivered)
        self._warn(result, part.events)
        self._ledger.settle(
            part,
            delivered=result.delivered,
            rejected=result.rejected._asdict(),
            reason=result.reason,
        )
        return False

    def _on_hold(self, part: Part) -> bool:
        """Whether a hold is in force for ``part``: not sent, back on disk until its interval
        has passed."""
        holder = self._holder
        return (
            holder is not None
            and holder.waiting(part)
            and holder.hold(part, holder.holding or "held", refused=False) is not None
        )

    def _limit(self, deadline: float | None) -> Callable[[], float | None]:
        """The deadline of a batch's puts: ``deadline`` or ``close()``'s, whichever is first,
        asked again before each attempt, since ``close()`` may set one meanwhile."""

        def limit() -> float | None:
            closing = self._closing_deadline()
            if closing is None:
                return deadline
            return closing if deadline is None else min(deadline, closing)

        return limit

    def _put_batch(
        self,
        stream: str,
        batch: Sequence[Event],
        deadline: Callable[[], float | None],
        stop: threading.Event,
    ) -> Delivered:
        """Put ``batch`` (records or a marker) to ``stream``, resending until ``deadline``."""
        settings = self._settings
        return deliver_batch(
            self.target,
            self._put,
            group=settings.log_group_name,
            stream=stream,
            batch=batch,
            can_create=settings.create_log_group or settings.create_log_stream,
            count=self._ledger.count,
            deadline=deadline,
            stop=stop,
            closing=lambda: self._closing_deadline() is not None,
            pace=self._pace,
        )

    def _warn(self, result: Delivered, batch: Sequence[Event]) -> None:
        """Warn, once per episode, of what a batch lost, and end the episode when it got
        through; given before the batch is settled."""
        if result.reason is None:
            self._reporter.episode_ended()
        elif result.reason == DropReason.SHUTDOWN and summarizing():
            pass  # the process is ending: its one line on stderr counts these too
        else:
            kept = (
                "kept in the spool for a later process"
                if keeps_spooled(result.reason) and _spooled(batch)
                else "dropped"
            )
            self._reporter.once(
                result.reason,
                f"{result.warning} ({records(len(batch))} {kept}, counted in "
                f"stats.dropped[{result.reason!r}])",
                per_episode=True,
            )
        rejected = result.rejected
        if rejected.total:
            self._reporter.once(
                "rejected",
                f"CloudWatch Logs refused {rejected.total} of {len(batch)} events as more than "
                "2 hours ahead or older than 14 days or the group's retention; counted in "
                "stats.dropped['too_new'|'too_old'|'expired']",
            )

    def mark_the_rest(self, deadline: float) -> None:
        """Write the marker of every stream that lost records and had no put succeed since:
        ``close()`` calls this, from its own thread, once everything is settled in time.

        Only while the service answers: the first marker that cannot be written ends it, so
        a close() (or the second one at exit) against an outage spends no time here.
        """
        ledger = self._ledger
        gaps = ledger.gaps
        if gaps is None or not self.last_put_succeeded:
            return
        with ledger.lock:
            streams = gaps.streams()
        stop = threading.Event()
        for stream in streams:
            if time.monotonic() >= deadline or not self._mark(stream, lambda: deadline, stop):
                return  # what is left waits for a later put to its stream, or is lost with us

    def _mark(
        self, stream: str, deadline: Callable[[], float | None], stop: threading.Event
    ) -> bool:
        """A put to ``stream`` succeeded: write the marker of what it lost meanwhile.

        One put of its own, never a place in a batch of records: the batch stays what the
        caps, the span and ``rejectedLogEventsInfo`` describe, and a marker of an old episode
        cannot push a batch past the service's 24 hours. The episode is taken under the
        ledger's lock and given back unless the put succeeds: never lost, never written
        twice (unless a put whose answer was lost had been applied, as for records).
        """
        ledger = self._ledger
        gaps = ledger.gaps
        if gaps is None:
            return True
        with ledger.lock:
            gap = gaps.take(stream)
        if gap is None:
            return True  # another thread is writing it
        written = False
        try:
            written = self._put_marker(stream, gap, deadline, stop)
        except Exception as exc:  # a marker never costs the records their settlement
            self._reporter.once(
                DropReason.INTERNAL_ERROR.value,
                f"internal error while writing a drop marker to log group "
                f"{self._settings.log_group_name}: {exc!r}",
                per_episode=True,
            )
        finally:
            if not written:
                with ledger.lock:
                    gaps.give_back(stream, gap)
        return written

    def _put_marker(
        self, stream: str, gap: Gap, deadline: Callable[[], float | None], stop: threading.Event
    ) -> bool:
        """Put the marker of ``gap``; False if it must be tried again at a later success."""
        settings = self._settings
        when = stamp(gap, int(time.time() * 1000), settings.log_group_retention_days)
        for _ in range(2):
            message, size = utf8_size(render(gap, when, self._marker_style()))
            result = self._put_batch(stream, [(stream, when, message, size)], deadline, stop)
            self.last_put_succeeded = result.reason is None
            if result.reason is not None:
                return False
            if not result.rejected.total:
                return True
            # Refused by its time: the group keeps less than we were told. Now is accepted.
            when = int(time.time() * 1000)
        return False

    def _keep(self, part: Part, reason: str, warning: str | None) -> bool:
        """Keep spooled records refused for a reason an operator can fix: held on disk and
        tried again (this process's own), or given back to the dead process's spool they
        were adopted from. False when they cannot be kept (memory only, or ``close()``
        runs): the caller settles them as dropped, on disk still for a later process."""
        batch = part.events
        claim = part.claim
        holder = self._holder
        if claim.acker is not None:
            if self._closing_deadline() is not None:
                return False
            self._reporter.once(
                reason,
                f"{warning} ({records(len(batch))} of a dead process's spool kept there, "
                "not counted in stats, and tried again at its next replay; fix the cause "
                "above)",
                per_episode=True,
            )
            self._ledger.settle(part, reason=reason, give_back=True)
            return True
        if holder is None:
            return False
        retry = holder.hold(part, reason, refused=True)
        if retry is None:
            return False
        # Warned after settling, unlike a drop: held records are still queued, so no
        # flush() returns True before this warning is out.
        self._reporter.once(
            reason,
            f"{warning} ({records(len(batch))} held in the spool, still counted in "
            f"stats.queued: tried again in {retry:.0f} s, then at growing intervals up to "
            f"{HOLD_MAX / 60:.0f} min, until the cause above is fixed)",
            per_episode=True,
        )
        return True

    def reject_by_age(self, claim: Claim, too_old: list[Event], too_new: list[Event]) -> None:
        """Settle events outside the service's time window as rejected, without sending them."""
        self._reporter.once(  # before settling, as in deliver
            "rejected",
            "CloudWatch Logs refuses events older than 14 days or more than 2 hours ahead: "
            f"{len(too_old) + len(too_new)} were set aside, counted in "
            "stats.dropped['too_old'|'too_new']",
        )
        for reason, events in ((DropReason.TOO_OLD, too_old), (DropReason.TOO_NEW, too_new)):
            if events:
                self.acknowledge(events, claim.acker)
                self._ledger.settle(claim.part(events), rejected={reason.value: len(events)})

    def settle_failed(self, part: Part | None, exc: BaseException) -> None:
        """Settle ``part`` as ``internal_error`` after an unexpected exception, and say so."""
        self._reporter.once(  # before settling: a flush() that returns has seen the warning
            DropReason.INTERNAL_ERROR.value,
            f"internal error while sending to log group {self._settings.log_group_name}: "
            f"{exc!r}; the records are counted in stats.dropped['internal_error']",
            per_episode=True,
        )
        if part is not None:
            self._ledger.settle(part, reason=DropReason.INTERNAL_ERROR)

    def acknowledge(self, events: Sequence[Event], acker: Acknowledge | None) -> None:
        """Remove settled records from the spool: the replayed batch's or our own writer's."""
        ids = [event[-1] for event in events if len(event) > SPOOL_ID]  # the spool ids
        if not ids:
            return  # memory only: no event carries a spool id
        if acker is None:
            acker = self._own_acker()
            if acker is None:
                return
        acker(ids)


def _send_parts(
    send: Callable[[Sequence[Event]], Delivered], puts: list[list[Event]], counts: list[int]
) -> Delivered:
    """Send the puts that carry some records, split ones among them; say what became of the
    records (not of the events).

    Several puts carry one record: it is delivered once every put is, and refused or dropped
    with the first that is not (the puts after it are not sent). One put carries each of
    ``counts`` records' events in turn: the service refuses events by time (the oldest, the
    newest), and a record's parts share its timestamp, so the first part of each record
    says what became of it.
    """
    if len(puts) > 1:
        for batch in puts:
            result = send(batch)
            if result.reason is not None:
                return result
            refused = result.rejected
            if refused.expired:
                return Delivered(0, RejectedCounts(0, 0, 1), None, None)
            if refused.too_old:
                return Delivered(0, RejectedCounts(0, 1, 0), None, None)
            if refused.too_new:
                return Delivered(0, RejectedCounts(1, 0, 0), None, None)
        return Delivered(1, _NONE_REJECTED, None, None)
    (batch,) = puts
    result = send(batch)
    refused = result.rejected
    if result.reason is not None:
        return result
    if not refused.total:
        return Delivered(len(counts), _NONE_REJECTED, None, None)
    expired_end = refused.expired
    too_old_end = refused.expired + refused.too_old
    too_new_start = len(batch) - refused.too_new
    too_new = too_old = expired = 0
    first = 0
    for count in counts:
        if first < expired_end:
            expired += 1
        elif first < too_old_end:
            too_old += 1
        elif first >= too_new_start:
            too_new += 1
        first += count
    mapped = RejectedCounts(too_new, too_old, expired)
    return Delivered(len(counts) - mapped.total, mapped, None, None)


def _spooled(events: Sequence[Event]) -> bool:
    return bool(events) and len(events[0]) > SPOOL_ID


def _by_stream(events: list[Event]) -> list[tuple[str, list[Event]]]:
    by_stream: dict[str, list[Event]] = {}
    for event in events:
        by_stream.setdefault(event[0], []).append(event)
    return list(by_stream.items())
