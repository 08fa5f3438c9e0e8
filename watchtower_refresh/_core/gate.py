"""The gate: whether ``emit()`` may queue a record on its fast path, without the ledger's lock.

The emit thread admits records without taking the ledger's lock: ``emit()`` runs under the
handler's own lock, so the ledger's admission counters have one writer, and it compares them
with two precomputed limits (``limit_events``, ``limit_bytes``). The limits fold in:

- the caps: the room the ledger gives (``room``: what it has released plus the caps), which
  it moves as records settle;
- the gate itself: closed (``close``) until a sender runs and the handler is open (``open``),
  and closed again while records wait on disk behind the backlog (``spill``), so that they
  keep their order;
- the sender's wake-up thresholds (``arm``): the record that should wake the sender takes the
  slow path, which does (``woken``).

After queueing, ``emit()`` reads one flag, ``attention``, set while the gate is closed or the
sender waits for a first record: either may have happened after it read the limits. A closed
gate sets the limits so that every record takes the slow path, where the handler deals with a
closed, unstarted or exiting handler.

``Gate`` has no lock of its own: only the ledger calls it, under the ledger's lock, and
``emit()`` reads it without one.
"""

from __future__ import annotations

import sys

__all__ = ["CLOSED_LIMIT", "Gate"]

CLOSED_LIMIT = -1
"""A limit no admission count is below: every record takes the slow path."""


class Gate:
    """The fast path's limits and the sender's wake-up, for one ledger.

    Args:
        room_events: Records admitted up to this number fit under the caps.
        room_bytes: Bytes admitted (with the overhead) up to this number fit under the caps.

    Attributes:
        gated: Closed: no sender runs, or the handler is closing or closed.
        idle: The sender waits for a first record.
        attention: Gated or idle: ``emit()`` looks again after queueing.
        spilling: Later records wait on disk, behind those already there.
        limit_events: ``emit()`` admits while the admitted records are below it.
        limit_bytes: ``emit()`` admits while the admitted bytes with the record's are at
            most this.
    """

    __slots__ = (
        "_room_bytes",
        "_room_events",
        "attention",
        "gated",
        "idle",
        "limit_bytes",
        "limit_events",
        "spilling",
        "wake_bytes",
        "wake_events",
    )

    def __init__(self, room_events: int, room_bytes: int) -> None:
        self._room_events = room_events
        self._room_bytes = room_bytes
        self.gated = True
        self.idle = False
        self.attention = True
        self.spilling = False
        self.limit_events = CLOSED_LIMIT
        self.limit_bytes = CLOSED_LIMIT
        # Once admitted reaches wake_events, or the bytes after a record would reach
        # wake_bytes, records take the slow path, which wakes the sender.
        self.wake_events = 0
        self.wake_bytes = sys.maxsize

    def room(self, room_events: int, room_bytes: int) -> None:
        """The caps moved: records admitted up to ``room_events`` and bytes up to
        ``room_bytes`` fit (held < max_events  <=>  admitted < released + max_events)."""
        self._room_events = room_events
        self._room_bytes = room_bytes
        self._move()

    def open(self) -> None:
        """A sender runs and the handler is open: admit on the fast path."""
        self.gated = False
        self.attention = self.idle
        self._move()

    def close(self) -> None:
        """Send every later record down the slow path."""
        self.gated = True
        self.attention = True
        self.limit_events = self.limit_bytes = CLOSED_LIMIT

    def arm(
        self,
        queued: int,
        drained: int,
        drained_bytes: int,
        waiting_bytes: int,
        batch_events: int,
        batch_bytes: int,
    ) -> None:
        """Wake the sender at the first record if nothing is queued, else once a batch of
        ``batch_events`` records or ``batch_bytes`` charged bytes waits.

        Args:
            queued: Records in the queue now.
            drained: Records the sender has taken off the queue so far.
            drained_bytes: Charged bytes it has taken so far.
            waiting_bytes: Charged bytes admitted and not yet taken.
            batch_events: Records of a full batch.
            batch_bytes: Charged bytes of a full batch.
        """
        self.idle = not queued
        if self.idle:
            self.wake_events = drained
            self.wake_bytes = drained_bytes + 1
        elif queued >= batch_events or waiting_bytes >= batch_bytes:
            # A batch waits already: the sender takes it before it sleeps, or, with every
            # worker busy, is woken by the first that finishes. No record need wake it.
            self.wake_events = self.wake_bytes = sys.maxsize
        else:
            self.wake_events = drained + batch_events - 1
            self.wake_bytes = drained_bytes + batch_bytes
        self.attention = self.gated or self.idle
        self._move()

    def woken(self) -> None:
        """The sender was woken: no more wake-ups until it arms them again."""
        self.wake_events = self.wake_bytes = sys.maxsize
        self.idle = False
        self.attention = self.gated
        self._move()

    def spill(self) -> None:
        """Send every later record down the slow path: they wait on disk, in order."""
        self.spilling = True
        self.limit_events = self.limit_bytes = CLOSED_LIMIT

    def unspill(self) -> None:
        """The records on disk are all admitted: back to the fast path."""
        self.spilling = False
        self._move()

    def _move(self) -> None:
        if self.gated or self.spilling:
            return
        # A record admitted at wake_events, or whose bytes reach wake_bytes, wakes the sender.
        self.limit_events = min(self._room_events, self.wake_events)
        self.limit_bytes = min(self._room_bytes, self.wake_bytes - 1)
