"""Events and the PutLogEvents limits they are batched under.

Pure functions, no I/O: the handler turns records into ``Event`` tuples in the caller's
thread, and the sender splits them into batches the service accepts.

An event is a plain tuple, not a NamedTuple: the garbage collector untracks plain tuples of
strings and integers, so a queue of 100,000 of them costs a full collection nothing, and
building one costs half as much in ``emit()``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate
from operator import itemgetter
from typing import Final, NamedTuple, TypeAlias

__all__ = [
    "ESTIMATE_PER_CHAR",
    "EVENT_OVERHEAD",
    "MAX_AGE_MS",
    "MAX_AHEAD_MS",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_BATCH_SPAN_MS",
    "MAX_EVENT_BYTES",
    "MESSAGE",
    "SIZE",
    "SPOOL_ID",
    "STREAM",
    "TIMESTAMP",
    "Event",
    "RejectedCounts",
    "batch_bytes",
    "count_rejected",
    "size_exactly",
    "split_batches",
    "split_by_age",
    "truncate",
    "utf8_size",
]

ESTIMATE_PER_CHAR = 6
"""Most bytes one character of a message takes when sent: 4 in UTF-8, 6 for a lone
surrogate, sent as its ``\\udcxx`` escape."""
EVENT_OVERHEAD = 26
"""Bytes the service adds to each event's UTF-8 message size when it sizes a batch."""
MAX_BATCH_BYTES = 1_048_576
"""Largest batch, in bytes: UTF-8 message bytes plus 26 bytes per event."""
MAX_BATCH_EVENTS = 10_000
"""Most events in one batch."""
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000
"""Longest time, in milliseconds, between the first and last event of one batch."""
MAX_EVENT_BYTES = MAX_BATCH_BYTES
"""Largest event, in bytes, counting the 26-byte overhead: a batch of one."""
MAX_AGE_MS = 14 * 24 * 3600 * 1000
"""Events older than this, in milliseconds, are refused by the service."""
MAX_AHEAD_MS = 2 * 3600 * 1000
"""Events further ahead than this, in milliseconds, are refused by the service."""


Event: TypeAlias = "tuple[str, int, str, int] | tuple[str, int, str, int, int]"
"""One log event waiting to be sent: (stream, timestamp, message, size[, spool id]).

``stream`` is the log stream name; ``timestamp`` milliseconds since the epoch; ``message``
the formatted message, valid UTF-8; ``size`` its UTF-8 size in bytes, without the 26-byte
overhead. Index with ``STREAM``, ``TIMESTAMP``, ``MESSAGE`` and ``SIZE``. A record written
to the disk spool carries its spool id as a fifth element, acknowledged once it is settled.

In the handler's queue only, ``size`` may be negative: minus an upper bound of the size,
``ESTIMATE_PER_CHAR`` bytes a character, charged for non-ASCII text that the sender sizes
exactly, off the caller's thread. Such a message may still hold lone surrogates;
``size_exactly`` escapes them and sets the size before anything else reads the event.
"""
STREAM: Final = 0
TIMESTAMP: Final = 1
MESSAGE: Final = 2
SIZE: Final = 3
SPOOL_ID: Final = 4
"""Where a spooled record's id sits: events of more than ``SPOOL_ID`` fields carry one."""


_timestamp_of = itemgetter(TIMESTAMP)
_size_of = itemgetter(SIZE)
_plus_overhead = EVENT_OVERHEAD.__add__


def batch_bytes(events: Sequence[Event]) -> int:
    """Bytes ``events`` count for against a batch or queue limit: UTF-8 size + 26 each."""
    return int(sum(map(_size_of, events))) + EVENT_OVERHEAD * len(events)


class RejectedCounts(NamedTuple):
    """Events of one batch the service refused, by reason."""

    too_new: int
    too_old: int
    expired: int

    @property
    def total(self) -> int:
        """Events refused, whatever the reason."""
        return self.too_new + self.too_old + self.expired


def utf8_size(message: str) -> tuple[str, int]:
    """Return the message as valid UTF-8 text and its size in bytes.

    Lone surrogates cannot be encoded; they are replaced by their ``\\udcxx`` escape so the
    record is still delivered.
    """
    if message.isascii():
        return message, len(message)
    try:
        return message, len(message.encode("utf-8"))
    except UnicodeEncodeError:
        encoded = message.encode("utf-8", "backslashreplace")
        return encoded.decode("utf-8"), len(encoded)


def size_exactly(events: list[Event]) -> tuple[list[Event], int, int]:
    """Replace estimated sizes (negative) by exact ones, escaping lone surrogates.

    An estimate is an upper bound, and ``emit()`` makes one only when it is within the
    message size limit: the exact size is too, and nothing needs cutting here.

    Returns:
        The events with exact sizes (the same tuples where they were exact already), the
        bytes they were charged and the bytes they hold now, both with the overhead.
    """
    charged = exact = 0
    sized: list[Event] = []
    for event in events:
        size = event[SIZE]
        if size >= 0:
            sized.append(event)
            charged += size
            exact += size
            continue
        message, new = utf8_size(event[MESSAGE])
        sized.append((event[STREAM], event[TIMESTAMP], message, new))
        charged -= size
        exact += new
    overhead = EVENT_OVERHEAD * len(events)
    return sized, charged + overhead, exact + overhead


def truncate(message: str, size: int, limit: int) -> tuple[str, int]:
    """Cut ``message`` to at most ``limit`` UTF-8 bytes, ending with a visible marker.

    Args:
        message: Valid UTF-8 text.
        size: Its size in bytes.
        limit: Largest size allowed, in bytes.

    Returns:
        The message (unchanged when it fits) and its new size in bytes.
    """
    if size <= limit:
        return message, size
    marker = f" [truncated: {size} bytes in all]"
    keep = max(0, limit - len(marker))
    head = message.encode("utf-8")[:keep].decode("utf-8", "ignore")
    cut = head + marker
    return cut, len(cut.encode("utf-8"))


def split_by_age(events: list[Event], now_ms: int) -> tuple[list[Event], list[Event], list[Event]]:
    """Split events into (sendable, too old, too new) by the service's time window.

    The service refuses events older than 14 days or more than 2 hours ahead; sending them
    costs bytes and returns indexes (which moto gets wrong by one). Judged by the events' own
    timestamps against ``now_ms``, the local clock in milliseconds.
    """
    oldest, newest = now_ms - MAX_AGE_MS, now_ms + MAX_AHEAD_MS
    if not events:
        return events, [], []
    times = list(map(_timestamp_of, events))  # the common case at C speed: all in the window
    if oldest <= min(times) and max(times) <= newest:
        return events, [], []
    sendable, too_old, too_new = [], [], []
    for event in events:
        if event[TIMESTAMP] < oldest:
            too_old.append(event)
        elif event[TIMESTAMP] > newest:
            too_new.append(event)
        else:
            sendable.append(event)
    return sendable, too_old, too_new


def split_batches(
    events: Sequence[Event],
    max_bytes: int = MAX_BATCH_BYTES,
    max_events: int = MAX_BATCH_EVENTS,
) -> Iterator[list[Event]]:
    """Yield batches of one stream's events that PutLogEvents accepts.

    Each batch is in chronological order, holds at most ``max_events`` events and
    ``max_bytes`` bytes (UTF-8 message bytes plus 26 per event) and spans less than 24 hours.
    Events keep their arrival order among equal timestamps.

    Args:
        events: Events of one stream, in any order.
        max_bytes: Batch size limit in bytes, at most 1,048,576.
        max_events: Batch length limit in events, at most 10,000.
    """
    if not events:
        return
    times = list(map(_timestamp_of, events))
    if max(times) - min(times) < MAX_BATCH_SPAN_MS:
        # The common case, within one span: cut by count and bytes at C speed.
        ordered = sorted(events, key=_timestamp_of)
        if len(ordered) <= max_events and batch_bytes(ordered) <= max_bytes:
            yield ordered
            return
        # ends[i]: bytes of ordered[:i + 1] with the overhead, increasing.
        ends = list(accumulate(map(_plus_overhead, map(_size_of, ordered))))
        start, total, held = 0, len(ordered), 0
        while start < total:
            stop = bisect_right(ends, held + max_bytes, start, min(total, start + max_events))
            stop = max(stop, start + 1)  # an event larger than max_bytes goes alone
            yield ordered[start:stop]
            held = ends[stop - 1]
            start = stop
        return
    batch: list[Event] = []
    size = 0
    first = 0
    for event in sorted(events, key=_timestamp_of):
        cost = event[SIZE] + EVENT_OVERHEAD
        if batch and (
            len(batch) >= max_events
            or size + cost > max_bytes
            or event[TIMESTAMP] - first >= MAX_BATCH_SPAN_MS
        ):
            yield batch
            batch, size = [], 0
        if not batch:
            first = event[TIMESTAMP]
        batch.append(event)
        size += cost
    if batch:
        yield batch


def count_rejected(info: dict[str, int] | None, batch_length: int) -> RejectedCounts:
    """Count the events a PutLogEvents response says it refused.

    Args:
        info: The response's ``rejectedLogEventsInfo``, or None.
        batch_length: Number of events sent.

    Returns:
        Events refused as too new (``tooNewLogEventStartIndex`` onwards, inclusive), too old
        and expired (before ``tooOldLogEventEndIndex`` and ``expiredLogEventEndIndex``,
        exclusive), each counted once.
    """
    if not info:
        return RejectedCounts(0, 0, 0)
    too_new_start = info.get("tooNewLogEventStartIndex")
    too_new = batch_length - too_new_start if too_new_start is not None else 0
    expired = min(info.get("expiredLogEventEndIndex", 0), batch_length)
    too_old = max(0, min(info.get("tooOldLogEventEndIndex", 0), batch_length) - expired)
    return RejectedCounts(max(0, too_new), too_old, expired)
