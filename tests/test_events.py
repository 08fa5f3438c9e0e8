"""Batches obey the PutLogEvents limits; sizes, truncation and rejection counts are exact."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from watchtower_refresh._core.events import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_SPAN_MS,
    MESSAGE,
    SIZE,
    TIMESTAMP,
    Event,
    count_rejected,
    split_batches,
    split_by_age,
    truncate,
    utf8_size,
)

DAY = 24 * 3600 * 1000


def event(timestamp: int, size: int, label: str = "") -> Event:
    return ("s", timestamp, label or "x" * size, size)


def test_a_batch_of_exactly_the_byte_limit_is_one_batch() -> None:
    body = (MAX_BATCH_BYTES - 4 * EVENT_OVERHEAD) // 4
    events = [event(i, body) for i in range(4)]
    assert [len(b) for b in split_batches(events)] == [4]
    events.append(event(5, 1))
    assert [len(b) for b in split_batches(events)] == [4, 1]


def test_event_count_limit() -> None:
    events = [event(i, 1) for i in range(MAX_BATCH_EVENTS * 2 + 1)]
    assert [len(b) for b in split_batches(events)] == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 1]


def test_batches_span_less_than_a_day_and_are_sorted() -> None:
    events = [event(DAY + 5, 1, "c"), event(0, 1, "a"), event(DAY - 1, 1, "b"), event(DAY, 1, "d")]
    batches = list(split_batches(events))
    assert [[e[MESSAGE] for e in b] for b in batches] == [["a", "b"], ["d", "c"]]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3 * DAY), st.integers(0, 300_000)),
        max_size=60,
    ),
    st.integers(EVENT_OVERHEAD + 300_000, MAX_BATCH_BYTES),
    st.integers(1, 50),
)
def test_every_batch_is_within_limits(
    specs: list[tuple[int, int]], max_bytes: int, max_events: int
) -> None:
    events: list[Event] = [("s", ts, str(n), size) for n, (ts, size) in enumerate(specs)]
    batches = list(split_batches(events, max_bytes, max_events))
    for batch in batches:
        assert 1 <= len(batch) <= max_events
        assert sum(e[SIZE] + EVENT_OVERHEAD for e in batch) <= max_bytes
        assert batch[-1][TIMESTAMP] - batch[0][TIMESTAMP] < MAX_BATCH_SPAN_MS
    flat = list(itertools.chain.from_iterable(batches))
    assert sorted(flat, key=lambda e: e[MESSAGE]) == sorted(events, key=lambda e: e[MESSAGE])
    assert [e[TIMESTAMP] for e in flat] == sorted(e[TIMESTAMP] for e in events)


def test_utf8_size() -> None:
    assert utf8_size("abc") == ("abc", 3)
    assert utf8_size("é€😀") == ("é€😀", 2 + 3 + 4)
    assert utf8_size("a\udc80b") == ("a\\udc80b", 8)


@given(st.text(), st.integers(40, 400))
def test_truncate_never_exceeds_the_limit(text: str, limit: int) -> None:
    text, size = utf8_size(text)
    cut, cut_size = truncate(text, size, limit)
    assert cut_size == len(cut.encode("utf-8"))
    if size <= limit:
        assert (cut, cut_size) == (text, size)
    else:
        assert cut_size <= limit
        assert cut.endswith(f" [truncated: {size} bytes in all]")
        assert text.startswith(cut[: -len(f" [truncated: {size} bytes in all]")])


def test_count_rejected() -> None:
    assert count_rejected(None, 5).total == 0
    counts = count_rejected({"tooOldLogEventEndIndex": 2, "tooNewLogEventStartIndex": 4}, 5)
    assert (counts.too_new, counts.too_old, counts.expired) == (1, 2, 0)
    counts = count_rejected({"expiredLogEventEndIndex": 3, "tooOldLogEventEndIndex": 2}, 5)
    assert (counts.too_old, counts.expired, counts.total) == (0, 3, 3)
    counts = count_rejected({"expiredLogEventEndIndex": 1, "tooOldLogEventEndIndex": 3}, 5)
    assert (counts.too_old, counts.expired, counts.total) == (2, 1, 3)


def test_split_by_age() -> None:
    now = 100 * DAY
    fresh = event(now - 1000, 1, "fresh")
    old = event(now - 15 * DAY, 1, "old")
    ahead = event(now + 3 * 3600 * 1000, 1, "ahead")
    edge = event(now - 14 * DAY, 1, "edge")
    assert split_by_age([fresh, edge], now) == ([fresh, edge], [], [])
    assert split_by_age([old, fresh, ahead], now) == ([fresh], [old], [ahead])
