"""A writer's segments: the ids each holds and which of them are acknowledged."""

from __future__ import annotations

from collections.abc import Iterable

from .format import SEGMENT_HEADER

__all__ = ["Segment", "SegmentBook"]


class Segment:
    """A writer's bookkeeping for one of its segments.

    ``count`` and ``bytes`` are set when the segment is finished; while it is the current
    one, the writer's next id and offset hold them, so that an append updates less.
    """

    __slots__ = ("ack_bytes", "acked", "acked_bits", "bytes", "closed", "count", "first_id")

    def __init__(self, first_id: int) -> None:
        self.first_id = first_id
        self.count = 0
        self.bytes = len(SEGMENT_HEADER)
        self.ack_bytes = 0
        self.acked = 0
        self.acked_bits = bytearray()
        self.closed = False

    @property
    def settled(self) -> bool:
        """Finished, and every record in it acknowledged."""
        return self.closed and self.acked == self.count


class SegmentBook:
    """The segments of one writer by first id (the writer's lock held for every call).

    ``next_id`` arguments are the writer's next id: the current segment's records end
    there. ``floor_id`` is its first id since a fork: ids below it are a parent's.
    """

    def __init__(self) -> None:
        self.segments: dict[int, Segment] = {}
        self.current: Segment | None = None

    def count(self, segment: Segment, next_id: int) -> int:
        """Records in ``segment``."""
        if segment is self.current:
            return next_id - segment.first_id
        return segment.count

    def find(
        self, firsts: list[int], record_id: int, floor_id: int, next_id: int
    ) -> Segment | None:
        """The segment holding ``record_id`` (``firsts``: the sorted first ids), or None."""
        if record_id < floor_id or not firsts:
            return None
        low, high = 0, len(firsts)
        while low < high:  # the last segment whose first id is <= record_id
            middle = (low + high) // 2
            if firsts[middle] <= record_id:
                low = middle + 1
            else:
                high = middle
        if low == 0:
            return None
        segment = self.segments[firsts[low - 1]]
        return segment if record_id < segment.first_id + self.count(segment, next_id) else None

    def is_acked(self, record_id: int, floor_id: int, next_id: int) -> bool:
        """Whether ``record_id`` was acknowledged (or its segment settled and deleted)."""
        segment = self.find(sorted(self.segments), record_id, floor_id, next_id)
        if segment is None:
            return True
        offset = record_id - segment.first_id
        bits = segment.acked_bits
        return offset >> 3 < len(bits) and bool(bits[offset >> 3] & (1 << (offset & 7)))

    def mark(self, ids: Iterable[int], floor_id: int, next_id: int) -> dict[Segment, list[int]]:
        """Mark ``ids`` acknowledged; the offsets newly marked, by segment."""
        touched: dict[Segment, list[int]] = {}
        firsts = sorted(self.segments)
        # Ids come in runs from one segment: look a segment up only when a run ends.
        low = high = 0
        bits = bytearray()
        offsets: list[int] = []
        segment: Segment | None = None
        for record_id in ids:
            if not low <= record_id < high:
                segment = self.find(firsts, record_id, floor_id, next_id)
                if segment is None:
                    low = high = 0
                    continue
                low = segment.first_id
                high = low + self.count(segment, next_id)
                bits = segment.acked_bits
                offsets = touched.setdefault(segment, [])
            assert segment is not None
            offset = record_id - low
            index, bit = offset >> 3, 1 << (offset & 7)
            if index >= len(bits):
                bits.extend(bytes(index - len(bits) + 1 + (high - low) // 8))
            if bits[index] & bit:
                continue
            bits[index] |= bit
            segment.acked += 1
            offsets.append(offset)
        return {segment: found for segment, found in touched.items() if found}
