"""Property tests: whatever an application logs, emit() never raises, the sender never dies,
and every record is delivered or counted with its reason."""

from __future__ import annotations

import datetime
import logging
import time
import uuid
import warnings
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import soak
from watchtower_refresh import RefreshingCloudWatchLogHandler
from watchtower_refresh.testing import FakeAWS, read_messages

DAY = 86400.0

texts = st.text(st.characters(exclude_categories=()), max_size=200)  # lone surrogates too
messages = st.one_of(
    texts,
    st.just(""),
    st.builds(lambda n: "x" * n, st.sampled_from([1_048_550, 1_048_551, 1_500_000])),
    st.dictionaries(
        st.text(max_size=10),
        st.one_of(texts, st.integers(), st.just(object()), st.just({1, 2}), st.just(b"\xff")),
        max_size=4,
    ),
    st.just("%d apples"),  # with a str argument below: a broken %-format
)
ages = st.sampled_from([0.0, -13 * DAY, -15 * DAY, 3 * 3600.0, 1 * 3600.0])
records = st.lists(st.tuples(messages, ages), min_size=1, max_size=12)


class Expected:
    """What the handler should report for a record, judged independently of it."""

    @staticmethod
    def reason(message: object, age: float) -> str:
        if message == "%d apples":
            return "format_error"
        if message == "":
            return "empty"
        if age < -14 * DAY:
            return "too_old"
        if age > 2 * 3600:
            return "too_new"
        return "delivered"


@pytest.fixture
def quiet_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)  # handleError stays quiet


@pytest.mark.soak
@settings(
    max_examples=soak(15, 60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=records)
def test_every_record_is_delivered_or_counted(
    aws: FakeAWS, quiet_errors: None, batch: list[tuple[Any, float]]
) -> None:
    group = f"/bad/{uuid.uuid4().hex}"
    cloudwatch = RefreshingCloudWatchLogHandler(group, send_interval=0.05)
    expected: dict[str, int] = {}
    now = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the handler's warnings are expected here
        for message, age in batch:
            args = ("three",) if message == "%d apples" else None
            record = logging.LogRecord("bad", logging.INFO, __file__, 1, message, args, None)
            record.created = now + age
            cloudwatch.handle(record)  # must not raise, whatever the message
            reason = Expected.reason(message, age)
            expected[reason] = expected.get(reason, 0) + 1
        assert cloudwatch.flush(timeout=60)
    stats = cloudwatch.stats
    sender = cloudwatch._pipeline.sender
    assert sender is None or sender.alive  # nothing crashed the sender
    cloudwatch.close()
    assert stats.delivered == expected.pop("delivered", 0)
    assert stats.dropped == expected
    assert stats.queued == 0
    assert stored(aws, group) == stats.delivered


def stored(aws: FakeAWS, group: str) -> int:
    client = boto3.client("logs", endpoint_url=aws.endpoint_url)
    try:
        # Drop markers (a record that failed to format leaves one) are not records.
        return sum(not m.startswith("watchtower-refresh:") for m in read_messages(client, group))
    except client.exceptions.ResourceNotFoundException:
        return 0


def test_truncation_keeps_valid_utf8_at_the_cut(aws: FakeAWS) -> None:
    handler = RefreshingCloudWatchLogHandler("/bad/cut", max_message_size=200, send_interval=0.05)
    record = logging.LogRecord("bad", logging.INFO, __file__, 1, "€" * 500, None, None)
    record.created = datetime.datetime.now().timestamp()
    handler.handle(record)
    assert handler.flush(timeout=10)
    client = boto3.client("logs", endpoint_url=aws.endpoint_url)
    (message,) = read_messages(client, "/bad/cut")
    assert message.startswith("€" * 10)
    assert message.endswith("[truncated: 1500 bytes in all]")
    handler.close()
