"""The pace of this process's puts: one budget that every handler shares under throttling.

CloudWatch Logs throttles PutLogEvents per account and Region, whoever calls: a fleet that
goes over the quota gets ``ThrottlingException`` everywhere, and a handler that only backs
off its own batch, retrying each small put on its own, keeps the fleet over it. So the
process keeps one pace for every handler, stream and thread in it, as TCP keeps a window:

- Off until the service throttles: a put goes as soon as its batch is ready, and the pace
  costs a clock read and a counter (it measures the puts a second it lets through).
- Multiplicative decrease: a throttled answer halves the rate (the first from what was
  measured, at least ``START_RATE``), once per round: a put reserved before that halving and
  throttled too does not halve it again. Never below ``MIN_RATE``.
- Additive increase: each accepted put adds ``INCREASE / rate``, so a rate that is used
  grows by about ``INCREASE`` puts a second every second.
- Off again after ``QUIET`` seconds with no throttled answer.

While on, puts are spaced evenly: each reserves the next free slot (``reserve``) and waits
for it, whichever handler it belongs to, so the process sends at most ``rate`` puts a
second in all. While it is on, the scheduler takes no records for a stream that has a
batch out or waiting (``on``): they gather in the queue and go out in fuller batches, up to
the service's limits. Each process of a fleet converges on its share of the quota, and a
backlog goes out in full batches instead of small puts retried one by one.

One instance per process (``PACE``), renewed in a forked child. Its lock is a leaf: taken
for a few arithmetic steps, never while another of ours is held, never held while waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .._process import at_fork

__all__ = ["DECREASE", "INCREASE", "MIN_RATE", "PACE", "QUIET", "START_RATE", "Pace"]

DECREASE = 0.5
"""Factor the rate is multiplied by at a throttled answer (once per round)."""
INCREASE = 1.0
"""Puts a second the rate grows by each second its puts are accepted (``INCREASE / rate``
a put)."""
MIN_RATE = 0.5
"""Fewest puts a second the process is held to, in puts a second."""
START_RATE = 10.0
"""Puts a second assumed at the first throttled answer when fewer were measured: a quiet
process that meets one throttle goes on at 5 puts a second, not at a crawl."""
QUIET = 60.0
"""Seconds without a throttled answer after which the pace is off again."""
_WINDOW = 1.0  # seconds of each count of puts while off


class Pace:
    """The put rate of one process under throttling (see the module's docstring).

    Args:
        clock: Monotonic seconds; a test passes its own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.rate: float | None = None
        """Puts a second the process may start, every handler together; None while off."""
        self._next = 0.0  # monotonic time of the next free slot
        self._round = 0  # advanced at each halving
        self._throttled_at = 0.0
        # Puts counted while off, in windows of _WINDOW seconds: the current and the last.
        self._window_start = clock()
        self._count = 0
        self._previous = 0

    def reset(self) -> None:
        """Off, with nothing measured: in a forked child (whose lock a thread of the parent
        may have held at the fork), and between tests."""
        self._lock = threading.Lock()
        self.rate = None
        self._next = self._throttled_at = 0.0
        self._round += 1  # an answer to a put reserved before is not this pace's any more
        self._window_start = self._clock()
        self._count = self._previous = 0

    @property
    def on(self) -> bool:
        """Whether puts are paced (a throttled answer came less than ``QUIET`` s ago)."""
        return self.rate is not None

    def reserve(self) -> tuple[int, float]:
        """Reserve the next slot for one put: the round to give back with its answer, and
        the seconds to wait before sending it (0 while off)."""
        if self.rate is None:
            self._count_put()
            return self._round, 0.0
        with self._lock:
            rate = self._rate()  # again: another thread may have turned it off
            if rate is None:
                return self._round, 0.0
            now = self._clock()
            slot = max(self._next, now)
            self._next = slot + 1.0 / rate
            return self._round, slot - now

    def accepted(self, turn: int) -> None:
        """A put reserved in round ``turn`` was accepted: add to the rate, or turn off."""
        if self.rate is None:
            return
        with self._lock:
            rate = self._rate()
            if rate is None:
                return
            if self._clock() - self._throttled_at >= QUIET:
                self.rate = None
                self._count = self._previous = 0
                return
            self.rate = rate + INCREASE / rate

    def throttled(self, turn: int) -> None:
        """A put reserved in round ``turn`` was throttled: halve the rate, once a round."""
        with self._lock:
            if turn != self._round:
                return  # reserved before the last halving, which answered it already
            now = self._clock()
            rate = self.rate if self.rate is not None else max(self._measured(now), START_RATE)
            self.rate = new = max(MIN_RATE, rate * DECREASE)
            self._round += 1
            self._throttled_at = now
            # The throttled put takes a slot of its own: its resend waits one at least.
            self._next = max(self._next, now) + 1.0 / new

    def _rate(self) -> float | None:
        return self.rate

    def _count_put(self) -> None:
        # Without the lock: a count lost to a race makes the first rate a little lower.
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed >= _WINDOW:
            self._previous = self._count if elapsed < 2 * _WINDOW else 0
            self._count = 0
            self._window_start = now
        self._count += 1

    def _measured(self, now: float) -> float:
        """Puts a second counted over the last one or two windows while off."""
        elapsed = now - self._window_start
        if elapsed >= 2 * _WINDOW:
            return 0.0
        if elapsed >= _WINDOW:
            return self._count / elapsed
        return (self._previous + self._count) / (_WINDOW + elapsed)


PACE = Pace()
"""The process's one pace: every handler's puts reserve their slots here."""

at_fork(after_in_child=PACE.reset)
