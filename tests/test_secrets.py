"""No access key, secret key or session token in anything printed, shipped or raised.

Every logger at DEBUG, where botocore prints AssumeRole answers and signed headers. The
``check`` command's exit paths are covered the same way in test_cli.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import watchtower_refresh._cli.demo as demo
from tests.conftest import REGION, ROLE_ARN
from watchtower_refresh import RefreshingCloudWatchLogHandler, refreshable_session
from watchtower_refresh.testing import FakeAWS, FakeClock, Fault


@pytest.fixture
def debug_everywhere() -> Iterator[io.StringIO]:
    """Every logger at DEBUG, written to a buffer the test reads."""
    captured = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield captured
    root.removeHandler(handler)


def assert_clean(text: str, secrets: list[str]) -> None:
    assert secrets, "the run issued no credentials: nothing was tested"
    for secret in secrets:
        assert secret not in text
    assert not re.search(r"ASIA[A-Z0-9]{16}", text)


def test_demo_prints_no_secret(
    monkeypatch: pytest.MonkeyPatch,
    debug_everywhere: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    servers: list[FakeAWS] = []

    class Recorded(FakeAWS):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            servers.append(self)

    monkeypatch.setattr(demo, "FakeAWS", Recorded)
    result = demo.run_demo(duration=2, token_lifetime=1.0, clock_skew=0.6, threads=1)
    assert result.ok
    out = capsys.readouterr()
    text = "\n".join([debug_everywhere.getvalue(), out.out, out.err, repr(result)])
    assert "Response body" in text  # botocore did print the STS answers, redacted
    assert_clean(text, servers[0].injector.issued_secrets())


def test_a_failing_refresh_prints_ships_and_raises_no_secret(
    aws: FakeAWS,
    clock: FakeClock,
    debug_everywhere: io.StringIO,
    messages: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    aws.injector.clock = clock
    handler = RefreshingCloudWatchLogHandler(
        "/secrets/refresh",
        send_interval=0.05,
        session_factory=lambda: refreshable_session(
            ROLE_ARN, duration_seconds=900, region_name=REGION, clock=clock
        ),
    )
    app = logging.getLogger("secrets.app")
    app.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app.info("before the refresh fails")
        assert handler.flush(timeout=10)
        aws.injector.add_fault(Fault("AccessDenied", action="AssumeRole", status=403))
        clock.advance(850)  # inside the mandatory window: the refresh must happen, and fails
        app.info("while it fails")  # the application's call does not raise
        assert handler.flush(timeout=10)
    app.removeHandler(handler)
    handler.close()
    assert handler.stats.dropped == {"AccessDenied": 1}
    out = capsys.readouterr()
    shipped = messages("/secrets/refresh")
    assert shipped == ["before the refresh fails"]
    logged = debug_everywhere.getvalue()
    assert "Refreshing temporary credentials failed" in logged  # botocore's traceback
    text = "\n".join(
        [logged, out.out, out.err, *shipped, *(str(w.message) for w in caught), repr(handler)]
    )
    assert_clean(text, aws.injector.issued_secrets())
