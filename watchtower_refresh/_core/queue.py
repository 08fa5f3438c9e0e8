"""The queue of one ledger: events waiting for the sender, oldest first.

``emit()`` appends to it on its fast path, a plain ``deque.append`` at C speed, under the
handler's lock; the ledger, under its own lock, cuts batches off its head (``cut``) and
sizes the estimated events at its tail (``size_estimates``). An estimate is an upper bound of a
non-ASCII message's size (a negative size, see ``events.Event``), made so that ``emit()``
need not encode the message; it is made exact on the sender's thread when the events are
cut, or on the emit side when the caps look reached.
"""

from __future__ import annotations

import collections
import itertools
import operator
import sys
from collections.abc import Iterable

from .events import EVENT_OVERHEAD, SIZE, Event, batch_bytes, size_exactly

__all__ = ["EventQueue"]

_size_of = operator.itemgetter(SIZE)


class EventQueue(collections.deque[Event]):
    """Events waiting for the sender: a ``deque`` that cuts a batch off its head and sizes
    estimated events at its tail.

    Only the emit thread appends (on the right); only the ledger pops or replaces events,
    under its lock.

    Attributes:
        estimated: Whether an event was charged an estimate since ``size_estimates`` last
            looked (set by the emit side, under the handler's lock).
        charge_ratio: Bytes charged per byte held, in the last cut: what a full batch is
            charged.
    """

    __slots__ = ("charge_ratio", "estimated", "sized_through")

    def __init__(self, events: Iterable[Event] = ()) -> None:
        super().__init__(events)
        self.estimated = False
        self.sized_through = 0  # the admission number size_estimates() looked up to
        self.charge_ratio = 1.0

    def cut(
        self, max_events: int | None = None, max_bytes: int | None = None
    ) -> tuple[list[Event], int, int]:
        """Pop events off the head and size them exactly.

        Args:
            max_events: Pop at most this many events; default all that are queued now.
            max_bytes: Stop once this many bytes (with the overhead) are popped; default all.

        Returns:
            The events, the bytes they were charged and the bytes they hold, both with the
            overhead (charged is more while some were estimates).
        """
        events: list[Event] = []
        pop, push = self.popleft, events.append
        try:
            if max_events is None and max_bytes is None:
                # What is queued now, popped at C speed: emit() only appends on the
                # right meanwhile, so the first len() records are ours to take.
                events = list(itertools.islice(iter(pop, None), len(self)))
            else:
                limit_n = max_events or sys.maxsize
                limit_b = max_bytes or sys.maxsize
                size = 0
                while len(events) < limit_n and size < limit_b:
                    event = pop()
                    push(event)
                    size += abs(event[SIZE]) + EVENT_OVERHEAD
        except IndexError:
            pass
        if events and min(map(_size_of, events)) < 0:
            events, charged, size = size_exactly(events)  # sized here, on the sender's thread
        else:
            charged = size = batch_bytes(events)
        if events:
            self.charge_ratio = charged / size
        return events, charged, size

    def size_estimates(self, admitted: int) -> int:
        """Size exactly, in place, the events queued since the last call (admission numbers
        up to ``admitted``); the bytes their estimates overstated (0: none did)."""
        self.estimated = False
        count = min(admitted - self.sized_through, len(self))
        self.sized_through = admitted
        tail = [self.pop() for _ in range(count)]
        tail.reverse()
        events, charged, exact = size_exactly(tail)
        self.extend(events)
        return charged - exact
