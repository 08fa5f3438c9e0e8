"""The destination: the client's lifecycle, and the group and streams set up before a put."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from tests.conftest import REGION, ROLE_ARN, logger_for
from watchtower_refresh import WatchtowerRefreshWarning
from watchtower_refresh.testing import FakeAWS, Fault

Read = Callable[[str], list[str]]


def test_group_is_created_with_retention_and_tags(aws: FakeAWS, make_handler: Any) -> None:
    handler = make_handler(
        "/svc/tagged", log_group_retention_days=14, log_group_tags={"team": "platform"}
    )
    logger_for(handler).info("hello")
    assert handler.flush(timeout=10)
    client = boto3.client("logs")
    group = client.describe_log_groups(logGroupNamePrefix="/svc/tagged")["logGroups"][0]
    assert group["retentionInDays"] == 14
    assert client.list_tags_log_group(logGroupName="/svc/tagged")["tags"] == {"team": "platform"}


def test_existing_group_is_tagged_through_its_arn(aws: FakeAWS, make_handler: Any) -> None:
    boto3.client("logs").create_log_group(logGroupName="/svc/existing")
    handler = make_handler("/svc/existing", log_group_tags="team=platform")
    logger_for(handler).info("hello")
    assert handler.flush(timeout=10)
    tags = boto3.client("logs").list_tags_log_group(logGroupName="/svc/existing")["tags"]
    assert tags == {"team": "platform"}
    assert aws.injector.counts["GetCallerIdentity"] == 1


def test_deleted_stream_is_recreated(aws: FakeAWS, make_handler: Any, messages: Read) -> None:
    handler = make_handler("/svc/deleted", log_stream_name="only")
    logger = logger_for(handler)
    logger.info("before")
    assert handler.flush(timeout=10)
    boto3.client("logs").delete_log_stream(logGroupName="/svc/deleted", logStreamName="only")
    logger.info("after")
    assert handler.flush(timeout=10)
    assert messages("/svc/deleted") == ["after"]  # the first went with the deleted stream
    assert aws.injector.counts["CreateLogStream"] == 2
    assert handler.stats.delivered == 2


def test_missing_group_without_creation_gives_up_with_advice(
    aws: FakeAWS, make_handler: Any
) -> None:
    handler = make_handler("/svc/absent", create_log_group=False, create_log_stream=False)
    with pytest.warns(WatchtowerRefreshWarning, match="does not exist and create_log_group"):
        logger_for(handler).info("x")
        assert handler.flush(timeout=10)
    assert handler.stats.dropped == {"ResourceNotFoundException": 1}


def test_denied_group_creation_warns_and_delivery_goes_on(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    boto3.client("logs").create_log_group(logGroupName="/svc/precreated")
    aws.injector.add_fault(Fault("AccessDeniedException", action="CreateLogGroup"))
    handler = make_handler("/svc/precreated")
    with pytest.warns(WatchtowerRefreshWarning, match="CreateLogGroup.*create_log_group=False"):
        logger_for(handler).info("still delivered")
        assert handler.flush(timeout=10)
    assert messages("/svc/precreated") == ["still delivered"]


def test_a_given_client_is_used_as_is(aws: FakeAWS, make_handler: Any, messages: Read) -> None:
    client = boto3.client("logs")
    handler = make_handler("/svc/given", boto3_client=client)
    assert handler.cwl_client is client
    logger_for(handler).info("through the given client")
    assert handler.flush(timeout=10)
    assert messages("/svc/given") == ["through the given client"]
    assert aws.injector.counts["AssumeRole"] == 0


def test_cwl_client_is_built_on_first_access(aws: FakeAWS, make_handler: Any) -> None:
    handler = make_handler("/svc/lazy", role_arn=ROLE_ARN)
    assert aws.injector.counts["AssumeRole"] == 0
    assert handler.cwl_client.meta.region_name == REGION
    assert aws.injector.counts["AssumeRole"] == 1
    replacement = boto3.client("logs")
    handler.cwl_client = replacement
    assert handler.cwl_client is replacement
