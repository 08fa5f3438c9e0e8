"""Flushing at the end of a Lambda invocation: every handler, within a bounded time."""

from __future__ import annotations

import socket
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from watchtower_refresh import (
    RefreshingCloudWatchLogHandler,
    WatchtowerRefreshWarning,
    _lambda,
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

    @flush_logs(timeout=30)
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


@pytest.mark.slow
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


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that accepts connections and never answers: every request hangs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        host, port = listener.getsockname()
        yield f"http://{host}:{port}"


@pytest.mark.slow
@pytest.mark.parametrize("stuck_first", [True, False], ids=["stuck-first", "healthy-first"])
def test_a_stuck_handler_does_not_starve_a_healthy_one(
    aws: FakeAWS,
    messages: Read,
    black_hole: str,
    monkeypatch: pytest.MonkeyPatch,
    stuck_first: bool,
) -> None:
    stuck = RefreshingCloudWatchLogHandler(
        "/fn/stuck", send_interval=3600, endpoint_url=black_hole, flush_timeout=1
    )
    healthy = RefreshingCloudWatchLogHandler("/fn/healthy", send_interval=3600)
    # Waited for in this order: the old loop gave the first one the whole budget.
    order = [stuck, healthy] if stuck_first else [healthy, stuck]
    monkeypatch.setattr(_lambda, "live_handlers", lambda: order)

    emit(healthy, "warm")  # a cold start (client, group, stream) is not what is measured
    assert healthy.flush(timeout=30)

    @flush_logs(timeout=3)
    def function(event: dict[str, Any], context: Any) -> None:
        emit(stuck, f"lost {event['n']}")
        emit(healthy, f"kept {event['n']}")

    for n in range(3):
        started = time.monotonic()
        function({"n": n}, Context(30_000))
        assert time.monotonic() - started < 10  # bounded, however stuck the other one is
        kept = sorted(messages("/fn/healthy"))
        assert kept == sorted(["warm", *(f"kept {i}" for i in range(n + 1))])
        assert healthy.stats.delivered == n + 2
    assert stuck.stats.delivered == 0
    healthy.close()
    with warnings.catch_warnings():
        # Given up while resending (a warning) or abandoned by close() (a line on stderr):
        # which one depends on where the put is when the time runs out; either is counted.
        warnings.simplefilter("ignore", WatchtowerRefreshWarning)
        stuck.close()
    assert stuck.stats.dropped == {"shutdown": 3}
    assert stuck.stats.queued == 0


def test_each_invocation_is_a_log_buffer_scope(aws: FakeAWS, messages: Read) -> None:
    import logging

    handler = RefreshingCloudWatchLogHandler("/fn/buffered", send_interval=3600, buffer_at="DEBUG")

    def log(level: int, text: str) -> None:
        handler.handle(logging.LogRecord("fn", level, __file__, 1, text, None, None))

    @flush_logs
    def function(event: dict[str, Any], context: Any) -> str:
        log(logging.DEBUG, f"{event['n']}: parsed")
        log(logging.INFO, f"{event['n']}: handled")
        if event.get("fail"):
            log(logging.ERROR, f"{event['n']}: failed")
        if event.get("raise"):
            raise RuntimeError("boom")
        return "done"

    function({"n": 1}, Context(30_000))
    function({"n": 2, "fail": True}, Context(30_000))
    with pytest.raises(RuntimeError, match="boom"):
        function({"n": 3, "raise": True}, Context(30_000))
    assert sorted(messages("/fn/buffered")) == [
        "1: handled",
        "2: failed",
        "2: handled",
        "2: parsed",
        "3: handled",
        "3: parsed",
    ]
    assert handler.stats.discarded == 1
    handler.close()
