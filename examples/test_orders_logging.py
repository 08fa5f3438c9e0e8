import logging
from collections.abc import Iterator

import boto3
import pytest

from watchtower_refresh import RefreshingCloudWatchLogHandler
from watchtower_refresh.testing import FakeAWS, Fault, read_messages


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    with FakeAWS() as server:
        for name, value in server.environment("eu-west-1").items():
            monkeypatch.setenv(name, value)  # every boto3 client now goes to 127.0.0.1
        yield server


def test_throttled_records_still_arrive(aws: FakeAWS) -> None:
    aws.injector.add_fault(Fault("ThrottlingException", action="PutLogEvents", times=2))
    handler = RefreshingCloudWatchLogHandler("/app/orders", send_interval=0.1)
    handler.handle(logging.makeLogRecord({"msg": "order placed"}))
    handler.close()
    logs = boto3.client("logs", endpoint_url=aws.endpoint_url)
    assert list(read_messages(logs, "/app/orders")) == ["order placed"]
    assert aws.injector.counts["ThrottlingException"] == 2
