"""The ledger alone, no AWS: every record is settled once, whatever order things happen in."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from watchtower_refresh._aws.failures import BACKOFF_CAP
from watchtower_refresh._core.events import Event
from watchtower_refresh._core.ledger import Claim, Ledger
from watchtower_refresh._delivery.deliver import backoff_delay


def events(count: int, size: int = 10) -> list[Event]:
    return [("s", n, "x" * size, size) for n in range(count)]


def admit(ledger: Ledger, batch: list[Event]) -> None:
    ledger.open_gate()
    for event in batch:
        assert ledger.admit(event, event[3] + 26)


def test_a_claim_settles_each_record_once() -> None:
    ledger = Ledger(100, 10_000)
    admit(ledger, events(10))
    taken = ledger.take()
    assert taken is not None
    claim, batch = taken
    part = claim.part(batch[:6])
    ledger.settle(part, delivered=6)
    ledger.settle(part, delivered=6)  # settled already: nothing happens
    ledger.settle_rest(claim, "internal_error")
    ledger.settle_rest(claim, "internal_error")
    stats = ledger.snapshot()
    assert stats.delivered == 6
    assert stats.dropped == {"internal_error": 4}
    assert stats.queued == 0
    assert stats.received == 10


def test_abandon_counts_queue_and_flight_once_and_a_late_answer_corrects_it() -> None:
    ledger = Ledger(100, 10_000)
    admit(ledger, events(5))
    taken = ledger.take()
    assert taken is not None
    claim, batch = taken
    admit(ledger, events(3))  # still queued
    assert ledger.abandon() == 8
    assert ledger.abandon() == 0
    assert ledger.snapshot().dropped == {"shutdown": 8}
    ledger.settle(claim.part(batch), delivered=5)  # the put in flight succeeded after all
    stats = ledger.snapshot()
    assert (stats.delivered, stats.dropped, stats.queued) == (5, {"shutdown": 3}, 0)


def test_caps_hold_and_free_as_records_settle() -> None:
    ledger = Ledger(3, 10_000)
    admit(ledger, events(3))
    assert not ledger.admit(("s", 0, "x", 1), 27)
    taken = ledger.take(max_events=2)
    assert taken is not None
    ledger.settle(taken[0].part(taken[1]), delivered=2)
    assert ledger.admit(("s", 0, "x", 1), 27)
    assert ledger.held == 2


def test_rejected_records_count_once_under_their_reason() -> None:
    ledger = Ledger(100, 10_000)
    admit(ledger, events(4))
    taken = ledger.take()
    assert taken is not None
    ledger.settle(taken[0].part(taken[1]), delivered=1, rejected={"too_old": 2, "too_new": 5})
    stats = ledger.snapshot()
    assert stats.delivered == 1
    assert stats.rejected == 3
    assert stats.dropped == {"too_old": 2, "too_new": 1}
    assert stats.received == 4


def test_stats_never_raises_while_other_threads_count_new_reasons() -> None:
    ledger = Ledger(100, 10_000)
    stop = threading.Event()
    errors: list[BaseException] = []

    def count() -> None:
        for n in range(3000):  # a new reason each time: the dict grows while others read it
            ledger.drop(f"reason-{n}")
            if stop.is_set():
                return

    def read() -> None:
        try:
            for _ in range(300):
                ledger.snapshot()
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=count)
    writer.start()
    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    stop.set()
    writer.join()
    assert errors == []


def test_backoff_stays_finite_after_any_number_of_attempts() -> None:
    for attempt in (0, 10, 1_000, 1_100, 10**6):
        assert 0.0 <= backoff_delay(attempt) <= BACKOFF_CAP


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("admit"), st.integers(1, 5)),
            st.tuples(st.just("take"), st.integers(0, 4)),
            st.tuples(st.just("deliver"), st.integers(0, 6)),
            st.tuples(st.just("fail"), st.integers(0, 6)),
            st.tuples(st.just("abandon"), st.just(0)),
        ),
        max_size=40,
    )
)
def test_any_order_of_operations_adds_up(steps: list[tuple[str, int]]) -> None:
    ledger = Ledger(8, 10_000)
    ledger.open_gate()
    given_records = 0
    open_claims: list[tuple[Claim, list[Event]]] = []
    for action, n in steps:
        if action == "admit":
            for event in events(n):
                given_records += 1
                if not ledger.admit(event, event[3] + 26):
                    ledger.drop("queue_full")
        elif action == "take":
            taken = ledger.take(max_events=n or None)
            if taken is not None:
                open_claims.append(taken)
        elif action in ("deliver", "fail") and open_claims:
            claim, batch = open_claims[n % len(open_claims)]
            part = batch[: n + 1]
            if action == "deliver":
                ledger.settle(claim.part(part), delivered=len(part))
            else:
                ledger.settle_rest(claim, "ThrottlingException")
        elif action == "abandon":
            ledger.abandon()
        stats = ledger.snapshot()
        assert stats.queued >= 0
        assert stats.queued <= 8
        assert stats.received == given_records


def test_estimated_sizes_are_made_exact_and_their_excess_released() -> None:
    # Non-ASCII text is charged 6 bytes a character until sized: "é" takes 2.
    ledger = Ledger(100, 10 * (600 + 26))
    ledger.open_gate()
    estimated: list[Event] = [("s", n, "é" * 100, -600) for n in range(10)]
    for event in estimated:
        assert ledger.admit(event, 600 + 26)
    assert not ledger.has_room(600 + 26)  # full, by the estimates
    assert ledger.size_queued()  # the emit side sizes the queue before refusing
    assert ledger.admitted_bytes == 10 * (200 + 26)
    assert not ledger.size_queued()  # nothing new since
    assert ledger.admit(("s", 10, "é" * 100, -600), 626)
    taken = ledger.take()
    assert taken is not None
    claim, batch = taken
    assert [event[3] for event in batch] == [200] * 11
    assert claim.remaining_bytes == 11 * (200 + 26)
    ledger.settle(claim.part(batch), delivered=11)
    # Nothing held, nothing leaked: the whole cap is free again.
    assert ledger.admitted_bytes == ledger.released_bytes
    assert ledger.gate.limit_bytes == ledger.released_bytes + ledger.max_bytes
    assert ledger.snapshot().delivered == 11


def test_an_estimate_sized_on_take_is_escaped() -> None:
    ledger = Ledger(100, 100_000)
    ledger.open_gate()
    assert ledger.admit(("s", 0, "\udc80" * 100, -600), 626)
    assert ledger.admit(("s", 1, "ok ✓", -24), 50)
    taken = ledger.take()
    assert taken is not None
    claim, (escaped, fine) = taken
    assert escaped[2:] == ("\\udc80" * 100, 600)
    assert fine[2:] == ("ok ✓", 6)
    assert claim.remaining_bytes == 600 + 6 + 2 * 26


def test_a_take_says_how_much_estimates_overstated_the_queue() -> None:
    # The sender counts a batch as full by exact bytes: it scales the charged bytes by this.
    ledger = Ledger(100, 100_000)
    ledger.open_gate()
    for n in range(4):
        assert ledger.admit(("s", n, "é" * 100, -600), 626)
    assert ledger.take() is not None
    assert ledger.queue.charge_ratio == 626 / 226
    assert ledger.admit(("s", 4, "ascii", 5), 31)
    assert ledger.take() is not None
    assert ledger.queue.charge_ratio == 1.0
