"""The claim book alone: each record of a claim is settled once, never more than it owes."""

from __future__ import annotations

from watchtower_refresh._core.claims import ClaimBook
from watchtower_refresh._core.events import Event


def events(count: int) -> list[Event]:
    return [("s", n, "x" * 10, 10) for n in range(count)]


def test_a_part_settles_once_and_never_counts_more_refusals_than_records() -> None:
    book = ClaimBook()
    batch = events(4)
    claim = book.open(0, batch, 4 * 36)
    part = claim.part(batch)
    settled = book.settle(part, 1, {"too_old": 5, "too_new": 0})
    assert settled is not None
    assert (settled.records, settled.delivered, settled.rejected, settled.rest) == (
        4,
        1,
        {"too_old": 3},
        0,
    )
    assert book.settle(part, 4, {}) is None  # settled already
    assert not book  # nothing of the claim is left to settle


def test_an_abandoned_claim_owes_nothing_more_to_the_rest() -> None:
    book = ClaimBook()
    batch = events(3)
    claim = book.open(0, batch, 3 * 36)
    assert book.first_open(-1) == 0
    assert book.abandon() == (3, 3 * 36)
    assert book.first_open(-1) == -1  # abandoned claims wait for nobody
    assert book  # still out: its put may be answered
    assert book.rest(claim) == (0, 0)
    assert not book


def test_a_divided_part_is_settled_group_by_group() -> None:
    book = ClaimBook()
    batch = events(4)
    claim = book.open(0, batch, 4 * 36)
    part = claim.part(batch)
    first, second = book.divide(part, [batch[:3], batch[3:]])
    assert book.divide(part, [batch]) == []  # divided already
    assert book.settle(part, 4, {}) is None
    settled = book.settle(first, 3, {})
    assert settled is not None
    assert (settled.records, settled.delivered) == (3, 3)
    assert book.oldest(None) == 0  # the claim's first record, still in flight
    assert book.settle(second, 0, {}) is not None
    assert book.oldest(None) is None
