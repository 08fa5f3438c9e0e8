"""Which AWS actions the handler calls, by option, and the least-privilege IAM documents for them.

``HANDLER_CALLS`` is the one table of what the handler calls on AWS: ``permissions_policy``
and ``caller_policy`` print it as statements, ``permission_hint`` (``failures``) names the
same actions, and a test checks it against the actions a real handler calls on the fake
AWS for every combination of the options.

Pure functions, no I/O. ARN forms follow the CloudWatch Logs documentation: a log group's ARN
ends in ``:*`` in permissions for every action but the tagging ones, which take it without;
PutLogEvents is granted on the group's log streams; DescribeLogGroups lists groups, so it is
authorized on no single group's ARN (AWS checks ``...:log-group::log-stream:``) and is granted
on ``...:log-group:*``.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import botocore
import botocore.session

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
    "HANDLER_CALLS",
    "TRUSTED_SERVICES",
    "Call",
    "Scope",
    "Uses",
    "call_named",
    "caller_policy",
    "calls_for",
    "check_account",
    "check_region",
    "key_policy_statement",
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


class Scope(enum.Enum):
    """What an action is granted on; the value is the ``Sid`` of the statement granting it."""

    GROUP = "SetUpLogGroups"
    """The group's ARN ending in ``:*``."""
    STREAMS = "PutLogEvents"
    """The group's streams: ``...:log-group:NAME:log-stream:*``."""
    GROUP_ARN = "TagLogGroups"
    """The group's ARN without ``:*``, as the tagging actions take it."""
    ALL_GROUPS = "DescribeLogGroups"
    """Every group of the account and region: ``...:log-group:*`` (a listing)."""
    ROLE = "AssumeLoggingRole"
    """The role to assume, in the policy of the identity that assumes it."""

    @property
    def where(self) -> str:
        """Where to grant an action of this scope, in words."""
        if self is Scope.ALL_GROUPS:
            return "on the account's log groups (log-group:*)"
        if self is Scope.ROLE:
            return "on the role"
        return "on the group"


@dataclasses.dataclass(frozen=True)
class Uses:
    """The handler options that decide which AWS actions it calls.

    Attributes:
        create_log_group: ``create_log_group`` is on.
        create_log_stream: ``create_log_stream`` is on.
        log_group_retention: ``log_group_retention_days`` is set.
        log_group_tags: ``log_group_tags`` is not empty.
        role_arn: ``role_arn`` is set (the handler assumes a role).
        log_group_settings: ``kms_key_id``, ``log_group_class`` or ``deletion_protection``
            is set (sent with CreateLogGroup; an existing group's are read to compare).
    """

    create_log_group: bool = True
    create_log_stream: bool = True
    log_group_retention: bool = False
    log_group_tags: bool = False
    role_arn: bool = False
    log_group_settings: bool = False


@dataclasses.dataclass(frozen=True)
class Call:
    """One AWS action the handler may call, and the options that make it call it.

    Attributes:
        action: The IAM action, e.g. ``logs:PutLogEvents``.
        scope: What it is granted on.
        when: True for the options under which the handler calls it.
        why: When and why the handler calls it.
        instead: How to do without it, if there is a way; ends a permission hint.
    """

    action: str
    scope: Scope
    when: Callable[[Uses], bool]
    why: str
    instead: str = ""


HANDLER_CALLS: tuple[Call, ...] = (
    Call(
        "logs:CreateLogGroup",
        Scope.GROUP,
        lambda uses: uses.create_log_group,
        "create_log_group: before the first put; 'already exists' is success",
        "; or create the group beforehand and pass create_log_group=False",
    ),
    Call(
        "logs:CreateLogStream",
        Scope.GROUP,
        lambda uses: uses.create_log_stream,
        "create_log_stream: before the first put to each stream (the self-metrics stream of "
        "metrics_interval too)",
        "; or create the stream beforehand and pass create_log_stream=False",
    ),
    Call(
        "logs:PutRetentionPolicy",
        Scope.GROUP,
        lambda uses: uses.log_group_retention,
        "log_group_retention_days: once per process, before the first put",
    ),
    Call(
        "logs:PutLogEvents",
        Scope.STREAMS,
        lambda uses: True,
        "every batch, and every self-metrics event (metrics_interval: no other action)",
    ),
    # Granted whenever tags are configured, as the printed policy always has been; the
    # handler tags only while create_log_group is on (as watchtower does).
    Call(
        "logs:TagResource",
        Scope.GROUP_ARN,
        lambda uses: uses.log_group_tags,
        "log_group_tags: CreateLogGroup with tags needs it, and an existing group is "
        "tagged with it",
    ),
    Call(
        "logs:DescribeLogGroups",
        Scope.ALL_GROUPS,
        lambda uses: uses.create_log_group and (uses.log_group_tags or uses.log_group_settings),
        "log_group_tags with create_log_group, when the group exists: TagResource takes "
        "the group's ARN, read with it through the handler's own client; kms_key_id, "
        "log_group_class or deletion_protection, when the group exists: its settings are "
        "read to warn if they differ",
        ": tagging an existing group reads its ARN with it, and the group settings are "
        "compared with an existing group's",
    ),
    Call(
        "sts:AssumeRole",
        Scope.ROLE,
        lambda uses: uses.role_arn,
        "role_arn: by the identity whose credentials assume the role, at the first put and "
        "at each refresh",
    ),
)
"""What the handler calls on AWS, by option: the one list every document here is built from."""


def calls_for(uses: Uses) -> list[Call]:
    """The rows of ``HANDLER_CALLS`` the handler calls under ``uses``, in the table's order."""
    return [call for call in HANDLER_CALLS if call.when(uses)]


def call_named(operation: str) -> Call | None:
    """The row of ``HANDLER_CALLS`` for an operation's name (``CreateLogGroup``), if any."""
    for call in HANDLER_CALLS:
        if call.action.partition(":")[2] == operation:
            return call
    return None


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
    log_group_settings: bool = False,
) -> dict[str, Any]:
    """Return the policy the handler's role needs for ``log_groups``, and nothing more.

    The statements are ``HANDLER_CALLS`` for these options, one per scope.

    Args:
        log_groups: Log group names; each is checked against the service's naming rule.
        region: Region of the groups.
        account: 12-digit account ID of the groups.
        create_log_group: The handler creates missing groups (``logs:CreateLogGroup``).
        create_log_stream: The handler creates streams (``logs:CreateLogStream``).
        log_group_retention_days: Set: the handler sets retention (``logs:PutRetentionPolicy``);
            one of the values the handler accepts, in days.
        log_group_tags: The handler tags the groups (``logs:TagResource``, and
            ``logs:DescribeLogGroups`` to tag an existing group when it creates groups).
        log_group_settings: The handler creates groups with ``kms_key_id``,
            ``log_group_class`` or ``deletion_protection`` (``logs:DescribeLogGroups`` to
            compare an existing group's; a KMS key's own policy is ``key_policy_statement``).

    Raises:
        ConfigurationError: A name, the region or the account is invalid.
    """
    _, prefix, groups = _log_groups(log_groups, region, account)
    as_retention_days("log_group_retention_days", log_group_retention_days)
    resources = {
        Scope.GROUP: [f"{prefix}:log-group:{g}:*" for g in groups],
        Scope.STREAMS: [f"{prefix}:log-group:{g}:log-stream:*" for g in groups],
        Scope.GROUP_ARN: [f"{prefix}:log-group:{g}" for g in groups],
        Scope.ALL_GROUPS: [f"{prefix}:log-group:*"],
    }
    uses = Uses(
        create_log_group=create_log_group,
        create_log_stream=create_log_stream,
        log_group_retention=log_group_retention_days is not None,
        log_group_tags=log_group_tags,
        log_group_settings=log_group_settings,
    )
    return {"Version": POLICY_VERSION, "Statement": _statements(uses, resources)}


KMS_ACTIONS = (
    "kms:Encrypt*",
    "kms:Decrypt*",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:Describe*",
)
"""What CloudWatch Logs needs of a KMS key that encrypts a log group, per its documentation."""


def key_policy_statement(log_groups: Sequence[str], *, region: str, account: str) -> dict[str, Any]:
    """Return the statement to add to a KMS key's policy so CloudWatch Logs can use the key.

    As the CloudWatch Logs documentation gives it ("Encrypt log data in CloudWatch Logs
    using AWS KMS"): the regional service principal, the key's encrypt and decrypt
    actions, and the encryption context naming each log group, so the key serves these
    groups only.

    Raises:
        ConfigurationError: A name, the region or the account is invalid.
    """
    partition, prefix, names = _log_groups(log_groups, region, account)
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    groups = [f"{prefix}:log-group:{g}" for g in names]
    return {
        "Sid": "AllowCloudWatchLogsToUseTheKey",
        "Effect": "Allow",
        "Principal": {"Service": f"logs.{region}.{domain}"},
        "Action": list(KMS_ACTIONS),
        "Resource": "*",
        "Condition": {
            "ArnEquals": {
                "kms:EncryptionContext:aws:logs:arn": groups if len(groups) > 1 else groups[0]
            }
        },
    }


def _log_groups(log_groups: Sequence[str], region: str, account: str) -> tuple[str, str, list[str]]:
    """Check the names, the region and the account; return the partition, the ARN prefix of
    the account's Logs resources in ``region``, and the names sorted without repeats."""
    if not log_groups:
        message = "give at least one log group"
        raise ConfigurationError(message)
    for name in log_groups:
        check_pattern("log group name", name, LOG_GROUP_PATTERN, LOG_GROUP_RULE)
    partition = partition_for(check_region(region))
    prefix = f"arn:{partition}:logs:{region}:{check_account(account)}"
    return partition, prefix, sorted(set(log_groups))


def caller_policy(role_arn: str) -> dict[str, Any]:
    """Return the policy that lets an identity assume ``role_arn``."""
    check_pattern("role ARN", role_arn, ROLE_ARN_PATTERN, ROLE_ARN_RULE)
    statements = _statements(
        Uses(create_log_group=False, create_log_stream=False, role_arn=True),
        {Scope.ROLE: [role_arn]},
    )
    return {"Version": POLICY_VERSION, "Statement": statements}


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


def _statements(uses: Uses, resources: dict[Scope, list[str]]) -> list[dict[str, Any]]:
    """One statement per scope in ``resources``, in ``Scope`` order, of the calls ``uses`` makes."""
    calls = calls_for(uses)
    statements = []
    for scope in Scope:
        actions = [call.action for call in calls if call.scope is scope]
        if actions and scope in resources:
            statements.append(_statement(scope.value, actions, resources[scope]))
    return statements


def _statement(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions if len(actions) > 1 else actions[0],
        "Resource": resources if len(resources) > 1 else resources[0],
    }
