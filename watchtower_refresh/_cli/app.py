"""The ``watchtower-refresh`` command: ``policy``, ``check``, ``demo`` and ``spool``.

Exit codes:
    0  success
    1  demo: records were lost or duplicated (demo --spool: a logged record is missing,
       or more duplicates than one batch); spool --deliver: records were dropped, or
       not all delivered within --timeout
    2  usage error, or an invalid option or configuration file (the message says which);
       spool: the directory does not exist or cannot be read
    3  demo: the ``demo`` extra is not installed
    4  check: no AWS region is configured
    5  check: STS would be called on its global endpoint
    6  check: no valid credentials were found
    7  check: the credentials have expired and cannot refresh
    8  check: access denied (the message names the action and the ``policy`` command)
    9  check: any other AWS or connection error
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from .._config import HANDLER_PATH
from .._exceptions import ConfigurationError
from .._options import as_bool, as_retention_days, as_tags
from .._policy import TRUSTED_SERVICES, caller_policy, permissions_policy, trust_policy
from .._redact import redact
from .check import EXIT_INVALID, EXIT_OK, CheckReport, run_check

__all__ = ["EXIT_DEMO_LOST", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]

EXIT_DEMO_LOST = 1
EXIT_USAGE = EXIT_INVALID
EXIT_UNAVAILABLE = 3

_SPOOL_DEMO_PUT_DELAY = 0.2  # seconds; slower than the child logs, so records wait on disk

_HANDLER_PATHS = frozenset(
    (HANDLER_PATH, "watchtower_refresh._handler.RefreshingCloudWatchLogHandler")
)
_NOT_HANDLER_OPTIONS = frozenset(("()", "class", "level", "formatter", "filters", "."))


class _UsageError(Exception):
    """A problem with the command line or a file it names: exit code 2."""


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


# ----------------------------------------------------------------------------- config files


def load_handler_options(path: str, handler_name: str | None = None) -> dict[str, Any]:
    """Return the options of the RefreshingCloudWatchLogHandler in a dictConfig file.

    Args:
        path: A JSON or YAML file holding a ``logging.config.dictConfig`` dict.
        handler_name: Which handler, when the file has several of ours.
    """
    text = _read(path)
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            message = "reading YAML needs PyYAML: pip install 'watchtower-refresh[yaml]'"
            raise _UsageError(message) from None
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            message = f"{path} is not valid YAML: {exc}"
            raise _UsageError(message) from None
    else:
        try:
            config = json.loads(text)
        except ValueError as exc:
            message = f"{path} is not valid JSON: {exc}"
            raise _UsageError(message) from None
    handlers = config.get("handlers") if isinstance(config, dict) else None
    ours = {
        name: entry
        for name, entry in (handlers or {}).items()
        if isinstance(entry, dict) and (entry.get("()") or entry.get("class")) in _HANDLER_PATHS
    }
    if handler_name is not None:
        ours = {name: entry for name, entry in ours.items() if name == handler_name}
    if len(ours) != 1:
        found = "none" if not ours else ", ".join(sorted(ours))
        message = (
            f"{path} must configure exactly one watchtower_refresh.RefreshingCloudWatchLogHandler"
            f" (found: {found}); pick one with --handler NAME"
        )
        raise _UsageError(message)
    (entry,) = ours.values()
    return {key: value for key, value in entry.items() if key not in _NOT_HANDLER_OPTIONS}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        message = f"cannot read {path}: {exc.strerror}"
        raise _UsageError(message) from None


# ----------------------------------------------------------------------------- policy


def _policy(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    options = load_handler_options(args.config, args.handler) if args.config else {}
    groups = args.log_group or ([options["log_group_name"]] if "log_group_name" in options else [])
    if args.document == "trust":
        if not args.service:
            message = "--document trust needs --service (one of ecs, lambda, ec2)"
            raise _UsageError(message)
        document = trust_policy(args.service, args.account)
    elif args.document == "caller":
        role = args.role_arn or options.get("role_arn")
        if not role:
            message = "--document caller needs --role-arn (the role the handler assumes)"
            raise _UsageError(message)
        document = caller_policy(role)
    else:
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
            raise _UsageError(message)
        retention = args.log_group_retention_days or options.get("log_group_retention_days")
        document = permissions_policy(
            groups,
            region=str(region),
            account=args.account,
            create_log_group=_flag(args.create_log_group, options, "create_log_group"),
            create_log_stream=_flag(args.create_log_stream, options, "create_log_stream"),
            log_group_retention_days=as_retention_days("--log-group-retention-days", retention),
            log_group_tags=bool(as_tags("--log-group-tags", args.log_group_tags))
            or bool(as_tags("log_group_tags", options.get("log_group_tags"))),
        )
    out(json.dumps(document, indent=2))
    return EXIT_OK


def _flag(given: bool | None, options: dict[str, Any], name: str) -> bool:
    return given if given is not None else as_bool(name, options.get(name, True))


# ----------------------------------------------------------------------------- check


def _check(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    options = _handler_options(args)
    report = run_check(
        options,
        write=not args.no_write,
        progress=lambda line: print(f"... {line}", file=sys.stderr, flush=True),
    )
    if args.json:
        out(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        rows = [
            ("credentials", _describe_credentials(report)),
            ("identity", report.identity),
            ("region", report.region),
            ("STS endpoint", report.sts_endpoint),
            ("Logs endpoint", report.logs_endpoint),
            ("log group", report.log_group),
            ("test event", _describe_event(report)),
            ("note", report.note),
            *(("warning", warning) for warning in report.warnings),
            (
                "result",
                "OK" if report.exit_code == EXIT_OK else f"FAILED (exit {report.exit_code})",
            ),
        ]
        out("\n".join(f"{label:<14}{value}" for label, value in rows if value is not None))
    if report.problem:
        print(f"watchtower-refresh check: {report.problem}", file=sys.stderr)
    return report.exit_code


def _describe_credentials(report: CheckReport) -> str | None:
    if report.credential_source is None:
        return None
    if not report.refreshes:
        return f"{report.credential_source} (do not refresh)"
    expires = f"; expire {report.expires}" if report.expires else ""
    return f"{report.credential_source} (refresh themselves{expires})"


def _describe_event(report: CheckReport) -> str | None:
    if not report.written:
        return None
    where = f"written to {report.log_stream}"
    return f"{where} and read back" if report.read_back else where


# ----------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    try:
        from .demo import run_demo
    except ImportError:  # watchtower_refresh.testing: moto's server is not installed
        print(
            "watchtower-refresh demo: needs the demo extra: pip install 'watchtower-refresh[demo]'",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    if args.spool:
        return _spool_demo(args, out)
    duration = 20.0 if args.duration is None else args.duration
    token_lifetime = 4.0 if args.token_lifetime is None else args.token_lifetime
    clock_skew = 3.0 if args.clock_skew is None else args.clock_skew
    threads = 2 if args.threads is None else args.threads
    print(
        f"Logging for {duration:g} s from {threads} threads; tokens live "
        f"{token_lifetime:g} s; the fake AWS's clock runs {clock_skew:g} s ahead.",
        file=sys.stderr,
    )
    result = run_demo(
        duration=duration,
        token_lifetime=token_lifetime,
        clock_skew=clock_skew,
        threads=threads,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.json:
        out(json.dumps({**dataclasses.asdict(result), "ok": result.ok}, indent=2))
    else:
        rate = result.seconds / max(1, result.assume_role_calls)
        out(
            "\n".join(
                [
                    f"records sent              {result.sent}",
                    f"records delivered         {result.delivered}",
                    f"records lost              {result.lost}",
                    f"duplicates                {result.duplicates}",
                    f"AssumeRole calls          {result.assume_role_calls}"
                    f"  (one per {rate:.1f} s; tokens live {result.token_lifetime:g} s)",
                    f"expired-token answers     {result.expired_token_answers}",
                    f"expired-token retries     {result.credential_refreshes}"
                    "  (fresh credentials fetched, batch resent)",
                    f"other retries             {result.retried}",
                    "result                    "
                    + ("OK: nothing lost" if result.ok else "FAILED: records were lost"),
                ]
            )
        )
    return EXIT_OK if result.ok else EXIT_DEMO_LOST


def _spool_demo(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from .demo import run_spool_demo

    others = [
        flag
        for flag, value in (
            ("--token-lifetime", args.token_lifetime),
            ("--clock-skew", args.clock_skew),
            ("--threads", args.threads),
        )
        if value is not None
    ]
    if others:
        message = f"{', '.join(others)} do not apply to --spool"
        raise _UsageError(message)
    duration = 2.0 if args.duration is None else args.duration
    print(
        f"A child process logs with spool_dir set for {duration:g} s and is killed with "
        f"SIGKILL; the fake service holds each put {_SPOOL_DEMO_PUT_DELAY:g} s, so a backlog "
        "builds up.",
        file=sys.stderr,
    )
    try:
        result = run_spool_demo(
            duration=duration,
            put_delay=_SPOOL_DEMO_PUT_DELAY,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except RuntimeError as exc:  # the child died before the kill: nothing to measure
        print(f"watchtower-refresh demo: {redact(str(exc))}", file=sys.stderr)
        return EXIT_DEMO_LOST
    if args.json:
        out(json.dumps({**dataclasses.asdict(result), "ok": result.ok}, indent=2))
    else:
        rows = [
            ("records logged", result.logged, "the log call returned before the kill"),
            ("delivered by the child", result.delivered_before_kill, "read back once it died"),
            ("left in the spool", result.left_in_spool, "not acknowledged when it died"),
            ("replayed", result.replayed, "adopted by a new handler and delivered"),
            ("records read back", f"{result.arrived} of {result.logged} logged", ""),
            ("records missing", result.missing, ""),
            (
                "came twice",
                result.duplicates,
                f"counted in replayed; one batch at most: {result.batch_records}",
            ),
            (
                "logged at the kill",
                result.unconfirmed,
                "spooled, but the log call had not returned; arrived too",
            ),
        ]
        verdict = (
            "OK: every logged record arrived"
            if result.ok
            else "FAILED: records were lost, dropped or duplicated beyond a batch"
        )
        lines = [
            f"{label:<24}{value!s:<9}" + (f"  ({note})" if note else "")
            for label, value, note in rows
        ]
        out("\n".join([*(line.rstrip() for line in lines), f"{'result':<24}{verdict}"]))
    return EXIT_OK if result.ok else EXIT_DEMO_LOST


# ----------------------------------------------------------------------------- spool


def _spool_command(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    import datetime

    from .._spool import describe

    if args.deliver:
        return _spool_deliver(args, out)
    try:
        owners = describe(args.dir)
    except OSError as exc:
        message = f"cannot read the spool directory {args.dir}: {exc.strerror or exc}"
        raise _UsageError(message) from None
    total = {
        "owners": len(owners),
        "dead": sum(o.state == "dead" for o in owners),
        "records": sum(o.records for o in owners),
        "bytes": sum(o.bytes for o in owners),
        "corrupt": sum(o.corrupt for o in owners),
    }
    if args.json:
        listed = [dataclasses.asdict(o) for o in owners]
        out(json.dumps({"directory": args.dir, "owners": listed, "total": total}, indent=2))
        return EXIT_OK

    def when(ms: int | None) -> str:
        if ms is None:
            return "-"
        moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
        return moment.strftime("%Y-%m-%d %H:%M:%S")

    rows = [("LOG GROUP", "STATE", "PID", "RECORDS", "BYTES", "OLDEST (UTC)", "HOST")]
    rows += [
        (
            o.group,
            f"{o.state} ({o.adopter_pid})" if o.adopter_pid else o.state,
            str(o.pid),
            f"{o.records:,}",
            f"{o.bytes:,}",
            when(o.oldest_timestamp_ms),
            o.host or "-",
        )
        for o in owners
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2, 3, 4}
    lines = [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]

    def count(number: int, noun: str) -> str:
        return f"{number:,} {noun}" + ("" if number == 1 else "s")

    summary = (
        f"{count(total['owners'], 'owner')}, {count(total['records'], 'record')} not yet "
        f"delivered, {count(total['bytes'], 'byte')}; {total['dead']:,} dead "
        "(waiting for an adopter)"
    )
    if total["corrupt"]:
        summary += f"; {count(total['corrupt'], 'damaged record')}"
    out("\n".join([*lines, summary] if owners else [f"{args.dir}: nothing spooled"]))
    return EXIT_OK


def _spool_deliver(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Deliver what dead processes left in the spool, as a handler of that log group would."""
    from .._handler import RefreshingCloudWatchLogHandler

    options = _handler_options(args)
    if not options.get("log_group_name"):
        message = "--deliver needs --log-group (or a --config naming one)"
        raise _UsageError(message)
    if not os.path.isdir(args.dir):
        message = f"cannot read the spool directory {args.dir}: not a directory"
        raise _UsageError(message)
    options["spool_dir"] = args.dir
    handler = RefreshingCloudWatchLogHandler(**options)
    try:
        done = handler.flush(timeout=args.timeout)
    finally:
        handler.close()
    stats = handler.stats
    if args.json:
        document = {**dataclasses.asdict(stats), "complete": done}
        out(json.dumps(document, indent=2))
    else:
        dropped = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.dropped.items())) or "none"
        out(
            "\n".join(
                [
                    f"log group          {handler.log_group_name}",
                    f"records delivered  {stats.replayed:,}",
                    f"records dropped    {dropped}",
                    f"damaged records    {stats.corrupt:,}",
                    "result             "
                    + ("OK" if done and not stats.dropped else "INCOMPLETE: see above"),
                ]
            )
        )
    return EXIT_OK if done and not stats.dropped else EXIT_DEMO_LOST


# ----------------------------------------------------------------------------- parser


_HANDLER_FLAGS = (  # command-line flag (argparse dest) and the handler option it sets
    ("role_arn", "role_arn"),
    ("region", "region_name"),
    ("log_group", "log_group_name"),
    ("profile", "profile_name"),
    ("endpoint_url", "endpoint_url"),
)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="dictConfig JSON/YAML naming the handler")
    parser.add_argument("--handler", metavar="NAME", help="which handler of --config")


def _add_handler_options(parser: argparse.ArgumentParser, *, log_group_help: str | None) -> None:
    """The flags that say which handler to act as: ``check`` and ``spool --deliver``."""
    parser.add_argument("--log-group", metavar="NAME", help=log_group_help)
    parser.add_argument("--role-arn")
    parser.add_argument("--region")
    parser.add_argument("--profile")
    parser.add_argument("--endpoint-url", help="CloudWatch Logs endpoint")
    _add_config_options(parser)


def _handler_options(args: argparse.Namespace) -> dict[str, Any]:
    """The handler's options from ``--config``, overridden by the flags given."""
    options = load_handler_options(args.config, args.handler) if args.config else {}
    for flag, name in _HANDLER_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            options[name] = value
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchtower-refresh",
        description="Tools for the watchtower-refresh CloudWatch Logs handler.",
        epilog="Exit codes: see 'watchtower-refresh check --help' and the README.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    policy = commands.add_parser(
        "policy",
        help="print the least-privilege IAM policy for a configuration",
        description=(
            "Print an IAM policy document as JSON. 'permissions' (the default) is what the "
            "handler's role needs; 'caller' lets an identity assume that role; 'trust' lets "
            "ECS tasks, Lambda or EC2 assume it. Nothing is looked up over the network."
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
        "--document", choices=("permissions", "caller", "trust"), default="permissions"
    )
    policy.add_argument("--role-arn", help="with --document caller: the role to assume")
    policy.add_argument("--service", choices=sorted(TRUSTED_SERVICES), help="with --document trust")
    _add_config_options(policy)

    check = commands.add_parser(
        "check",
        help="check credentials, endpoints and delivery end to end",
        description=(
            "Resolve credentials exactly as the handler would, report their source, refresh "
            "and expiry, the caller's identity, the region and the STS and Logs endpoints, "
            "then write one test event and read it back. Exit codes: 0 OK, 2 invalid "
            "configuration, 4 no region, 5 global STS endpoint, 6 no credentials, 7 expired "
            "credentials, 8 access denied, 9 other AWS or connection error."
        ),
    )
    _add_handler_options(check, log_group_help=None)
    check.add_argument("--no-write", action="store_true", help="do not write a test event")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    demo = commands.add_parser(
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

    spool = commands.add_parser(
        "spool",
        help="show what a spool directory holds, or deliver it",
        description=(
            "List each process that spooled records in DIR: log group, whether it is alive, "
            "dead (its records wait for an adopter) or being replayed, records not yet "
            "delivered, bytes and the oldest record's time. Reads only; claims nothing. "
            "With --deliver, deliver what dead processes of --log-group left, with the "
            "handler's options (--role-arn, --region, --config...), and report. "
            "Exit codes: 0 OK, 1 records dropped or not all delivered in time, 2 DIR "
            "missing or unreadable, or a bad option."
        ),
    )
    spool.add_argument("--dir", required=True, metavar="DIR", help="the spool directory")
    spool.add_argument("--json", action="store_true", help="print the summary as JSON")
    spool.add_argument("--deliver", action="store_true", help="deliver what dead processes left")
    spool.add_argument(
        "--timeout", type=_positive, default=60.0, help="seconds to deliver within (60)"
    )
    _add_handler_options(spool, log_group_help="with --deliver: the log group")
    return parser


_COMMANDS = {"policy": _policy, "check": _check, "demo": _demo, "spool": _spool_command}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code (see the module docstring)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    def out(text: str) -> None:
        try:
            print(redact(text), flush=True)
        except BrokenPipeError:
            # The reader left (`policy | head`): say nothing more, as other CLIs do. stdout
            # points at /dev/null from here on, so the flush at exit cannot fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    try:
        return _COMMANDS[args.command](args, out)
    except (_UsageError, ConfigurationError) as exc:
        print(f"watchtower-refresh {args.command}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
