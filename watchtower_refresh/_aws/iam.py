"""Least-privilege IAM documents for a handler configuration.

Pure functions, no I/O. ARN forms follow the CloudWatch Logs documentation: a log group's ARN
ends in ``:*`` in permissions for every action but the tagging ones, which take it without;
PutLogEvents is granted on the group's log streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._exceptions import ConfigurationError
from .._options import (
    LOG_GROUP_PATTERN,
    LOG_GROUP_RULE,
    ROLE_ARN_PATTERN,
    ROLE_ARN_RULE,
    as_retention_days,
    check_pattern,
)

__all__ = [
    "TRUSTED_SERVICES",
    "caller_policy",
    "check_account",
    "check_region",
    "partition_for",
    "permissions_policy",
    "trust_policy",
]

POLICY_VERSION = "2012-10-17"
TRUSTED_SERVICES = {
    "ecs": "ecs-tasks.amazonaws.com",
    "lambda": "lambda.amazonaws.com",
    "ec2": "ec2.amazonaws.com",
}
_REGION = r"[a-z]{2}(-[a-z]+)+-\d{1,2}"


def partition_for(region: str) -> str:
    """Return the AWS partition (``aws``, ``aws-cn``, ``aws-us-gov``) a region belongs to."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def check_region(region: str) -> str:
    """Return ``region`` if it has a region's form (``eu-west-1``); else raise."""
    return check_pattern("region", region, _REGION, "expected a region such as eu-west-1")


def check_account(account: str) -> str:
    """Return ``account`` if it is a 12-digit account ID; else raise."""
    return check_pattern("account", account, r"\d{12}", "expected a 12-digit AWS account ID")


def permissions_policy(
    log_groups: Sequence[str],
    *,
    region: str,
    account: str,
    create_log_group: bool = True,
    create_log_stream: bool = True,
    log_group_retention_days: int | None = None,
    log_group_tags: bool = False,
) -> dict[str, Any]:
    """Return the policy the handler's role needs for ``log_groups``, and nothing more.

    Args:
        log_groups: Log group names; each is checked against the service's naming rule.
        region: Region of the groups.
        account: 12-digit account ID of the groups.
        create_log_group: The handler creates missing groups (``logs:CreateLogGroup``).
        create_log_stream: The handler creates streams (``logs:CreateLogStream``).
        log_group_retention_days: Set: the handler sets retention (``logs:PutRetentionPolicy``);
            one of the values the handler accepts, in days.
        log_group_tags: The handler tags the groups (``logs:TagResource``).

    Raises:
        ConfigurationError: A name, the region or the account is invalid.
    """
    if not log_groups:
        message = "give at least one log group"
        raise ConfigurationError(message)
    for name in log_groups:
        check_pattern("log group name", name, LOG_GROUP_PATTERN, LOG_GROUP_RULE)
    as_retention_days("log_group_retention_days", log_group_retention_days)
    prefix = f"arn:{partition_for(check_region(region))}:logs:{region}:{check_account(account)}"
    groups = sorted(set(log_groups))
    statements: list[dict[str, Any]] = []
    group_actions = [
        action
        for action, wanted in (
            ("logs:CreateLogGroup", create_log_group),
            ("logs:CreateLogStream", create_log_stream),
            ("logs:PutRetentionPolicy", log_group_retention_days is not None),
        )
        if wanted
    ]
    if group_actions:
        statements.append(
            _statement(
                "SetUpLogGroups", group_actions, [f"{prefix}:log-group:{g}:*" for g in groups]
            )
        )
    statements.append(
        _statement(
            "PutLogEvents",
            ["logs:PutLogEvents"],
            [f"{prefix}:log-group:{g}:log-stream:*" for g in groups],
        )
    )
    if log_group_tags:
        statements.append(
            _statement(
                "TagLogGroups", ["logs:TagResource"], [f"{prefix}:log-group:{g}" for g in groups]
            )
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def caller_policy(role_arn: str) -> dict[str, Any]:
    """Return the policy that lets an identity assume ``role_arn``."""
    check_pattern("role ARN", role_arn, ROLE_ARN_PATTERN, ROLE_ARN_RULE)
    return {
        "Version": POLICY_VERSION,
        "Statement": [_statement("AssumeLoggingRole", ["sts:AssumeRole"], [role_arn])],
    }


def trust_policy(service: str, account: str | None = None) -> dict[str, Any]:
    """Return the trust policy that lets ``service`` (ecs, lambda, ec2) assume the role.

    For ECS tasks, ``account`` adds the ``aws:SourceAccount`` condition AWS recommends
    against the confused-deputy problem.
    """
    if service not in TRUSTED_SERVICES:
        message = f"service must be one of {', '.join(TRUSTED_SERVICES)}, not {service!r}"
        raise ConfigurationError(message)
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": TRUSTED_SERVICES[service]},
        "Action": "sts:AssumeRole",
    }
    if service == "ecs" and account is not None:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": check_account(account)}}
    return {"Version": POLICY_VERSION, "Statement": [statement]}


def _statement(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions if len(actions) > 1 else actions[0],
        "Resource": resources if len(resources) > 1 else resources[0],
    }
