"""The ``watchtower-refresh`` command's parser and ``main``; each command runs in its module.

Exit codes:
    0  success
    1  demo: records were lost or duplicated (demo --spool: a logged record is missing,
       or more duplicates than one batch); spool --deliver: records were dropped, refused
       (kept on disk, or given up with --discard-refused), or not all delivered within
       --timeout
    2  usage error, or an invalid option or configuration file (the message says which);
       spool: the directory does not exist or cannot be read; fake-aws: the port is in use
    3  demo, fake-aws: the extra they run on is not installed (the message names it)
    4  check: no AWS region is configured
    5  check: STS would be called on its global endpoint
    6  check: no credentials were found, or AWS refused the ones found
    7  check: the credentials have expired and cannot refresh
    8  check: access denied (the message names the action and the ``policy`` commands)
    9  check: any other AWS or connection error
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from .._aws.iam import TRUSTED_SERVICES
from .._exceptions import ConfigurationError
from .._redact import redact
from .check import DEFAULT_LOG_GROUP, EXIT_INVALID, EXIT_OK
from .config import UsageError, add_config_options

__all__ = ["EXIT_DEMO_LOST", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]

EXIT_DEMO_LOST = 1
EXIT_USAGE = EXIT_INVALID
EXIT_UNAVAILABLE = 3

# The module that runs each command, and the extra it needs beyond the package's own.
_COMMANDS = {
    "policy": ("policy", None),
    "check": ("check", None),
    "demo": ("demo", "demo"),
    "spool": ("spool", None),
    "fake-aws": ("fake_aws", "testing"),
}


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        message = f"must be a positive number of seconds, not {text!r}"
        raise argparse.ArgumentTypeError(message)
    return value


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        message = f"must be a whole number from 1 to 64, not {text!r}"
        raise argparse.ArgumentTypeError(message)
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        message = f"must be a port number from 0 (any free one) to 65535, not {text!r}"
        raise argparse.ArgumentTypeError(message)
    return int(text)


def _add_handler_options(parser: argparse.ArgumentParser, *, log_group_help: str) -> None:
    """The flags that say which handler to act as: ``check`` and ``spool --deliver``."""
    parser.add_argument("--log-group", metavar="NAME", help=log_group_help)
    parser.add_argument("--role-arn")
    parser.add_argument("--region")
    parser.add_argument("--profile")
    parser.add_argument("--endpoint-url", help="CloudWatch Logs endpoint")
    parser.add_argument("--kms-key-id", metavar="ARN", help="create the group encrypted with it")
    parser.add_argument("--log-group-class", metavar="CLASS", help="the class of a created group")
    parser.add_argument(
        "--deletion-protection",
        action=argparse.BooleanOptionalAction,
        help="create the group with deletion protection",
    )
    add_config_options(parser)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchtower-refresh",
        description="Tools for the watchtower-refresh CloudWatch Logs handler.",
        epilog=(
            "Exit codes: see 'watchtower-refresh check --help' and the documentation's "
            "Operator tools page (docs/operator-tools.md); symptoms and what to change: "
            "its Troubleshooting page (docs/troubleshooting.md)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_policy(commands.add_parser)
    _add_check(commands.add_parser)
    _add_demo(commands.add_parser)
    _add_spool(commands.add_parser)
    _add_fake_aws(commands.add_parser)
    return parser


_AddParser = Callable[..., argparse.ArgumentParser]  # the add_parser of add_subparsers()


def _add_policy(add: _AddParser) -> None:
    policy = add(
        "policy",
        help="print the least-privilege IAM policy for a configuration",
        description=(
            "Print an IAM policy document as JSON. 'permissions' (the default) is what the "
            "handler's role needs; 'caller' lets an identity assume that role; 'trust' lets "
            "ECS tasks, Lambda or EC2 (--service), or another role (--trusted-role-arn), "
            "assume it; 'key' is the statement a KMS key's policy needs for CloudWatch Logs "
            "to encrypt the groups (kms_key_id). Nothing is looked up over the network."
        ),
    )
    policy.add_argument("--log-group", action="append", metavar="NAME", help="repeatable")
    policy.add_argument("--region", help="default: AWS_REGION or AWS_DEFAULT_REGION")
    policy.add_argument("--account", metavar="ID", help="12-digit account ID of the groups")
    policy.add_argument("--create-log-group", action=argparse.BooleanOptionalAction)
    policy.add_argument("--create-log-stream", action=argparse.BooleanOptionalAction)
    policy.add_argument("--log-group-retention-days", metavar="DAYS")
    policy.add_argument("--log-group-tags", metavar="K=V,...", help="the handler sets tags")
    policy.add_argument(
        "--kms-key-id", metavar="ARN", help="the handler creates groups encrypted with this key"
    )
    policy.add_argument("--log-group-class", metavar="CLASS", help="the class of created groups")
    policy.add_argument("--deletion-protection", action=argparse.BooleanOptionalAction)
    policy.add_argument(
        "--document",
        choices=("permissions", "caller", "trust", "key"),
        default="permissions",
        help=(
            "key: the statement to add to the KMS key's policy so that CloudWatch Logs can "
            "encrypt the groups with it"
        ),
    )
    policy.add_argument("--role-arn", help="with --document caller: the role to assume")
    policy.add_argument("--service", choices=sorted(TRUSTED_SERVICES), help="with --document trust")
    policy.add_argument(
        "--trusted-role-arn",
        metavar="ARN",
        help=(
            "with --document trust: the role that assumes this one, such as an ECS task "
            "role (arn:aws:iam::123456789012:role/task)"
        ),
    )
    add_config_options(policy)


def _add_check(add: _AddParser) -> None:
    check = add(
        "check",
        help="check credentials, endpoints and delivery end to end",
        description=(
            "Resolve credentials exactly as the handler would, report their source, refresh "
            "and expiry, the caller's identity, the region and the STS and Logs endpoints, "
            "then write one test event and read it back. A throttled answer is retried as "
            "the handler would. Exit codes: 0 OK, 2 invalid configuration, 4 no region, "
            "5 global STS endpoint, 6 no credentials or credentials refused, 7 expired "
            "credentials, 8 access denied, 9 other AWS or connection error."
        ),
    )
    _add_handler_options(
        check, log_group_help=f"where the test event goes (default: {DEFAULT_LOG_GROUP})"
    )
    check.add_argument("--no-write", action="store_true", help="do not write a test event")
    check.add_argument("--json", action="store_true", help="print the report as JSON")


def _add_demo(add: _AddParser) -> None:
    demo = add(
        "demo",
        help="log through expiring tokens against a local fake AWS and count what was lost",
        description=(
            "Start moto on 127.0.0.1 with tokens that expire every few seconds, log from "
            "several threads through a handler configured with dictConfig and a role ARN, "
            "read every event back and report what was lost. With --spool, kill -9 a process "
            "that logs with a disk spool and replay what it left instead. Nothing leaves "
            "this machine."
        ),
    )
    demo.add_argument(
        "--spool",
        action="store_true",
        help=(
            "instead: kill -9 a process that logs with a disk spool, let a new handler "
            "replay what it left, and check that every logged record arrived"
        ),
    )
    demo.add_argument(
        "--duration", type=_positive, help="seconds to log (20; with --spool: 2, then the kill)"
    )
    demo.add_argument("--token-lifetime", type=_positive, help="seconds each token lives (4)")
    demo.add_argument(
        "--clock-skew",
        type=float,
        help="seconds the fake AWS's clock runs ahead of this machine's (3)",
    )
    demo.add_argument("--threads", type=_count, help="threads logging at once (2)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")


def _add_spool(add: _AddParser) -> None:
    spool = add(
        "spool",
        help="show what a spool directory holds, or deliver it",
        description=(
            "List each process that spooled records in DIR: log group, whether it is alive, "
            "dead (its records wait for an adopter) or being replayed, records not yet "
            "delivered, bytes and the oldest record's time. Reads only; claims nothing. "
            "With --deliver, deliver what dead processes of --log-group left, with the "
            "handler's options (--role-arn, --region, --config...), and report. Records the "
            "service refuses for a reason a fix would cure (access denied, unknown or no "
            "credentials, a KMS key) stay on disk unless --discard-refused is given. "
            "Exit codes: 0 OK, 1 records dropped, refused or not all delivered in time, 2 DIR "
            "missing or unreadable, or a bad option."
        ),
    )
    spool.add_argument("--dir", required=True, metavar="DIR", help="the spool directory")
    spool.add_argument("--json", action="store_true", help="print the summary as JSON")
    spool.add_argument("--deliver", action="store_true", help="deliver what dead processes left")
    spool.add_argument(
        "--timeout", type=_positive, default=60.0, help="seconds to deliver within (60)"
    )
    spool.add_argument(
        "--discard-refused",
        action="store_true",
        help="with --deliver: delete the records the service refused instead of keeping them",
    )
    spool.add_argument(
        "--large-events",
        choices=("truncate", "split"),
        help="with --deliver: what becomes of a record over the event limit (truncate)",
    )
    _add_handler_options(spool, log_group_help="with --deliver: the log group")


def _add_fake_aws(add: _AddParser) -> None:
    fake = add(
        "fake-aws",
        help="run a local fake AWS (moto) to try the handler and these commands on",
        description=(
            "Start moto's STS and CloudWatch Logs on 127.0.0.1, print the shell 'export' "
            "lines that send boto3, the handler and this command to it (placeholder keys), "
            "and serve until Ctrl-C or SIGTERM. Another shell gets the same lines with "
            '--print-env: eval "$(watchtower-refresh fake-aws --print-env)". '
            "Needs the testing extra: pip install 'watchtower-refresh[testing]'."
        ),
    )
    fake.add_argument(
        "--port", type=_port, default=4599, help="TCP port (4599; 0 for any free one)"
    )
    fake.add_argument("--host", default="127.0.0.1", help="127.0.0.1, the only one allowed")
    fake.add_argument(
        "--region", default="eu-west-1", help="region exported (eu-west-1, the quick start's)"
    )
    fake.add_argument(
        "--print-env",
        action="store_true",
        help="only print the lines for a fake AWS already running on --port, and exit",
    )


def _print_out(text: str) -> None:
    try:
        print(redact(text), flush=True)
    except BrokenPipeError:
        # The reader left (`policy | head`): say nothing more, as other CLIs do. stdout
        # points at /dev/null from here on, so the flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _command(name: str) -> Callable[[argparse.Namespace, Callable[[str], None]], int] | None:
    """The ``run`` of a command's module; None when the extra it needs is not installed."""
    module, extra = _COMMANDS[name]
    try:
        loaded = importlib.import_module(f"{__package__}.{module}")
    except ImportError:
        if extra is None:
            raise
        print(
            f"watchtower-refresh {name}: needs the {extra} extra: "
            f"pip install 'watchtower-refresh[{extra}]'",
            file=sys.stderr,
        )
        return None
    run: Callable[[argparse.Namespace, Callable[[str], None]], int] = loaded.run
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code (see the module docstring)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        run = _command(args.command)
        if run is None:
            return EXIT_UNAVAILABLE
        return run(args, _print_out)
    except (UsageError, ConfigurationError) as exc:
        print(f"watchtower-refresh {args.command}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
