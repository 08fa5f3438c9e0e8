"""The destination: the client's lifecycle, and the group and streams set up before a put."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from tests.conftest import REGION, ROLE_ARN, logger_for
from watchtower_refresh import (
    ConfigurationError,
    RefreshingCloudWatchLogHandler,
    WatchtowerRefreshWarning,
)
from watchtower_refresh._aws import model
from watchtower_refresh._cli import main
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
    assert aws.injector.counts["GetCallerIdentity"] == 0  # the handler's own client found it


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


def test_a_given_client_tags_an_existing_group_with_its_own_credentials(
    aws: FakeAWS, make_handler: Any, messages: Read, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3.client("logs").create_log_group(logGroupName="/svc/given-tags")
    client = boto3.client(
        "logs", aws_access_key_id="AKIAGIVENCLIENTKEY00", aws_secret_access_key="given-secret"
    )
    # No default credentials: a default boto3.Session() (or its STS) would find none.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    handler = make_handler("/svc/given-tags", boto3_client=client, log_group_tags="team=platform")
    for attempt in range(3):
        logger_for(handler).info("tagged %d", attempt)
        assert handler.flush(timeout=10)
    assert sorted(messages("/svc/given-tags")) == [f"tagged {n}" for n in range(3)]
    assert handler.stats.dropped == {}
    assert client.list_tags_log_group(logGroupName="/svc/given-tags")["tags"] == {
        "team": "platform"
    }
    assert aws.injector.counts["GetCallerIdentity"] == 0


def failing_once(client: Any, operation: str, error: Exception) -> list[str]:
    """Make ``client`` raise ``error`` the first time it is about to call ``operation``."""
    raised: list[str] = []

    def fail(**_: Any) -> None:
        if not raised:
            raised.append(operation)
            raise error

    client.meta.events.register(f"before-call.cloudwatch-logs.{operation}", fail)
    return raised


@pytest.mark.parametrize(
    ("operation", "error"),
    [
        ("DescribeLogGroups", RuntimeError("a hook broke")),
        ("TagResource", RuntimeError("a hook broke")),
        ("PutRetentionPolicy", KeyError("odd")),
        ("CreateLogGroup", RuntimeError("a hook broke")),
        ("CreateLogStream", RuntimeError("a hook broke")),
        (
            "TagResource",
            ClientError(
                {"Error": {"Code": "InvalidParameterException", "Message": "bad tag"}},
                "TagResource",
            ),
        ),
    ],
)
def test_a_failed_set_up_step_never_costs_the_batch(
    aws: FakeAWS, make_handler: Any, messages: Read, operation: str, error: Exception
) -> None:
    group = f"/svc/setup/{operation}"
    if operation in ("DescribeLogGroups", "TagResource"):
        boto3.client("logs").create_log_group(logGroupName=group)  # tagged through its ARN
    client = boto3.client("logs")
    raised = failing_once(client, operation, error)
    handler = make_handler(
        group, boto3_client=client, log_group_retention_days=7, log_group_tags="team=platform"
    )
    with pytest.warns(WatchtowerRefreshWarning, match=f"{operation}|TagResource") as caught:
        logger_for(handler).info("still delivered")
        assert handler.flush(timeout=10)
    assert raised == [operation]
    assert messages(group) == ["still delivered"]
    assert handler.stats.dropped == {}
    assert handler.stats.delivered == 1
    assert not any("grant logs:" in str(w.message) for w in caught)  # not a permission problem


@pytest.mark.parametrize(
    "operation", ["DescribeLogGroups", "PutRetentionPolicy", "CreateLogGroup", "CreateLogStream"]
)
def test_a_set_up_step_without_credentials_waits_for_the_next_put(
    aws: FakeAWS, make_handler: Any, messages: Read, operation: str
) -> None:
    group = f"/svc/later/{operation}"
    if operation == "DescribeLogGroups":
        boto3.client("logs").create_log_group(logGroupName=group)
    client = boto3.client("logs")
    raised = failing_once(client, operation, NoCredentialsError())
    handler = make_handler(
        group, boto3_client=client, log_group_retention_days=7, log_group_tags="team=platform"
    )
    logger = logger_for(handler)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for n in range(2):  # the put has credentials; it would say so if it had none
            logger.info("record %d", n)
            assert handler.flush(timeout=10)
    assert [str(warning.message) for warning in seen] == []
    assert raised == [operation]
    assert sorted(messages(group)) == ["record 0", "record 1"]
    assert handler.stats.dropped == {}
    found = client.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    assert found["retentionInDays"] == 7  # done before the second put
    assert client.list_tags_log_group(logGroupName=group)["tags"] == {"team": "platform"}


def test_a_transient_set_up_error_is_retried(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    aws.injector.add_fault(
        Fault("ThrottlingException", action="CreateLogStream", status=400, times=1)
    )
    handler = make_handler("/svc/throttled-setup")
    logger_for(handler).info("after a throttle")
    assert handler.flush(timeout=10)
    assert messages("/svc/throttled-setup") == ["after a throttle"]
    assert handler.stats.retried >= 1
    assert aws.injector.counts["CreateLogStream"] == 2


def test_a_hanging_put_ends_within_flush_timeout(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    handler = make_handler("/svc/hanging", flush_timeout=2)
    logger = logger_for(handler)
    logger.info("first")
    assert handler.flush(timeout=10)
    aws.injector.add_fault(Fault("", action="PutLogEvents", delay=40, times=1))
    logger.info("second")
    started = time.monotonic()
    assert handler.flush(timeout=15)  # the old 30 s read timeout would still be waiting
    assert time.monotonic() - started < 15
    assert sorted(messages("/svc/hanging")) == ["first", "second"]
    assert handler.stats.retried == 1


@pytest.mark.slow
def test_a_synchronous_log_call_waits_at_most_flush_timeout(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    """use_queues=False: a put that hangs makes each log call wait flush_timeout, no more.

    Each attempt gets what is left of the budget: a retry started just before the deadline
    used to get a read timeout sized from the whole budget, 4.5 s for 3 s promised.
    """
    handler = make_handler("/svc/hanging-sync", use_queues=False, flush_timeout=3)
    logger = logger_for(handler)
    logger.info("before")
    hang = aws.injector.add_fault(Fault("", action="PutLogEvents", delay=40))
    waits = []
    with pytest.warns(WatchtowerRefreshWarning, match="gave up resending"):
        for n in range(2):
            started = time.monotonic()
            logger.info("while it hangs %d", n)
            waits.append(time.monotonic() - started)
    # 3 s plus what a loaded machine adds; the old code took two whole read timeouts.
    assert max(waits) < 4.0, waits
    assert handler.stats.dropped == {"timeout": 2}
    aws.injector.remove_fault(hang)
    logger.info("after")
    before, marker, after = messages("/svc/hanging-sync")  # the marker of those that timed out
    assert (before, after) == ("before", "after")
    assert marker.startswith("watchtower-refresh: 2 records dropped ")  # "between" or "at"
    assert marker.endswith(" UTC (timeout 2)")


def test_the_logs_endpoint_variable_is_the_one_botocore_reads(
    aws: FakeAWS, make_handler: Any, messages: Read, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # only the service-specific variable is left
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", aws.endpoint_url)
    handler = make_handler("/svc/endpoint-variable")
    logger_for(handler).info("through AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")
    assert handler.flush(timeout=10)
    assert messages("/svc/endpoint-variable") == ["through AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"]
    assert handler.stats.delivered == 1


def test_aws_endpoint_url_logs_is_not_read(
    make_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LOGS", "http://127.0.0.1:9")
    handler = make_handler("/svc/endpoint-ignored")
    # Building the client resolves its endpoint and sends nothing.
    assert handler.cwl_client.meta.endpoint_url == f"https://logs.{REGION}.amazonaws.com"


def check_with(tmp_path: Path, capsys: pytest.CaptureFixture[str], **options: Any) -> Any:
    """Run ``watchtower-refresh check --json`` for a handler with ``options``; its report."""
    handler = {"()": "watchtower_refresh.RefreshingCloudWatchLogHandler", **options}
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({"version": 1, "handlers": {"cloudwatch": handler}}))
    code = main(["check", "--config", str(config), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == code
    return report


def test_check_sets_up_an_existing_group_as_the_handler_does(
    aws: FakeAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("logs")
    client.create_log_group(logGroupName="/svc/checked")  # set up by someone else
    report = check_with(
        tmp_path,
        capsys,
        log_group_name="/svc/checked",
        log_group_tags="team=platform",
        log_group_retention_days=7,
    )
    assert report["exit_code"] == 0, report["problem"]
    assert report["warnings"] == []
    assert report["read_back"] is True
    assert client.list_tags_log_group(logGroupName="/svc/checked")["tags"] == {"team": "platform"}
    found = client.describe_log_groups(logGroupNamePrefix="/svc/checked")["logGroups"][0]
    assert found["retentionInDays"] == 7


def test_check_reports_a_refused_group_lookup_and_delivers(
    aws: FakeAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("logs").create_log_group(logGroupName="/svc/checked")
    aws.injector.add_fault(Fault("AccessDeniedException", action="DescribeLogGroups", message="no"))
    report = check_with(
        tmp_path, capsys, log_group_name="/svc/checked", log_group_tags="team=platform"
    )
    assert report["exit_code"] == 0, report["problem"]
    assert report["read_back"] is True
    assert report["warnings"] == [
        "DescribeLogGroups was refused (AccessDeniedException: no); the handler warns once and "
        "delivers all the same; grant logs:DescribeLogGroups on the account's log groups "
        "(log-group:*) to the role in use: tagging an existing group reads its ARN with it, "
        "and the group settings are compared with an existing group's"
    ]


# ----------------------------------------------------------------------------- group settings

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = "arn:aws:kms:us-east-1:123456789012:key/0000abcd-12ab-34cd-56ef-1234567890ab"
KNOWS_PROTECTION = "deletionProtectionEnabled" in model.create_group_parameters()


def test_a_new_group_is_created_with_its_key_class_and_protection(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    creates = aws.injector.capture("CreateLogGroup")
    settings: dict[str, Any] = {"kms_key_id": KEY, "log_group_class": "infrequent_access"}
    if KNOWS_PROTECTION:
        settings["deletion_protection"] = "true"
    handler = make_handler("/svc/encrypted", log_group_tags="team=platform", **settings)
    logger_for(handler).info("sealed")
    assert handler.flush(timeout=10)
    sent = json.loads(creates[0].body)
    assert sent["kmsKeyId"] == KEY
    assert sent["logGroupClass"] == "INFREQUENT_ACCESS"
    assert sent["tags"] == {"team": "platform"}
    assert sent.get("deletionProtectionEnabled") is (True if KNOWS_PROTECTION else None)
    found = boto3.client("logs").describe_log_groups(logGroupNamePrefix="/svc/encrypted")
    assert found["logGroups"][0]["kmsKeyId"] == KEY
    assert messages("/svc/encrypted") == ["sealed"]


def test_an_existing_group_with_other_settings_warns_once_and_is_left_alone(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    client = boto3.client("logs")
    client.create_log_group(logGroupName="/svc/theirs", kmsKeyId=OTHER_KEY)
    aws.injector.reset()
    handler = make_handler("/svc/theirs", kms_key_id=KEY, log_group_class="INFREQUENT_ACCESS")
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="exists already with other settings") as got:
        logger.info("one")
        assert handler.flush(timeout=10)
    logger.info("two")
    assert handler.flush(timeout=10)
    differ = [str(w.message) for w in got if "other settings" in str(w.message)]
    assert len(differ) == 1
    assert f"kms_key_id is {OTHER_KEY}, not {KEY}" in differ[0]
    assert "log_group_class is STANDARD, not INFREQUENT_ACCESS" in differ[0]
    found = client.describe_log_groups(logGroupNamePrefix="/svc/theirs")["logGroups"][0]
    assert found["kmsKeyId"] == OTHER_KEY  # never changed
    assert not any("Kms" in action for action in aws.injector.counts)
    assert messages("/svc/theirs") == ["one", "two"]


def test_an_existing_group_with_the_same_settings_says_nothing(
    aws: FakeAWS, make_handler: Any
) -> None:
    boto3.client("logs").create_log_group(logGroupName="/svc/same", kmsKeyId=KEY)
    handler = make_handler("/svc/same", kms_key_id=KEY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger_for(handler).info("quiet")
        assert handler.flush(timeout=10)
    assert handler.stats.delivered == 1


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"log_group_class": "COLD"}, "log_group_class must be one of STANDARD"),
        ({"kms_key_id": "alias/logs"}, "expected a KMS key ARN"),
        ({"kms_key_id": KEY, "create_log_group": False}, "need create_log_group"),
        ({"deletion_protection": "maybe"}, "deletion_protection must be true or false"),
    ],
)
def test_group_settings_are_checked_at_construction(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RefreshingCloudWatchLogHandler("/a", **options)


def test_settings_this_botocore_does_not_know_are_refused_by_name() -> None:
    if KNOWS_PROTECTION:
        RefreshingCloudWatchLogHandler("/a", deletion_protection=True).close()
    else:
        with pytest.raises(ConfigurationError, match="deletionProtectionEnabled, which botocore"):
            RefreshingCloudWatchLogHandler("/a", deletion_protection=True)
    if "ESSENTIALS" in model.log_group_classes():
        RefreshingCloudWatchLogHandler("/a", log_group_class="ESSENTIALS").close()
    else:
        with pytest.raises(ConfigurationError, match=r"the classes botocore .* knows"):
            RefreshingCloudWatchLogHandler("/a", log_group_class="ESSENTIALS")


def test_check_creates_the_group_with_its_settings_and_warns_of_an_existing_one(
    aws: FakeAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creates = aws.injector.capture("CreateLogGroup")
    report = check_with(tmp_path, capsys, log_group_name="/svc/new", kms_key_id=KEY)
    assert report["exit_code"] == 0, report["problem"]
    assert json.loads(creates[0].body)["kmsKeyId"] == KEY
    boto3.client("logs").create_log_group(logGroupName="/svc/old")
    report = check_with(tmp_path, capsys, log_group_name="/svc/old", kms_key_id=KEY)
    assert report["exit_code"] == 0, report["problem"]
    assert report["warnings"] == [
        f"log group /svc/old exists already with other settings: kms_key_id is none, not "
        f"{KEY}. The handler changes no existing group (its encryption least of all): change "
        "the group, or the handler's options"
    ]


def test_check_takes_the_group_settings_as_flags(
    aws: FakeAWS, capsys: pytest.CaptureFixture[str]
) -> None:
    creates = aws.injector.capture("CreateLogGroup")
    argv = ["check", "--log-group", "/svc/flagged", "--json"]
    code = main([*argv, "--kms-key-id", KEY, "--log-group-class", "INFREQUENT_ACCESS"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["problem"]
    sent = json.loads(creates[0].body)
    assert (sent["kmsKeyId"], sent["logGroupClass"]) == (KEY, "INFREQUENT_ACCESS")
