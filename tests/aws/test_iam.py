"""Least-privilege documents: only the actions a configuration uses, in the documented ARN forms,
and every action the handler really calls on the fake AWS."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
import pytest

from tests.conftest import REGION, ROLE_ARN, SOAK
from watchtower_refresh import ConfigurationError, RefreshingCloudWatchLogHandler
from watchtower_refresh._aws.failures import permission_hint
from watchtower_refresh._aws.iam import (
    HANDLER_CALLS,
    Scope,
    Uses,
    call_named,
    caller_policy,
    calls_for,
    key_policy_statement,
    partition_for,
    permissions_policy,
    trust_policy,
)
from watchtower_refresh._cli import main
from watchtower_refresh._delivery.metrics import stream_name as metrics_stream_name
from watchtower_refresh.testing import FakeAWS

ACCOUNT = "123456789012"


def actions_by_resource(policy: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            found.setdefault(resource, set()).update(
                [actions] if isinstance(actions, str) else actions
            )
    return found


def test_default_configuration() -> None:
    policy = permissions_policy(["/app/orders"], region="eu-west-1", account=ACCOUNT)
    assert policy["Version"] == "2012-10-17"
    assert actions_by_resource(policy) == {
        "arn:aws:logs:eu-west-1:123456789012:log-group:/app/orders:*": {
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
        },
        "arn:aws:logs:eu-west-1:123456789012:log-group:/app/orders:log-stream:*": {
            "logs:PutLogEvents"
        },
    }


def test_tags_need_describe_log_groups_on_the_accounts_groups() -> None:
    policy = permissions_policy(
        ["/app/orders"], region="eu-west-1", account=ACCOUNT, log_group_tags=True
    )
    found = actions_by_resource(policy)
    assert found["arn:aws:logs:eu-west-1:123456789012:log-group:*"] == {"logs:DescribeLogGroups"}
    assert found["arn:aws:logs:eu-west-1:123456789012:log-group:/app/orders"] == {
        "logs:TagResource"
    }


def test_every_option_and_several_groups() -> None:
    policy = permissions_policy(
        ["/b", "/a", "/a"],
        region="cn-north-1",
        account=ACCOUNT,
        log_group_retention_days=30,
        log_group_tags=True,
    )
    prefix = "arn:aws-cn:logs:cn-north-1:123456789012:log-group"
    assert actions_by_resource(policy) == {
        f"{prefix}:/a:*": {
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutRetentionPolicy",
        },
        f"{prefix}:/b:*": {
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutRetentionPolicy",
        },
        f"{prefix}:/a:log-stream:*": {"logs:PutLogEvents"},
        f"{prefix}:/b:log-stream:*": {"logs:PutLogEvents"},
        f"{prefix}:/a": {"logs:TagResource"},
        f"{prefix}:/b": {"logs:TagResource"},
        f"{prefix}:*": {"logs:DescribeLogGroups"},
    }


def test_precreated_group_and_streams_need_only_put() -> None:
    policy = permissions_policy(
        ["/app"],
        region="us-east-1",
        account=ACCOUNT,
        create_log_group=False,
        create_log_stream=False,
    )
    assert [s["Action"] for s in policy["Statement"]] == ["logs:PutLogEvents"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"log_groups": ["bad name"]}, "log group name 'bad name' is invalid: 1 to 512"),
        ({"log_groups": ["x" * 513]}, "1 to 512 characters"),
        ({"log_groups": []}, "at least one log group"),
        ({"region": "Europe"}, "region 'Europe' is invalid"),
        ({"account": "12345"}, "12-digit AWS account ID"),
        ({"log_groups": ["/app/ordérs"]}, "A-Z, a-z, 0-9 and _-./#"),
        # The handler refuses 31, so the policy for it must not pretend otherwise.
        ({"log_group_retention_days": 31}, "log_group_retention_days must be one of 1, 3, 5"),
    ],
)
def test_invalid_input_names_the_rule(kwargs: dict[str, Any], match: str) -> None:
    arguments: dict[str, Any] = {"log_groups": ["/app"], "region": "us-east-1", "account": ACCOUNT}
    arguments.update(kwargs)
    groups = arguments.pop("log_groups")
    with pytest.raises(ConfigurationError, match=match):
        permissions_policy(groups, **arguments)


def test_caller_and_trust_policies() -> None:
    role = "arn:aws:iam::123456789012:role/app-logs"
    assert caller_policy(role)["Statement"][0]["Action"] == "sts:AssumeRole"
    assert caller_policy(role)["Statement"][0]["Resource"] == role
    with pytest.raises(ConfigurationError, match="role ARN"):
        caller_policy("app-logs")
    ecs = trust_policy("ecs", ACCOUNT)["Statement"][0]
    assert ecs["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert ecs["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert trust_policy("lambda")["Statement"][0]["Principal"]["Service"] == "lambda.amazonaws.com"
    assert "Condition" not in trust_policy("ec2", ACCOUNT)["Statement"][0]
    with pytest.raises(ConfigurationError, match="one of ecs, lambda, ec2"):
        trust_policy("eks")


def test_partitions() -> None:
    assert partition_for("us-gov-west-1") == "aws-us-gov"
    assert partition_for("cn-northwest-1") == "aws-cn"
    assert partition_for("ap-south-2") == "aws"


def test_the_table_names_each_action_once_and_hints_where_to_grant_it() -> None:
    actions = [call.action for call in HANDLER_CALLS]
    assert len(actions) == len(set(actions))
    everything = Uses(log_group_retention=True, log_group_tags=True, role_arn=True)
    assert calls_for(everything) == list(HANDLER_CALLS)
    assert [call.action for call in calls_for(Uses(False, False))] == ["logs:PutLogEvents"]
    assert permission_hint("DescribeLogGroups").startswith(
        "grant logs:DescribeLogGroups on the account's log groups (log-group:*)"
    )
    assert permission_hint("AssumeRole") == "grant sts:AssumeRole on the role to the role in use"
    assert (
        permission_hint("PutLogEvents") == "grant logs:PutLogEvents on the group to the role in use"
    )
    assert (
        permission_hint("GetLogEvents") == "grant logs:GetLogEvents on the group to the role in use"
    )
    found = call_named("AssumeRole")
    assert found is not None
    assert found.action == "sts:AssumeRole"
    assert call_named("GetLogEvents") is None  # check reads back; the handler never does
    assert {scope.where for scope in Scope} == {
        "on the group",
        "on the account's log groups (log-group:*)",
        "on the role",
    }


# ----------------------------------------------------------------------------- against the handler

GROUP = "/policy/checked"
# Where the group and stream come from: (the group exists beforehand, create_log_group,
# create_log_stream). A group that is neither there nor created cannot be written to, and a
# stream given beforehand needs its group.
PLACES = {
    "new-group": (False, True, True),
    "existing-group": (True, True, True),
    "existing-group-given-stream": (True, True, False),
    "given-group": (True, False, True),
    "given-group-and-stream": (True, False, False),
}


def printed_actions(
    capsys: pytest.CaptureFixture[str],
    *,
    create_group: bool,
    create_stream: bool,
    retention: int | None,
    tags: str | None,
    role: str | None,
) -> set[str]:
    """Every action ``watchtower-refresh policy`` grants for these options, caller side too."""
    argv = ["policy", "--log-group", GROUP, "--region", REGION, "--account", ACCOUNT]
    argv.append("--create-log-group" if create_group else "--no-create-log-group")
    argv.append("--create-log-stream" if create_stream else "--no-create-log-stream")
    if retention is not None:
        argv += ["--log-group-retention-days", str(retention)]
    if tags is not None:
        argv += ["--log-group-tags", tags]
    documents = [argv]
    if role is not None:
        documents.append(["policy", "--document", "caller", "--role-arn", role])
    actions: set[str] = set()
    for document in documents:
        assert main(document) == 0
        for statement in json.loads(capsys.readouterr().out)["Statement"]:
            granted = statement["Action"]
            actions.update([granted] if isinstance(granted, str) else granted)
    return actions


# Retention, tags and a role, each off (0) or on (1). make soak tries every combination
# with every place; make test tries each place twice, with opposite choices, picked so that
# every pair of the three meets in all four of its settings: 10 cases of 40.
PAIRWISE = ((0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0), (0, 0, 0))


def policy_cases() -> Iterator[Any]:
    """The places and options of the test below, each with its id."""
    for place, pattern in zip(PLACES, PAIRWISE, strict=True):
        picks: Iterable[tuple[int, ...]] = (pattern, tuple(1 - on for on in pattern))
        if SOAK:
            picks = itertools.product((0, 1), repeat=3)
        for retention, tags, role in picks:
            name = (
                f"{place}-{'retention' if retention else 'no-retention'}"
                f"-{'tags' if tags else 'no-tags'}-{'role' if role else 'own-keys'}"
            )
            yield pytest.param(
                place,
                7 if retention else None,
                "team=platform" if tags else None,
                ROLE_ARN if role else None,
                id=name,
            )


@pytest.mark.soak
@pytest.mark.parametrize(("place", "retention", "tags", "role"), list(policy_cases()))
def test_the_printed_policy_grants_every_action_the_handler_calls(
    aws: FakeAWS,
    capsys: pytest.CaptureFixture[str],
    place: str,
    retention: int | None,
    tags: str | None,
    role: str | None,
) -> None:
    group_exists, create_group, create_stream = PLACES[place]
    setup = boto3.client("logs")
    if group_exists:
        setup.create_log_group(logGroupName=GROUP)
    if not create_stream:
        setup.create_log_stream(logGroupName=GROUP, logStreamName="given")
    aws.injector.reset()  # count only what the handler calls
    handler = RefreshingCloudWatchLogHandler(
        GROUP,
        log_stream_name="given",
        use_queues=False,
        create_log_group=create_group,
        create_log_stream=create_stream,
        log_group_retention_days=retention,
        log_group_tags=tags,
        role_arn=role,
    )
    handler.handle(logging.makeLogRecord({"msg": "granted", "levelno": logging.INFO}))
    handler.close()
    assert handler.stats.delivered == 1
    called = set(aws.injector.calls)
    printed = printed_actions(
        capsys,
        create_group=create_group,
        create_stream=create_stream,
        retention=retention,
        tags=tags,
        role=role,
    )
    assert called <= printed
    # Granted for tags and not called here: for a new group, created with its tags (the
    # create needs TagResource, with no request of its own, and no ARN is looked up); for a
    # group the handler may not create, which it does not tag.
    unused: set[str] = set()
    if tags and not group_exists:
        unused = {"logs:TagResource", "logs:DescribeLogGroups"}
    elif tags and not create_group:
        unused = {"logs:TagResource"}
    assert printed - called == unused


@pytest.mark.parametrize("place", PLACES)
def test_self_metrics_need_no_action_beyond_the_printed_policy(
    aws: FakeAWS, capsys: pytest.CaptureFixture[str], place: str
) -> None:
    group_exists, create_group, create_stream = PLACES[place]
    setup = boto3.client("logs")
    if group_exists:
        setup.create_log_group(logGroupName=GROUP)
    if not create_stream:  # given beforehand, as the records' stream is
        setup.create_log_stream(logGroupName=GROUP, logStreamName="given")
        setup.create_log_stream(logGroupName=GROUP, logStreamName=metrics_stream_name())
    aws.injector.reset()
    handler = RefreshingCloudWatchLogHandler(
        GROUP,
        log_stream_name="given",
        create_log_group=create_group,
        create_log_stream=create_stream,
        metrics_interval=1,
    )
    handler.handle(logging.makeLogRecord({"msg": "granted", "levelno": logging.INFO}))
    handler.close()
    assert handler.stats.delivered == 1
    called = set(aws.injector.calls)
    written = setup.get_log_events(
        logGroupName=GROUP, logStreamName=metrics_stream_name(), startFromHead=True
    )["events"]
    assert json.loads(written[-1]["message"])["Delivered"] == 1
    printed = printed_actions(
        capsys,
        create_group=create_group,
        create_stream=create_stream,
        retention=None,
        tags=None,
        role=None,
    )
    assert called <= printed


# ----------------------------------------------------------------------------- group settings, KMS

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_group_settings_need_describe_log_groups_only_when_creating() -> None:
    policy = permissions_policy(["/a"], region=REGION, account=ACCOUNT, log_group_settings=True)
    found = actions_by_resource(policy)
    assert found[f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*"] == {"logs:DescribeLogGroups"}
    assert "logs:CreateLogGroup" in found[f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/a:*"]
    without = permissions_policy(
        ["/a"], region=REGION, account=ACCOUNT, log_group_settings=True, create_log_group=False
    )
    assert "logs:DescribeLogGroups" not in json.dumps(without)


def test_the_key_policy_statement_lets_cloudwatch_logs_use_the_key_for_these_groups() -> None:
    statement = key_policy_statement(["/b", "/a"], region="eu-west-1", account=ACCOUNT)
    assert statement == {
        "Sid": "AllowCloudWatchLogsToUseTheKey",
        "Effect": "Allow",
        "Principal": {"Service": "logs.eu-west-1.amazonaws.com"},
        "Action": [
            "kms:Encrypt*",
            "kms:Decrypt*",
            "kms:ReEncrypt*",
            "kms:GenerateDataKey*",
            "kms:Describe*",
        ],
        "Resource": "*",
        "Condition": {
            "ArnEquals": {
                "kms:EncryptionContext:aws:logs:arn": [
                    f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/a",
                    f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/b",
                ]
            }
        },
    }
    china = key_policy_statement(["/a"], region="cn-north-1", account=ACCOUNT)
    assert china["Principal"] == {"Service": "logs.cn-north-1.amazonaws.com.cn"}
    assert china["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"] == (
        f"arn:aws-cn:logs:cn-north-1:{ACCOUNT}:log-group:/a"
    )
    with pytest.raises(ConfigurationError, match="at least one log group"):
        key_policy_statement([], region=REGION, account=ACCOUNT)


def test_the_printed_policy_grants_what_a_handler_with_a_key_calls(
    aws: FakeAWS, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("logs").create_log_group(logGroupName=GROUP)  # compared, so described
    aws.injector.reset()
    handler = RefreshingCloudWatchLogHandler(
        GROUP, use_queues=False, kms_key_id=KEY, log_group_class="INFREQUENT_ACCESS"
    )
    with pytest.warns(Warning, match="other settings"):
        handler.handle(logging.makeLogRecord({"msg": "granted", "levelno": logging.INFO}))
        handler.close()
    assert handler.stats.delivered == 1
    called = set(aws.injector.calls)
    assert "logs:DescribeLogGroups" in called
    argv = ["policy", "--log-group", GROUP, "--region", REGION, "--account", ACCOUNT]
    assert main([*argv, "--kms-key-id", KEY]) == 0
    out, err = capsys.readouterr()
    printed = {
        action
        for statement in json.loads(out)["Statement"]
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }
    assert called <= printed
    assert "--document key prints the statement" in err
