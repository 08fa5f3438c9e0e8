"""Flushing at the end of a Lambda invocation: every handler, within a bounded time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from watchtower_refresh import (
    RefreshingCloudWatchLogHandler,
    WatchtowerRefreshWarning,
    flush_handlers,
    flush_logs,
    flushing,
)
from watchtower_refresh._lambda import _budget
from watchtower_refresh.testing import FakeAWS, Fault

Read = Callable[[str], list[str]]


class Context:
    def __init__(self, remaining_ms: float) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> float:
        return self.remaining_ms


def handler_pair() -> tuple[RefreshingCloudWatchLogHandler, RefreshingCloudWatchLogHandler]:
    return (
        RefreshingCloudWatchLogHandler("/fn/a", send_interval=3600),
        RefreshingCloudWatchLogHandler("/fn/b", send_interval=3600),
    )


def emit(handler: RefreshingCloudWatchLogHandler, text: str) -> None:
    import logging

    handler.handle(logging.LogRecord("fn", logging.INFO, __file__, 1, text, None, None))


def test_decorator_flushes_every_handler_before_returning(aws: FakeAWS, messages: Read) -> None:
    first, second = handler_pair()

    @flush_logs
    def function(event: dict[str, Any], context: Any) -> str:
        emit(first, f"a {event['n']}")
        emit(second, f"b {event['n']}")
        return "done"

    for n in range(3):
        assert function({"n": n}, Context(30_000)) == "done"
        assert sorted(messages("/fn/a")) == [f"a {i}" for i in range(n + 1)]
        assert sorted(messages("/fn/b")) == [f"b {i}" for i in range(n + 1)]
    first.close()
    second.close()


def test_flush_happens_when_the_function_raises(aws: FakeAWS, messages: Read) -> None:
    first, second = handler_pair()

    @flush_logs(timeout=5)
    def function(event: Any, context: Any) -> None:
        emit(first, "about to fail")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        function({}, None)
    assert messages("/fn/a") == ["about to fail"]
    with flushing():
        emit(second, "in a block")
    assert messages("/fn/b") == ["in a block"]
    first.close()
    second.close()


def test_flush_is_bounded_by_the_time_left(aws: FakeAWS) -> None:
    aws.injector.add_fault(Fault("ServiceUnavailableException", action="PutLogEvents", status=503))
    first, second = handler_pair()
    emit(first, "stuck")
    started = time.monotonic()
    assert flush_handlers(timeout=0.5) is False
    assert time.monotonic() - started < 3
    assert _budget(Context(1200), 2.0) == pytest.approx(0.7)
    assert _budget(Context(100), 2.0) == 0
    assert _budget(None, 2.0) == 2.0
    assert _budget(Context("x"), 1.0) == 1.0  # type: ignore[arg-type]
    first.flush_timeout = second.flush_timeout = 0.2
    with pytest.warns(WatchtowerRefreshWarning, match="gave up resending"):
        first.close()
    second.close()
