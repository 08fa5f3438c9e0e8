"""Claims: records the sender took off the ledger's queue together, settled part by part."""

from __future__ import annotations

from collections.abc import Callable

from .events import Event

__all__ = ["Claim", "Part"]


class Claim:
    """Records the sender took off the queue together: admission numbers ``start + 1 .. end``.

    Split it into ``Part``s (``part()``), settle each through ``Ledger.settle``, and let
    ``Ledger.settle_rest`` settle whatever no part did.
    """

    __slots__ = ("abandoned", "acker", "end", "first", "remaining", "remaining_bytes", "start")

    def __init__(self, start: int, end: int, size: int, first: int = 0) -> None:
        self.acker: Callable[[list[int]], None] | None = None
        """Acknowledges the spool ids of settled records of a replayed claim; None for the
        handler's own records, which its own spool writer acknowledges."""
        self.start = start
        self.end = end
        self.first = first
        """Timestamp (milliseconds since the epoch) of its first record, for the age of what
        is held (``oldest_timestamp``)."""
        self.remaining = end - start
        self.remaining_bytes = size
        self.abandoned = False

    def part(self, events: list[Event]) -> Part:
        """A batch of this claim's records, to be settled once."""
        return Part(self, events)


class Part:
    """Some of a claim's records, settled together exactly once (a batch for one put)."""

    __slots__ = ("claim", "events", "settled")

    def __init__(self, claim: Claim, events: list[Event]) -> None:
        self.claim = claim
        self.events = events
        self.settled = False
