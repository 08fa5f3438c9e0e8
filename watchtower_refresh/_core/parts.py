"""Records larger than one event, sent as several (``large_events="split"``), and joined back.

A message over the event size limit is cut into parts, each within the limit, on character
boundaries (never inside a UTF-8 sequence). Each part begins with a marker::

    [wtr-split 5f0c2a9e7d31b846 02/12] <the part's text>

``5f0c2a9e7d31b846`` is the record's id: the first 8 bytes of the SHA-256 of the whole
message's UTF-8, in hexadecimal; ``02/12`` the part's number, from 1, zero-padded to the
width of the total, and the total, at least 2. The marker is fixed-width for a given total,
so the parts' sizes are known before the id is computed, and ``emit()`` charges the caps
with the split's exact size without hashing anything.

Because the id is a hash of the content, the same record always splits into the same parts:
a record sent again (read back from the spool after its process died in the middle of its
puts, or tried again after a hold) repeats parts already delivered, and ``join_parts``
keeps one of each. It also makes the marker unambiguous: ``join_parts`` joins a set only
when every part from 1 to the total is there and the joined text hashes to the id, so a
message that merely looks like a part is returned as it was.

The handler queues a split record as one event whose size is the split's (every part with
its marker, plus 26 bytes for every part but the first): the ledger counts it as one record,
the batches are cut by its true cost, and the parts are made only when it is sent
(``plan_puts``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from .events import EVENT_OVERHEAD, SIZE, TIMESTAMP, Event, split_batches

__all__ = [
    "MARKER_PREFIX",
    "join_parts",
    "plan_puts",
    "split_message",
    "split_size",
]

MARKER_PREFIX = "[wtr-split "
"""How every part of a split record begins."""
_ID_DIGITS = 16
_MIN_ROOM = 4  # bytes of text a part must carry: one character of UTF-8, whatever it is
_MARKER = re.compile(r"\[wtr-split ([0-9a-f]{16}) ([0-9]+)/([1-9][0-9]*)\] ")


def _marker_length(digits: int) -> int:
    """Bytes of a marker whose total has ``digits`` digits: prefix, id, ``k/n``, ``] ``."""
    return len(MARKER_PREFIX) + _ID_DIGITS + 1 + 2 * digits + 1 + 2


def _cuts(data: bytes | None, size: int, limit: int) -> tuple[int, list[int]]:
    """Where the parts of a ``size``-byte message end, each part within ``limit`` bytes.

    Args:
        data: The message's UTF-8, or None when it is ASCII (every byte is a boundary).
        size: Its size in bytes.
        limit: Largest part, marker included, in bytes.

    Returns:
        The markers' length in bytes and the end offset of each part's text.
    """
    digits = 1
    while True:
        marker = _marker_length(digits)
        room = limit - marker
        if room < _MIN_ROOM:
            message = f"an event limit of {limit} bytes leaves no room for a part's text"
            raise ValueError(message)
        ends: list[int] = []
        start = 0
        while start < size:
            end = min(start + room, size)
            if data is not None:
                while end < size and data[end] & 0xC0 == 0x80:  # inside a UTF-8 sequence
                    end -= 1
            ends.append(end)
            start = end
        if len(str(len(ends))) <= digits:
            return marker, ends
        digits += 1  # wider markers, less room: recount


def split_size(message: str, size: int, limit: int, data: bytes | None = None) -> int:
    """The size an event of ``message`` is charged once split into parts of ``limit`` bytes.

    Every part's UTF-8 size with its marker, plus 26 bytes for every part but the first:
    with the one event's own 26, what the parts cost in a batch. Hashes nothing.

    Args:
        message: Valid UTF-8 text, larger than ``limit``.
        size: Its size in bytes.
        limit: Largest part, in bytes (``max_message_size`` less the 26-byte overhead).
        data: ``message`` as UTF-8, when the caller has it.
    """
    if not message.isascii() and data is None:
        data = message.encode()
    marker, ends = _cuts(None if message.isascii() else data, size, limit)
    count = len(ends)
    return size + count * marker + (count - 1) * EVENT_OVERHEAD


def _record_id(data: bytes) -> str:
    """A record's id: the first 8 bytes of the SHA-256 of its UTF-8, in hexadecimal."""
    return hashlib.sha256(data).hexdigest()[:_ID_DIGITS]


def split_message(message: str, limit: int) -> list[str]:
    """Cut ``message`` into parts of at most ``limit`` UTF-8 bytes, each with its marker.

    Args:
        message: Valid UTF-8 text, larger than ``limit`` bytes.
        limit: Largest part, marker included, in bytes.
    """
    data = message.encode()
    ascii_only = len(data) == len(message)
    _, ends = _cuts(None if ascii_only else data, len(data), limit)
    record_id = _record_id(data)
    total = len(ends)
    width = len(str(total))
    parts = []
    start = 0
    for number, end in enumerate(ends, 1):
        text = message[start:end] if ascii_only else data[start:end].decode()
        parts.append(f"{MARKER_PREFIX}{record_id} {number:0{width}d}/{total}] {text}")
        start = end
    return parts


def _parts(event: Event, limit: int) -> list[Event]:
    """The events that carry ``event``, a record over ``limit`` bytes: its parts."""
    stream, timestamp, message = event[0], event[TIMESTAMP], event[2]
    return [(stream, timestamp, part, len(part.encode())) for part in split_message(message, limit)]


def plan_puts(
    events: Sequence[Event], limit: int, max_bytes: int, max_events: int
) -> list[tuple[list[Event], list[list[Event]], list[int]]]:
    """Group a batch's records into puts once the split ones are cut into parts.

    Records whose parts fit in one put together travel in one; a record whose parts do not
    fit in one put goes alone, its parts in order, in consecutive puts.

    Args:
        events: One stream's records, sorted by time, some over ``limit`` bytes.
        limit: Largest event message, in bytes.
        max_bytes: Largest put, in bytes (UTF-8 message bytes plus 26 per event).
        max_events: Most events in one put.

    Returns:
        For each group of records delivered together: the records, the puts that carry
        them (more than one only for a single record), and how many events each record
        takes.
    """
    groups: list[tuple[list[Event], list[list[Event]], list[int]]] = []
    records: list[Event] = []
    put: list[Event] = []
    counts: list[int] = []
    held = 0
    for event in events:
        if event[SIZE] <= limit:  # most records of a batch: no split, nothing to add up
            parts, cost = [event], event[SIZE] + EVENT_OVERHEAD
        else:
            parts = _parts(event, limit)
            cost = sum(part[SIZE] for part in parts) + EVENT_OVERHEAD * len(parts)
        alone = len(parts) > max_events or cost > max_bytes
        if records and (alone or len(put) + len(parts) > max_events or held + cost > max_bytes):
            groups.append((records, [put], counts))
            records, put, counts, held = [], [], [], 0
        if alone:
            groups.append(
                ([event], list(split_batches(parts, max_bytes, max_events)), [len(parts)])
            )
            continue
        records.append(event)
        put.extend(parts)
        counts.append(len(parts))
        held += cost
    if records:
        groups.append((records, [put], counts))
    return groups


def join_parts(messages: Iterable[str]) -> list[str]:
    """Join the parts of records split by ``large_events="split"``; leave the rest as it was.

    Args:
        messages: Messages read back from CloudWatch Logs, in the order it returns them.

    Returns:
        The messages, each split record joined into one message where its first part was,
        byte for byte the message logged. A set is joined only when every part is there and
        the joined text matches the record's id; otherwise its parts are returned as they
        were, markers included. A part read back twice (a record sent again after its
        process died in the middle of sending it) is returned once, in the joined message;
        a record logged twice is returned twice.
    """
    found = list(messages)
    # (id, total) -> part number -> (index, where its text starts) of each message carrying it
    sets: dict[tuple[str, int], dict[int, list[tuple[int, int]]]] = {}
    for index, message in enumerate(found):
        if not message.startswith(MARKER_PREFIX):
            continue
        match = _MARKER.match(message)
        if match is None:
            continue
        record_id, number_text, total_text = match.groups()
        number, total = int(number_text), int(total_text)
        if total < 2 or not 1 <= number <= total or len(number_text) != len(total_text):
            continue
        sets.setdefault((record_id, total), {}).setdefault(number, []).append((index, match.end()))
    joined: dict[int, str] = {}  # index of a first part -> the record
    consumed: set[int] = set()
    for (record_id, total), numbers in sets.items():
        if len(numbers) != total:
            continue  # a part is missing: left as it is
        copies = min(len(found_at) for found_at in numbers.values())
        complete = []
        for copy in range(copies):
            at = [numbers[number][copy] for number in range(1, total + 1)]
            text = "".join(found[index][start:] for index, start in at)
            if _record_id(text.encode("utf-8", "surrogatepass")) != record_id:
                break  # not parts of one record after all: left as they are
            complete.append((min(index for index, _ in at), text))
        if len(complete) != copies:
            continue
        for first, text in complete:
            joined[first] = text
        consumed.update(index for found_at in numbers.values() for index, _ in found_at)
    if not consumed:
        return found
    return [
        joined.get(index, message)
        for index, message in enumerate(found)
        if index in joined or index not in consumed
    ]
