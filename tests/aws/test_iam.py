"""Least-privilege documents: only the actions a configuration uses, in the documented ARN forms."""

from __future__ import annotations

from typing import Any

import pytest

from watchtower_refresh import ConfigurationError
from watchtower_refresh._aws.iam import (
    caller_policy,
    partition_for,
    permissions_policy,
    trust_policy,
)

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
