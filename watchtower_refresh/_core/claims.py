"""Claims: records the sender took off the ledger's queue together, settled part by part.

``ClaimBook`` keeps the claims still out, in the order they were taken, and settles each
record of a claim once: it says what a settlement still owns (``Settled``: how many records
and bytes, delivered, refused by reason, the rest), and the ledger moves its counters by
that. It has no lock of its own: only the ledger calls it,
under the ledger's lock, which also guards every ``Claim`` and ``Part`` field it writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from .events import TIMESTAMP, Event, batch_bytes

__all__ = ["Claim", "ClaimBook", "Part", "Settled"]


class Claim:
    """Records the sender took off the queue together: admission numbers ``start + 1 .. end``.

    Split it into ``Part``s (``part()``), settle each through ``Ledger.settle``, and let
    ``Ledger.settle_rest`` settle whatever no part did. A ``ClaimBook`` keeps it while it
    is out.
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


class Settled(NamedTuple):
    """What one settlement of a part owns, never more than its claim had left."""

    records: int
    """Records settled now."""
    size: int
    """Their bytes, with the overhead."""
    abandoned: bool
    """Whether their claim was abandoned: its records were counted as ``shutdown``."""
    delivered: int
    """Records the service accepted."""
    rejected: dict[str, int]
    """Records the service refused one by one, by reason."""
    rest: int
    """Records neither delivered nor refused: dropped, held or given back, as the caller
    says."""

    @property
    def refused(self) -> int:
        """Records the service refused one by one, whatever the reason."""
        return sum(self.rejected.values())


class ClaimBook:
    """The claims out of one ledger, in the order they were taken (the ledger's lock held).

    A claim stays in the book until all of its records are settled, abandoned ones too: a
    put abandoned by ``close()`` may still be answered.
    """

    __slots__ = ("_out",)

    def __init__(self) -> None:
        self._out: dict[int, Claim] = {}  # by id, in the order they were taken

    def __bool__(self) -> bool:
        """Whether a claim is still out, abandoned ones included."""
        return bool(self._out)

    def open(self, start: int, events: list[Event], size: int) -> Claim:
        """A claim of ``events``, admission numbers ``start + 1 ..``, of ``size`` bytes."""
        claim = Claim(start, start + len(events), size, events[0][TIMESTAMP])
        self._out[id(claim)] = claim
        return claim

    def settle(self, part: Part, delivered: int, rejected: Mapping[str, int]) -> Settled | None:
        """Settle ``part`` once: ``delivered`` of its records accepted, ``rejected`` refused
        one by one by the service (by reason), the rest left to the caller. None if ``part``
        was settled already or its claim owes nothing more. More records than the claim has
        left, and more refusals than records, are never counted."""
        if part.settled:
            return None
        part.settled = True
        claim, events = part.claim, part.events
        count = min(len(events), claim.remaining)
        if count <= 0:
            return None
        size = min(batch_bytes(events[:count]), claim.remaining_bytes)
        claim.remaining -= count
        claim.remaining_bytes -= size
        if claim.remaining <= 0:
            self.finish(claim)
        delivered = min(delivered, count)
        rest = count - delivered
        refused: dict[str, int] = {}
        for why, n in rejected.items():
            if n:
                refused[why] = min(n, rest)
                rest -= refused[why]
        return Settled(count, size, claim.abandoned, delivered, refused, rest)

    def rest(self, claim: Claim) -> tuple[int, int]:
        """Settle whatever ``claim`` still owes and close it: how many records, and their
        bytes. None of an abandoned claim: its records stay counted as ``shutdown``."""
        self.finish(claim)
        count, size = claim.remaining, claim.remaining_bytes
        if claim.abandoned or count <= 0:
            return 0, 0
        claim.remaining = claim.remaining_bytes = 0
        return count, size

    def abandon(self) -> tuple[int, int]:
        """Mark every claim out abandoned: how many records they still owed, and their
        bytes. A part settled later moves its records to what really became of them."""
        count = size = 0
        for claim in self._out.values():
            if claim.remaining > 0 and not claim.abandoned:
                claim.abandoned = True
                count += claim.remaining
                size += claim.remaining_bytes
        return count, size

    def finish(self, claim: Claim) -> None:
        """Forget ``claim``: nothing of it can be settled any more."""
        self._out.pop(id(claim), None)

    def divide(self, part: Part, groups: list[list[Event]]) -> list[Part]:
        """Replace ``part`` by one part per group of its records, each settled on its own.

        For a batch whose records need several puts (``large_events="split"``): records a
        put delivered are settled as such even when a later put fails. Returns [] if
        ``part`` was settled already.
        """
        if part.settled:
            return []
        part.settled = True
        return [Part(part.claim, group) for group in groups]

    def first_open(self, default: int) -> int:
        """The ``start`` of the earliest claim not abandoned (its first record is the first
        not settled), or ``default``: none is."""
        for claim in self._out.values():
            if not claim.abandoned:
                return claim.start
        return default

    def oldest(self, default: int | None) -> int | None:
        """Timestamp (milliseconds since the epoch) of the first record of the earliest
        claim of this process's own records still in flight, or ``default``: none is.

        The queue-age gauge's part in flight: records adopted from a dead process's spool
        (whose age says nothing about this process's delivery) are not looked at.
        """
        for claim in self._out.values():  # in the order they were taken
            if claim.remaining > 0 and not claim.abandoned and claim.acker is None:
                return claim.first
        return default
