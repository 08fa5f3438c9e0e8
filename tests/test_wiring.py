"""Wiring: a handler's delivery parts in one process, and what it counts for the handler."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from watchtower_refresh import RefreshingCloudWatchLogHandler
from watchtower_refresh._core.reasons import DropReason


@pytest.fixture
def handler() -> Iterator[RefreshingCloudWatchLogHandler]:
    made = RefreshingCloudWatchLogHandler(log_stream_name="{logger_name}", handle_signals=False)
    yield made
    made.close()


def _record(name: str = "app.orders") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, "hello", None, None)


def test_a_record_lost_on_arrival_is_counted_and_marked_in_its_stream(
    handler: RefreshingCloudWatchLogHandler,
) -> None:
    handler._wiring.lost(_record(), DropReason.FORMAT_ERROR)
    assert handler.stats.dropped == {"format_error": 1}
    gaps = handler._wiring.pipeline.ledger.gaps
    assert gaps is not None
    assert "app.orders" in gaps


def test_a_record_whose_stream_cannot_be_named_is_still_counted(
    handler: RefreshingCloudWatchLogHandler,
) -> None:
    record = _record()
    del record.name  # the stream template cannot be filled in
    handler._wiring.lost(record, DropReason.INTERNAL_ERROR)
    assert handler.stats.dropped == {"internal_error": 1}


def test_a_forked_child_starts_with_parts_of_its_own(
    handler: RefreshingCloudWatchLogHandler,
) -> None:
    handler._wiring.lost(_record(), DropReason.FORMAT_ERROR)
    before = handler._wiring
    handler.after_fork_in_child()
    assert handler._wiring is not before
    assert handler._pipeline is handler._wiring.pipeline
    assert handler.stats.dropped == {}  # the parent's count stays the parent's
