"""structlog events reach CloudWatch Logs as JSON objects with contextvars and zoned time."""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from tests.conftest import ROLE_ARN
from watchtower_refresh import (
    RefreshingCloudWatchLogHandler,
    configure_logging,
    configure_structlog,
)
from watchtower_refresh.testing import FakeAWS

Read = Callable[[str], list[str]]


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_events_are_json_objects_insights_can_query(aws: FakeAWS, messages: Read) -> None:
    configure_logging(log_group="/app/structlog", role_arn=ROLE_ARN, console=False, environ={})
    configure_structlog(tz="Asia/Tokyo")
    structlog.contextvars.bind_contextvars(request_id="req-7")
    log = structlog.get_logger("orders")
    log.info("order placed", order=42)
    try:
        raise ValueError("card declined")
    except ValueError:
        log.exception("payment failed", order=42)
    (handler,) = [
        h for h in logging.getLogger().handlers if isinstance(h, RefreshingCloudWatchLogHandler)
    ]
    handler.close()
    events = sorted((json.loads(m) for m in messages("/app/structlog")), key=lambda e: e["event"])
    placed, failed = events[0], events[1]
    assert placed["event"] == "order placed"
    assert placed["level"] == "info"
    assert placed["logger"] == "orders"
    assert placed["order"] == 42
    assert placed["request_id"] == "req-7"
    assert placed["timestamp"].endswith("+09:00")
    assert failed["level"] == "error"
    assert "ValueError: card declined" in failed["exception"]


def test_missing_structlog_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_structlog(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "structlog":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_structlog)
    with pytest.raises(ImportError, match=r"pip install 'watchtower-refresh\[structlog\]'"):
        configure_structlog()
