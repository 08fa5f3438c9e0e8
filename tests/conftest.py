"""Fixtures: a clean environment with fake credentials, and AWS stood in by moto on loopback."""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.httpsession import URLLib3Session

from watchtower_refresh import RefreshingCloudWatchLogHandler
from watchtower_refresh._delivery.pace import PACE
from watchtower_refresh.testing import FakeAWS, FakeClock, read_messages

ROLE_ARN = "arn:aws:iam::123456789012:role/logger"
REGION = "us-east-1"

# `make soak` sets this: the tests marked `soak` run at the size their names promise.
# `make test` runs the same tests, smaller, so each still fails where its property breaks.
SOAK = os.environ.get("WATCHTOWER_REFRESH_SOAK") == "1"


def soak(quick: int, full: int) -> int:
    """The size of a soak-marked test's run: ``quick`` in ``make test``, ``full`` in
    ``make soak`` (records, runs or examples, as the test counts them)."""
    return full if SOAK else quick


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Strip AWS_* variables and shared config, then set fake keys and a region.

    No test can reach real AWS: there are no real credentials, the instance metadata
    service is off, and the tests that deliver point every client at loopback.
    """
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKESOURCEKEY000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-source-secret")
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any botocore request to a host other than loopback, whatever the code under test.

    The network here is closed anyway; this turns a stray request to AWS into a clear error
    instead of a connection timeout, so a bug cannot hide behind one.
    """
    send = URLLib3Session.send

    def guarded(self: URLLib3Session, request: Any) -> Any:
        host = urlsplit(request.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"a test tried to reach {request.url}")
        return send(self, request)

    monkeypatch.setattr(URLLib3Session, "send", guarded)


@pytest.fixture(autouse=True)
def unpaced() -> Iterator[None]:
    """Start each test with the process's pace of puts off: a test that was throttled would
    otherwise slow the puts of the tests after it, for a minute, in the same process."""
    PACE.reset()
    yield
    PACE.reset()


def _logger_states() -> dict[str, tuple[int, bool, bool]]:
    return {
        name: (logger.level, logger.disabled, logger.propagate)
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was, close the handlers a test left on it, and restore
    every logger's level, ``disabled`` and ``propagate`` (configure_logging sets botocore's
    level, which later tests read at DEBUG; a dictConfig disables the loggers it does not
    name, botocore's among them).
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    states = _logger_states()
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for name in _logger_states():
        logger = logging.getLogger(name)
        level, logger.disabled, logger.propagate = states.get(name, (logging.NOTSET, False, True))
        logger.setLevel(level)


def run_python(aws: FakeAWS, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a Python process whose every boto3 client goes to the fake AWS."""
    return subprocess.run(
        [sys.executable, *argv],
        env={**os.environ, **aws.environment(REGION), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def make_handler() -> Iterator[Callable[..., RefreshingCloudWatchLogHandler]]:
    """Build handlers with a short send interval; close them all afterwards."""
    made: list[RefreshingCloudWatchLogHandler] = []

    def make(group: str = "app", **options: Any) -> RefreshingCloudWatchLogHandler:
        options.setdefault("send_interval", 0.05)
        handler = RefreshingCloudWatchLogHandler(group, **options)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close()


def logger_for(handler: logging.Handler, name: str = "app") -> logging.Logger:
    logger = logging.getLogger(f"test.{name}.{id(handler)}")
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def log_from_threads(logger: logging.Logger, threads: int, records: int) -> None:
    """Log ``records`` numbered records from each of ``threads`` threads started together."""
    start = threading.Barrier(threads)

    def work(worker: int) -> None:
        start.wait()
        for n in range(records):
            logger.info("worker %d record %d", worker, n)

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@pytest.fixture(scope="session")
def fake_aws_server() -> Iterator[FakeAWS]:
    """One moto server behind the fault injector for the whole run."""
    with FakeAWS() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves by hand."""
    return FakeClock(datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.timezone.utc))


@pytest.fixture
def aws(fake_aws_server: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    """The fake AWS, emptied, with every boto3 client in this process pointed at it."""
    fake_aws_server.reset()
    fake_aws_server.injector.token_lifetime = None
    for name, value in fake_aws_server.environment(REGION).items():
        monkeypatch.setenv(name, value)
    yield fake_aws_server
    fake_aws_server.injector.clock = lambda: datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture
def messages(aws: FakeAWS) -> Callable[[str], list[str]]:
    """Read back every message of a log group from the fake service."""
    client = boto3.client("logs", region_name=REGION, endpoint_url=aws.endpoint_url)

    def read(group: str) -> list[str]:
        return list(read_messages(client, group))

    return read


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest tests first: ``make test`` hands tests to its processes one at a time
    (``--dist load``), so the ones that take many seconds (``slow``, ``soak``, the wheel's)
    start at once, beside the short ones, instead of last."""

    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("wheel"):
            return 0
        if item.get_closest_marker("slow") or item.get_closest_marker("soak"):
            return 1
        return 2

    items.sort(key=weight)
