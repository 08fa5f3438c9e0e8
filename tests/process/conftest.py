"""Fixtures of the process tests: SIGTERM put back, and the handlers a delivery sees."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest

from watchtower_refresh import RefreshingCloudWatchLogHandler
from watchtower_refresh._process import signals


@pytest.fixture(autouse=True)
def restore_sigterm() -> Iterator[None]:
    """Give SIGTERM back the handler it had: the handlers made here install ours."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.fixture
def only(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make settle() see only the given handlers, not every one this test run made."""

    def set_live(*handlers: RefreshingCloudWatchLogHandler) -> None:
        monkeypatch.setattr(signals, "_live", lambda: list(handlers))

    return set_live
