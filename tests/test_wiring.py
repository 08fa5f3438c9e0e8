"""Wiring: a handler's delivery parts in one process, built afresh in a forked child; and the
count of a record lost on arrival, which the handler makes without handing the record on."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from watchtower_refresh import RefreshingCloudWatchLogHandler
from watchtower_refresh._streams import StreamNames


@pytest.fixture
def handler() -> Iterator[RefreshingCloudWatchLogHandler]:
    made = RefreshingCloudWatchLogHandler(log_stream_name="{logger_name}", handle_signals=False)
    made.setFormatter(_Broken())
    yield made
    made.close()


class _Broken(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        raise ValueError("cannot format")


def _record(name: str = "app.orders") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, "hello", None, None)


@pytest.fixture(autouse=True)
def _quiet_handle_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)  # handleError says nothing


def test_a_record_that_cannot_be_formatted_is_counted_and_marked_in_its_stream(
    handler: RefreshingCloudWatchLogHandler,
) -> None:
    handler.handle(_record())
    assert handler.stats.dropped == {"format_error": 1}
    gaps = handler._pipeline.ledger.gaps
    assert gaps is not None
    assert "app.orders" in gaps


def test_a_record_whose_stream_cannot_be_named_is_still_counted(
    handler: RefreshingCloudWatchLogHandler,
) -> None:
    record = _record()
    del record.name  # the stream template cannot be filled in
    handler.handle(record)
    assert handler.stats.dropped == {"format_error": 1}


def test_a_broken_record_has_no_place_in_a_stream() -> None:
    names = StreamNames("{logger_name}")
    record = _record()
    assert names.place(record) == ("app.orders", int(record.created * 1000))
    record.created = "yesterday"  # type: ignore[assignment]
    assert names.place(record) is None


def test_a_forked_child_starts_with_parts_of_its_own(
    handler: RefreshingCloudWatchLogHandler,
) -> None:
    handler.handle(_record())
    before = handler._wiring
    handler.after_fork_in_child()
    assert handler._wiring is not before
    assert handler._pipeline is handler._wiring.pipeline
    assert handler.stats.dropped == {}  # the parent's count stays the parent's
