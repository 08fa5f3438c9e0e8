"""``watchtower-refresh policy``: the least-privilege IAM documents for a configuration.

Nothing is looked up over the network: the account comes from ``--account``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

from .._aws.iam import caller_policy, key_policy_statement, permissions_policy, trust_policy
from .._options import as_bool, as_retention_days, as_tags
from .check import EXIT_OK
from .config import UsageError, load_handler_options

__all__ = ["run"]


def run(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Print the document asked for; return the exit code."""
    options = load_handler_options(args.config, args.handler) if args.config else {}
    if args.document == "trust":
        if not args.service and not args.trusted_role_arn:
            message = (
                "--document trust needs --service (one of ecs, lambda, ec2) or "
                "--trusted-role-arn (the role that assumes this one)"
            )
            raise UsageError(message)
        document = trust_policy(args.service, args.account, trusted_role_arn=args.trusted_role_arn)
    elif args.document == "caller":
        role = args.role_arn or options.get("role_arn")
        if not role:
            message = "--document caller needs --role-arn (the role the handler assumes)"
            raise UsageError(message)
        document = caller_policy(role)
    elif args.document == "key":
        groups, region = _where(args, options)
        document = _quietly(
            lambda: key_policy_statement(groups, region=region, account=args.account)
        )
    else:
        document = _permissions(args, options)
    out(json.dumps(document, indent=2))
    return EXIT_OK


def _where(args: argparse.Namespace, options: dict[str, Any]) -> tuple[list[str], str]:
    """The log groups and region the document is for; UsageError naming what is missing."""
    groups = args.log_group or ([options["log_group_name"]] if "log_group_name" in options else [])
    region = (
        args.region
        or options.get("region_name")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )
    missing = [
        hint
        for hint, value in (
            ("--log-group NAME", groups),
            ("--region REGION (or AWS_REGION)", region),
            (
                "--account ID (nothing is looked up over the network; "
                "'aws sts get-caller-identity --query Account' or 'watchtower-refresh "
                "check' shows it)",
                args.account,
            ),
        )
        if not value
    ]
    if missing:
        message = "the policy needs " + "; ".join(missing)
        raise UsageError(message)
    return list(groups), str(region)


def _quietly(build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Build a document; an unknown region's warning becomes one line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        document = build()
    for warning in caught:  # an unknown region: one line, not Python's warning format
        print(f"watchtower-refresh policy: warning: {warning.message}", file=sys.stderr)
    return document


def _permissions(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    groups, region = _where(args, options)
    retention = args.log_group_retention_days or options.get("log_group_retention_days")
    kms_key_id = args.kms_key_id or options.get("kms_key_id")
    group_class = args.log_group_class or options.get("log_group_class")
    protection = (
        args.deletion_protection
        if args.deletion_protection is not None
        else as_bool("deletion_protection", options.get("deletion_protection", False))
    )
    document = _quietly(
        lambda: permissions_policy(
            groups,
            region=region,
            account=args.account,
            create_log_group=_flag(args.create_log_group, options, "create_log_group"),
            create_log_stream=_flag(args.create_log_stream, options, "create_log_stream"),
            log_group_retention_days=as_retention_days("--log-group-retention-days", retention),
            log_group_tags=bool(as_tags("--log-group-tags", args.log_group_tags))
            or bool(as_tags("log_group_tags", options.get("log_group_tags"))),
            log_group_settings=bool(kms_key_id or group_class or protection),
        )
    )
    if kms_key_id:
        print(
            f"watchtower-refresh policy: note: the policy of key {kms_key_id} must also let "
            "CloudWatch Logs use it: --document key prints the statement to add",
            file=sys.stderr,
        )
    return document


def _flag(given: bool | None, options: dict[str, Any], name: str) -> bool:
    return given if given is not None else as_bool(name, options.get(name, True))
