"""The reliability suite: faults that try to lose records, each run read back and counted.

Outcomes, not timings. Every case logs numbered records through faults and asserts that every
record was read back from the service, or counted with its reason. Cases covered elsewhere:
the stream deleted mid-run and AccessDenied fixed by a policy change (test_handler), the
interpreter exiting without close() and a forked child (test_handler, in subprocesses).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import REGION, ROLE_ARN, log_from_threads
from watchtower_refresh import RefreshingCloudWatchLogHandler, refreshable_session
from watchtower_refresh.testing import FakeAWS, FakeClock, Fault

Read = Callable[[str], list[str]]


@pytest.fixture
def handler() -> Iterator[Callable[..., RefreshingCloudWatchLogHandler]]:
    made: list[RefreshingCloudWatchLogHandler] = []

    def make(group: str, **options: Any) -> RefreshingCloudWatchLogHandler:
        options.setdefault("send_interval", 0.02)
        options.setdefault("max_batch_count", 100)  # many batches: many chances to fail
        made.append(RefreshingCloudWatchLogHandler(group, **options))
        return made[-1]

    yield make
    for item in made:
        item.close()


def log_numbered(handler: logging.Handler, count: int, prefix: str = "record") -> list[str]:
    logger = logging.getLogger(f"reliability.{id(handler)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    sent = []
    for n in range(count):
        sent.append(f"{prefix} {n}")
        logger.info(sent[-1])
    return sent


@pytest.mark.parametrize(
    "faults",
    [
        [Fault("ThrottlingException", action="PutLogEvents", probability=0.3)],
        [Fault("ServiceUnavailableException", action="PutLogEvents", status=503, probability=0.1)],
        [Fault("ConnectionReset", action="PutLogEvents", probability=0.1)],
        [
            Fault("ThrottlingException", action="PutLogEvents", probability=0.2),
            Fault("ServiceUnavailableException", status=503, probability=0.1),
            Fault("ConnectionReset", probability=0.05),
        ],
    ],
    ids=["30%-throttled", "10%-503", "10%-resets", "all-at-once"],
)
def test_no_loss_under_transient_faults(
    aws: FakeAWS, handler: Any, messages: Read, faults: list[Fault]
) -> None:
    for fault in faults:
        aws.injector.add_fault(fault)
    cloudwatch = handler("/rel/transient")
    sent = log_numbered(cloudwatch, 3000)
    assert cloudwatch.flush(timeout=120)
    got = messages("/rel/transient")
    assert sorted(got) == sorted(sent)
    assert cloudwatch.stats.dropped == {}
    assert cloudwatch.stats.retried > 0
    injected = sum(aws.injector.counts[f.code] for f in faults)
    assert injected > 0


def test_no_loss_across_ten_expiries(
    aws: FakeAWS, clock: FakeClock, handler: Any, messages: Read
) -> None:
    aws.injector.clock = lambda: clock() + datetime.timedelta(seconds=800)
    cloudwatch = handler(
        "/rel/expiries",
        session_factory=lambda: refreshable_session(
            ROLE_ARN, duration_seconds=900, region_name=REGION, clock=clock
        ),
    )
    sent: list[str] = []
    for round_ in range(11):
        sent += log_numbered(cloudwatch, 50, prefix=f"round {round_}")
        assert cloudwatch.flush(timeout=30)
        clock.advance(950)  # past each token's real end, inside its believed life
    assert sorted(messages("/rel/expiries")) == sorted(sent)
    assert aws.injector.counts["ExpiredTokenException"] == 10
    assert cloudwatch.stats.credential_refreshes == 10
    assert cloudwatch.stats.dropped == {}


def test_eight_threads_of_ten_thousand_records(aws: FakeAWS, handler: Any, messages: Read) -> None:
    aws.injector.add_fault(Fault("ThrottlingException", action="PutLogEvents", probability=0.1))
    cloudwatch = handler("/rel/threads", max_batch_count=10_000, send_interval=0.2)
    logger = logging.getLogger("reliability.threads")
    logger.handlers = [cloudwatch]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    log_from_threads(logger, threads=8, records=10_000)
    assert cloudwatch.flush(timeout=120)
    got = messages("/rel/threads")
    assert len(got) == 80_000
    assert len(set(got)) == 80_000
    assert cloudwatch.stats.delivered == 80_000
    assert cloudwatch.stats.dropped == {}


def test_a_long_outage_loses_only_what_the_cap_counts(
    aws: FakeAWS, handler: Any, messages: Read
) -> None:
    outage = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    cloudwatch = handler("/rel/outage", queue_max_events=500)
    with pytest.warns(Warning, match="is full"):
        sent = log_numbered(cloudwatch, 2000)
    aws.injector.remove_fault(outage)
    assert cloudwatch.flush(timeout=60)
    got = messages("/rel/outage")
    stats = cloudwatch.stats
    assert len(got) + stats.dropped_total == len(sent)
    assert stats.dropped == {"queue_full": 1500}
    assert sorted(got) == sorted(sent[:500])  # the oldest are kept, the newest dropped
