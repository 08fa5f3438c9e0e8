"""Least-privilege IAM documents for a handler configuration.

Pure functions, no I/O. ARN forms follow the CloudWatch Logs documentation: a log group's ARN
ends in ``:*`` in permissions for every action but the tagging ones, which take it without;
PutLogEvents is granted on the group's log streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._exceptions import ConfigurationError
from ._options import (
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
    """Return ``region`` if it names a region; else raise.

    A region unknown to the installed botocore's endpoint data is refused when a word of it
    is one no region uses (``eu-wst-1``: a typo), and let through with a warning otherwise
    (``us-east-7``: maybe newer than this botocore), since AWS opens regions every year and a
    check must not block them.

    Raises:
        ConfigurationError: Not a region's form, or a word no region uses.
    """
    import difflib
    import warnings

    import botocore
    import botocore.session

    check_pattern("region", region, _REGION, "expected a region such as eu-west-1")
    session = botocore.session.get_session()
    known = {
        name
        for partition in session.get_available_partitions()
        for name in session.get_available_regions("logs", partition_name=partition)
    }
    if region in known:
        return region
    words = {word for name in known for word in name.split("-")[1:-1]}
    if any(word not in words for word in region.split("-")[1:-1]):
        close = difflib.get_close_matches(region, sorted(known), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        message = (
            f"region {region!r} is not a region: {hint}(botocore {botocore.__version__} knows "
            f"{len(known)} regions for CloudWatch Logs)"
        )
        raise ConfigurationError(message)
    message = (
        f"region {region!r} is not in the endpoint data of botocore {botocore.__version__}; "
        "if it is a new region, upgrading boto3 and botocore makes this warning go away"
    )
    warnings.warn(message, UserWarning, stacklevel=2)
    return region


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


def trust_policy(
    service: str | None = None,
    account: str | None = None,
    *,
    trusted_role_arn: str | None = None,
) -> dict[str, Any]:
    """Return the trust policy that lets ``service`` (ecs, lambda, ec2) or a role assume the role.

    For ECS tasks, ``account`` adds the ``aws:SourceAccount`` condition AWS recommends
    against the confused-deputy problem. ``trusted_role_arn`` names the role that assumes
    this one (an ECS task role that assumes a logging role): ``Principal: {"AWS": ...}``.

    Raises:
        ConfigurationError: Neither is given, the service is unknown, or the ARN or the
            account is invalid.
    """
    if service is None and trusted_role_arn is None:
        message = "name the service or the role that assumes the role"
        raise ConfigurationError(message)
    principal: dict[str, str] = {}
    if service is not None:
        if service not in TRUSTED_SERVICES:
            message = f"service must be one of {', '.join(TRUSTED_SERVICES)}, not {service!r}"
            raise ConfigurationError(message)
        principal["Service"] = TRUSTED_SERVICES[service]
    if trusted_role_arn is not None:
        principal["AWS"] = check_pattern(
            "trusted role ARN", trusted_role_arn, ROLE_ARN_PATTERN, ROLE_ARN_RULE
        )
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": principal,
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
