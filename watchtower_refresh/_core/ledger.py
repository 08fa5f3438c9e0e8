"""The ledger: what a handler holds, the caps on it, and what became of every record.

Every record given to ``emit()`` is counted in exactly one place:

- refused on arrival (``drop``): an empty message, a formatting error, a full queue, or a
  process that is shutting down;
- held (``admit``): queued, then taken off the queue by the sender as a ``Claim``; with a
  spool, a record beyond the caps may first wait on disk (``on_disk``) until admitted;
- settled from its claim: delivered, rejected by the service, or dropped with a reason;
- or, with a spool, held: refused for a reason an operator can fix (``reasons.FIXABLE``), the
  record leaves memory but stays on disk and counted as queued (``on_disk``); the spool
  side, which keeps the hold (why, and when it is tried again), admits it again once the
  hold has run its interval. A record adopted from a dead process's spool and refused that
  way is given back to that spool: released unreceived, for a later pass.

A claim can settle each of its records once and only once; whatever is left of it when the
code that owns it fails is settled by ``settle_rest``, and ``abandon`` settles every
claim still open (and the queue) when ``close()`` runs out of time. A claim settled after it
was abandoned moves its records from ``shutdown`` to what really became of them, so double
settlement is impossible by construction and ``stats`` always adds up:
``delivered + dropped_total + queued == records given`` (rejected records are in ``dropped``
under their reason too).

With drop markers on, a record counted as lost whose stream is known (``drop`` given one,
``settle`` from the part's events) is also added to that stream's open episode in ``gaps``
(``_core.markers``), which the delivery side takes when it writes the marker.

The emit thread admits records without taking the ledger's lock: ``emit()`` runs under the
handler's own lock, so the admission counters have one writer, and whether a record may take
that fast path (the caps, a closed gate, the sender's wake-up) it reads from ``gate``
(``_core.gate``), two precomputed limits and one flag that the ledger moves, under its lock,
as it releases records.

A non-ASCII record is charged an upper bound of its size (its size is then negative in the
queue, see ``Event``): ``take`` sizes such records exactly and releases the difference, and
``size_queued`` does so for the emit side when the caps look reached (``_core.queue``).

The ledger is the only writer of its counters (save the admission counters and ``on_disk``,
which records admitted under the handler's lock move: the fast path, the backlog's refill).
Each of its parts owns one job's state, has no lock of its own and is written under the
ledger's lock: ``gate`` (``_core.gate``), the fast path's limits, and ``claims``
(``_core.claims``), the claims out and what each still owes, only through the ledger;
``queue`` (``_core.queue``), the events waiting, cut and sized by the ledger and appended to
by admissions; ``gaps``, also taken and given back around a marker's put.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping

from .claims import Claim, ClaimBook, Part
from .events import SIZE, TIMESTAMP, Event, batch_bytes
from .gate import Gate
from .markers import Gaps
from .queue import EventQueue
from .reasons import DropReason
from .stats import DeliveryStats

__all__ = ["Claim", "DeliveryStats", "Ledger", "Part"]


class Ledger:
    """Caps, counters and the queue of one handler in one process.

    Args:
        max_events: Most records held (queued or in flight).
        max_bytes: Most bytes held, counting 26 bytes per record.
        drop_markers: Keep, per stream, what was lost and not yet marked (``gaps``).
    """

    __slots__ = (
        "_counts",
        "_dropped",
        "admitted",
        "admitted_bytes",
        "claims",
        "cond",
        "drained",
        "drained_bytes",
        "gaps",
        "gate",
        "generation",
        "lock",
        "max_bytes",
        "max_events",
        "on_disk",
        "overflowing",
        "queue",
        "released",
        "released_bytes",
        "truncated",
    )

    def __init__(self, max_events: int, max_bytes: int, *, drop_markers: bool = False) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        # Re-entrant: a signal handler may flush while the interrupted code holds it.
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.queue = EventQueue()
        # Written by the emit thread only (under the handler's lock).
        self.admitted = 0
        self.admitted_bytes = 0
        self.truncated = 0
        # Records kept in the spool only, beyond the caps, to be admitted as the queue
        # drains; written under the handler's lock, like the admission counters.
        self.on_disk = 0
        # Written under ``lock``.
        self.drained = 0
        self.drained_bytes = 0
        self.released = 0
        self.released_bytes = 0
        self.overflowing = False
        self._counts: collections.Counter[str] = collections.Counter()
        self._dropped: collections.Counter[str] = collections.Counter()
        # The claims out, in the order they were taken (``_core.claims``); under ``lock``.
        self.claims = ClaimBook()
        # What each stream lost and no marker has said yet (``_core.markers``); under ``lock``.
        self.gaps = Gaps() if drop_markers else None
        # The sender generation that may take records; an older one is fenced off.
        self.generation = 0
        # The emit thread's fast path: admit while admitted < gate.limit_events and the
        # bytes fit. Written under ``lock``, by the ledger only (``_move_limits`` gives it
        # the caps' room as records are released).
        self.gate = Gate(max_events, max_bytes)

    # ------------------------------------------------------------------ emit side

    def admit(self, event: Event, cost: int) -> bool:
        """Queue ``event`` (``cost`` bytes with the overhead) if the caps allow; the slow path.

        The handler's ``emit()`` inlines the same steps for the common case.
        """
        if self.gate.gated or not self.has_room(cost):
            return False
        if event[SIZE] < 0:
            self.queue.estimated = True
        self.admitted += 1
        self.admitted_bytes += cost
        self.queue.append(event)
        return True

    def has_room(self, cost: int) -> bool:
        """Whether one more record of ``cost`` bytes fits under both caps."""
        held = self.admitted - self.released
        return held < self.max_events and (
            self.admitted_bytes + cost - self.released_bytes <= self.max_bytes
        )

    def size_queued(self) -> bool:
        """Size exactly the estimated records queued since the last call; emit side.

        For the caps' sake: estimates overstate what the queue holds, so before a record is
        refused as ``queue_full`` its predecessors are sized for what they are. Only the
        records admitted since the last call are looked at. Returns whether any bytes were
        released.
        """
        if not self.queue.estimated:
            return False
        with self.lock:
            excess = self.queue.size_estimates(self.admitted)
            self.admitted_bytes -= excess
            return excess != 0

    def drop(
        self,
        reason: DropReason | str,
        count: int = 1,
        *,
        stream: str | None = None,
        timestamp: int = 0,
    ) -> None:
        """Count ``count`` records refused on arrival, never admitted; with ``stream``, a
        marker will say so (records of ``timestamp``, in milliseconds)."""
        key = _key(reason)
        with self.lock:
            self._dropped[key] += count
            if self.gaps is not None and stream is not None:
                self.gaps.refused(stream, timestamp, key, count)

    def count(self, name: str, n: int = 1) -> None:
        """Count ``n`` retries, credential refreshes, replayed, corrupt or discarded records."""
        with self.lock:
            self._counts[name] += n

    # ------------------------------------------------------------------ the gate

    def open_gate(self) -> None:
        """Let ``emit()`` admit on its fast path (a sender runs and the handler is open)."""
        with self.lock:
            self.gate.open()

    def close_gate(self) -> None:
        """Send every later record down ``emit()``'s slow path."""
        with self.lock:
            self.gate.close()

    def arm_wake(self, batch_events: int, batch_bytes: int) -> None:
        """Have ``emit()`` wake the sender at the first record if nothing is queued, else
        once a batch of ``batch_events`` records or ``batch_bytes`` charged bytes waits."""
        with self.lock:
            waiting_bytes = self.admitted_bytes - self.drained_bytes
            self.gate.arm(
                len(self.queue),
                self.drained,
                self.drained_bytes,
                waiting_bytes,
                batch_events,
                batch_bytes,
            )

    def woken(self) -> None:
        """The sender was woken (emit side): no more wake-ups until it arms them again."""
        with self.lock:
            self.gate.woken()

    def spill(self) -> None:
        """Send every later record down ``emit()``'s slow path: the queue is full and later
        records wait on disk, behind those already there, so that they keep their order."""
        with self.lock:
            self.gate.spill()

    def unspill(self) -> None:
        """The records on disk are all admitted: back to the fast path."""
        with self.lock:
            self.gate.unspill()

    def _move_limits(self) -> None:
        self.gate.room(self.released + self.max_events, self.released_bytes + self.max_bytes)

    # ------------------------------------------------------------------ sender side

    @property
    def held(self) -> int:
        """Records admitted and not yet settled (queued or in flight)."""
        return self.admitted - self.released

    @property
    def in_flight(self) -> bool:
        """Whether a claim is still out, abandoned ones included: its put may be answered."""
        with self.lock:
            return bool(self.claims)

    def new_generation(self) -> int:
        """Fence off every earlier sender: only the token returned here may ``take`` now."""
        with self.lock:
            self.generation += 1
            return self.generation

    def take(
        self,
        max_events: int | None = None,
        max_bytes: int | None = None,
        *,
        generation: int | None = None,
    ) -> tuple[Claim, list[Event]] | None:
        """Take queued records off the queue as one claim; None if the queue is empty.

        Args:
            max_events: Take at most this many records; default all.
            max_bytes: Stop once this many bytes (with the overhead) are taken; default all.
            generation: The taking sender's token: a sender that a newer one replaced takes
                nothing (None: the ledger itself, settling everything).
        """
        with self.lock:
            if generation is not None and generation != self.generation:
                return None
            events, charged, size = self.queue.cut(max_events, max_bytes)
            if not events:
                return None
            if charged != size:  # estimates, sized on the sender's thread
                self.released_bytes += charged - size  # the estimate's excess, at once
                self._move_limits()
            claim = self.claims.open(self.drained, events, size)
            self.drained += len(events)
            self.drained_bytes += charged
            return claim, events

    def claim_now(self, events: list[Event]) -> Claim:
        """Admit ``events`` and claim them at once, bypassing the queue and its caps.

        For records sent from the caller's thread (``use_queues=False``, interpreter exit).
        Call under the handler's lock, like every admission.
        """
        size = batch_bytes(events)
        with self.lock:
            claim = self.claims.open(self.drained, events, size)
            self.admitted += len(events)
            self.admitted_bytes += size
            self.drained += len(events)
            self.drained_bytes += size
            return claim

    def divide(self, part: Part, groups: list[list[Event]]) -> list[Part]:
        """Replace ``part`` by one part per group of its records (``ClaimBook.divide``):
        a batch of split records, settled put by put. [] if ``part`` was settled already."""
        with self.lock:
            return self.claims.divide(part, groups)

    def settle(
        self,
        part: Part,
        *,
        delivered: int = 0,
        rejected: Mapping[str, int] | None = None,
        reason: DropReason | str | None = None,
        hold: bool = False,
        give_back: bool = False,
    ) -> int:
        """Settle ``part``: ``delivered`` accepted, ``rejected`` refused one by one by the
        service (by reason), the rest dropped as ``reason``. A part settles once; later calls
        do nothing.

        With ``hold``, the rest is held instead: it leaves memory and stays queued, on disk
        (``on_disk``); the spool side keeps why (``SpoolSide.holding``). With ``give_back``,
        the rest returns to the dead process's spool it was adopted from: released, never
        received. Records of an abandoned claim were counted as ``shutdown``; they move to
        their real outcome (held or given back, they stay ``shutdown``: they wait on disk for
        a later process). More records than the claim has left are never counted.

        Returns:
            How many records were held (0 without ``hold``).
        """
        with self.lock:
            settled = self.claims.settle(part, delivered, rejected or {})
            if settled is None:
                return 0
            count, rest = settled.records, settled.rest
            if rest and reason is None:
                reason = DropReason.INTERNAL_ERROR
            if settled.abandoned:
                self._dropped[DropReason.SHUTDOWN.value] -= count  # counted when it was abandoned
                if hold or give_back:
                    reason = DropReason.SHUTDOWN  # on disk, for a later process
                    hold = give_back = False
            else:
                self.released += count
                self.released_bytes += settled.size
            self._counts["delivered"] += settled.delivered
            self._counts["rejected"] += settled.refused
            self._dropped.update(settled.rejected)
            key = _key(reason) if reason is not None else None
            if rest and hold:
                self.on_disk += rest
            elif rest and give_back:
                pass  # released and counted nowhere: the dead process's spool has them
            elif rest and key is not None:
                self._dropped[key] += rest
            lost = 0 if hold or give_back else rest  # a hole in the stream, for its marker
            if self.gaps is not None and (settled.refused or lost):
                self.gaps.settled(
                    part.events[:count],
                    delivered=settled.delivered,
                    rejected=settled.rejected,
                    reason=key,
                    rest=lost,
                )
            self._after_release()
            return rest if hold else 0

    def settle_rest(self, claim: Claim, reason: DropReason | str) -> int:
        """Drop whatever ``claim`` has not settled yet as ``reason``; return how many."""
        with self.lock:
            count, size = self.claims.rest(claim)
            if count <= 0:
                return 0  # nothing left, or abandoned: its records stay counted as shutdown
            self.released += count
            self.released_bytes += size
            self._dropped[_key(reason)] += count
            self._after_release()
            return count

    def abandon(self, reason: DropReason = DropReason.SHUTDOWN) -> int:
        """Settle every held record as ``reason``: the queue and every claim in flight.

        Returns how many records that was. A claim settled later moves its records from
        ``reason`` to what became of them.
        """
        with self.lock:
            taken = self.take()  # the queue, as one more claim
            count, size = self.claims.abandon()
            if taken is not None:
                self.claims.finish(taken[0])  # nobody else holds it: settled here, whole
            self.released += count
            self.released_bytes += size
            self._dropped[reason.value] += count
            if self.on_disk:  # never admitted, or held: still on disk, for a later process
                self._dropped[reason.value] += self.on_disk
                count += self.on_disk
                self.on_disk = 0
            self._after_release()
            return count

    def _after_release(self) -> None:
        self._move_limits()
        if self.overflowing and self.held < self.max_events // 2:
            self.overflowing = False
        self.cond.notify_all()

    # ------------------------------------------------------------------ waiting

    @property
    def settled_through(self) -> int:
        """Every record admitted up to this number is settled (delivered or dropped)."""
        with self.lock:
            return self.claims.first_open(self.drained if self.queue else self.admitted)

    def wait_settled(self, target: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every record up to ``target`` is settled."""
        with self.cond:
            return self.cond.wait_for(lambda: self.settled_through >= target, timeout)

    # ------------------------------------------------------------------ reading

    def oldest_timestamp(self) -> int | None:
        """Timestamp (milliseconds since the epoch) of the record held longest, or None.

        Of this process's own records in memory: queued, or in flight by the first record of
        their claim. Records waiting on disk and records adopted from a dead process's spool
        (whose age says nothing about this process's delivery) are not looked at.
        """
        with self.lock:
            return self.claims.oldest(self.queue[0][TIMESTAMP] if self.queue else None)

    def snapshot(self) -> DeliveryStats:
        """A consistent ``DeliveryStats``; never raises."""
        with self.lock:
            dropped = {reason: n for reason, n in self._dropped.items() if n}
            return DeliveryStats(
                delivered=self._counts["delivered"],
                rejected=self._counts["rejected"],
                dropped=dropped,
                retried=self._counts["retried"],
                credential_refreshes=self._counts["credential_refreshes"],
                truncated=self.truncated,
                queued=self.admitted - self.released + self.on_disk,
                replayed=self._counts["replayed"],
                corrupt=self._counts["corrupt"],
                discarded=self._counts["discarded"],
            )


def _key(reason: DropReason | str) -> str:
    """The key a reason is counted under: an enum member hashes by its name, not its value."""
    return reason.value if isinstance(reason, DropReason) else reason
