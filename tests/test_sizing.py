"""Sizing: what a formatted message is charged as an event, and what becomes of a long one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from watchtower_refresh import RefreshingCloudWatchLogHandler, join_parts
from watchtower_refresh._core.ledger import Ledger
from watchtower_refresh._core.sizing import Sizing


def _sizing(**options: Any) -> Sizing:
    handler = RefreshingCloudWatchLogHandler(handle_signals=False, **options)
    try:
        return Sizing(handler.options)
    finally:
        handler.close()


def test_a_long_message_is_truncated_to_the_limit_and_counted() -> None:
    ledger = Ledger(100, 1 << 20)
    message, size = _sizing(max_message_size=1026).cut("x" * 4000, 4000, None, ledger)
    assert size == len(message.encode()) <= 1000
    assert message.endswith(" [truncated: 4000 bytes in all]")
    assert ledger.truncated == 1


def test_a_split_message_stays_whole_and_is_charged_its_parts() -> None:
    ledger = Ledger(100, 1 << 20)
    message, size = _sizing(max_message_size=1026, large_events="split").cut(
        "x" * 4000, 4000, None, ledger
    )
    assert message == "x" * 4000
    assert size > 4000  # each part's marker and overhead on top of the message
    assert ledger.truncated == 0


def test_a_split_larger_than_the_queue_is_truncated_instead() -> None:
    ledger = Ledger(100, 2000)
    sizing = _sizing(max_message_size=1026, large_events="split")
    message, size = sizing.cut("x" * 4000, 4000, None, ledger)
    assert size <= 1000
    assert join_parts([message]) == [message]  # one event, not parts
    assert ledger.truncated == 1


def test_non_ascii_text_without_a_spool_is_charged_an_upper_bound() -> None:
    ledger = Ledger(100, 1 << 20)
    message, size, text = _sizing().text("\u00e9" * 10, ledger)
    assert message == "\u00e9" * 10
    assert text is None
    assert -size >= len(message.encode())  # negative: an estimate, sized later
    assert ledger.queue.estimated


def test_non_ascii_text_with_a_spool_is_sized_exactly(tmp_path: Path) -> None:
    ledger = Ledger(100, 1 << 20)
    message, size, text = _sizing(spool_dir=str(tmp_path)).text("\u00e9" * 10, ledger)
    assert (message, size, text) == ("\u00e9" * 10, 20, ("\u00e9" * 10).encode())
    assert not ledger.queue.estimated


def test_lone_surrogates_are_escaped_so_the_record_is_still_sent(tmp_path: Path) -> None:
    ledger = Ledger(100, 1 << 20)
    message, size, _ = _sizing(spool_dir=str(tmp_path)).text("a\ud800b", ledger)
    assert size == len(message.encode())
    assert message.startswith("a")
    assert message.endswith("b")
