"""``watchtower-refresh check``: credentials, endpoints and one test event, end to end.

Credentials are resolved exactly as the handler resolves them (same options, same session
factory). Every failure maps to its own exit code and a sentence saying what to change.
Nothing reported carries an access key, a secret key or a session token.

Exit codes:
    0  the check passed
    2  invalid configuration: an option, the region, or the ``--config`` file
    4  no AWS region is configured
    5  STS would be called on its global endpoint
    6  no credentials were found, or AWS refused the ones found
    7  the credentials have expired and cannot refresh
    8  access denied (the sentence names the action and the ``policy`` commands that fix it)
    9  any other AWS or connection error, including answers still throttled after
       ``TRANSIENT_ATTEMPTS`` attempts
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from .._aws import (
    DENIED_CODES,
    EXPIRED_CODES,
    GLOBAL_STS_HOST,
    UNRECOGNISED_CODES,
    Outcome,
    Prepared,
    classify,
    effective_region,
    error_code,
    permission_hint,
    regional_sts_client,
    set_up,
)
from .._aws.destination import GroupSettingsDiffer
from .._aws.iam import check_region
from .._compat import credential_expiry
from .._delivery.deliver import backoff_delay
from .._exceptions import ConfigurationError
from .._handler import RefreshingCloudWatchLogHandler
from .._redact import redact
from .config import UsageError, handler_options

if TYPE_CHECKING:
    import boto3

__all__ = [
    "EXIT_ACCESS_DENIED",
    "EXIT_AWS_ERROR",
    "EXIT_EXPIRED",
    "EXIT_GLOBAL_STS",
    "EXIT_INVALID",
    "EXIT_NO_CREDENTIALS",
    "EXIT_NO_REGION",
    "EXIT_OK",
    "CheckReport",
    "run",
    "run_check",
]

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_NO_REGION = 4
EXIT_GLOBAL_STS = 5
EXIT_NO_CREDENTIALS = 6
EXIT_EXPIRED = 7
EXIT_ACCESS_DENIED = 8
EXIT_AWS_ERROR = 9

DEFAULT_LOG_GROUP = "watchtower"
"""The group the handler writes to when none is given (watchtower's default)."""
TRANSIENT_ATTEMPTS = 5
"""Times the check runs when AWS answers throttled or unavailable (the handler retries too)."""

_READ_BACK_SECONDS = 10.0
_PROBE_KEY = "endpoint-probe"  # placeholder credentials: never used to sign a request


@dataclasses.dataclass
class CheckReport:
    """What ``check`` found; ``problem`` and ``exit_code`` say whether it succeeded."""

    log_group: str
    region: str | None = None
    sts_endpoint: str | None = None
    logs_endpoint: str | None = None
    credential_source: str | None = None
    refreshes: bool | None = None
    expires: str | None = None
    identity: str | None = None
    log_stream: str | None = None
    written: bool = False
    read_back: bool | None = None
    note: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    """What the handler would warn about once and then deliver regardless."""
    problem: str | None = None
    exit_code: int = EXIT_OK
    default_log_group: bool = False
    """No group was given: the handler's default (``watchtower``) is the one written to."""

    def fail(self, code: int, problem: str) -> CheckReport:
        """Record the failure that ends the check, and return the report."""
        self.exit_code, self.problem = code, redact(problem)
        return self


def run_check(
    options: Mapping[str, Any],
    *,
    write: bool = True,
    progress: Callable[[str], None] | None = None,
) -> CheckReport:
    """Check that a handler built from ``options`` can deliver, without raising.

    Args:
        options: The handler's keyword arguments, as a ``dictConfig`` entry would give them.
        write: Also write one test event and read it back.
        progress: Called with a short line before each step that waits on the network.
    """
    say = progress or (lambda line: None)
    # As the handler does: a throttled or unavailable answer is retried after a backoff,
    # here the whole check again (a throttled put wrote nothing).
    for attempt in range(1, TRANSIENT_ATTEMPTS):
        try:
            return _attempt(options, write, say, attempt)
        except _TryAgain as again:
            delay = backoff_delay(attempt - 1)
            say(f"{again} answered {again.code}: trying again in {delay:.1f} s")
            time.sleep(delay)
    return _attempt(options, write, say, TRANSIENT_ATTEMPTS)


def _attempt(
    options: Mapping[str, Any], write: bool, say: Callable[[str], None], attempt: int
) -> CheckReport:
    report = CheckReport(log_group=str(options.get("log_group_name") or DEFAULT_LOG_GROUP))
    try:
        handler = RefreshingCloudWatchLogHandler(**{**options, "use_queues": False})
    except (ConfigurationError, TypeError) as exc:
        return report.fail(EXIT_INVALID, f"the handler's configuration is invalid: {exc}")
    report.log_group = handler.log_group_name  # after watchtower's alias, log_group
    report.default_log_group = not (options.get("log_group_name") or options.get("log_group"))
    try:
        return _check_with(handler, options, report, write, say, attempt)
    finally:
        handler.close()  # built only to resolve things as the handler would: let it go


class _TryAgain(Exception):
    """A transient answer (throttled, unavailable) before the last attempt."""

    def __init__(self, operation: str, code: str) -> None:
        super().__init__(operation)
        self.code = code


def _check_with(
    handler: RefreshingCloudWatchLogHandler,
    options: Mapping[str, Any],
    report: CheckReport,
    write: bool,
    say: Callable[[str], None],
    attempt: int = TRANSIENT_ATTEMPTS,
) -> CheckReport:
    """Check ``report``'s handler step by step; the report says where it stopped and why."""
    try:
        session = handler._session_factory()
    except Exception as exc:
        return report.fail(EXIT_INVALID, f"the session could not be built: {exc}")
    region = _checked_region(session, handler, report)
    if region is None or not _endpoints_regional(session, handler, options, report, region):
        return report
    try:
        _resolve_identity(session, region, report, say)
        logs = session.client(
            "logs",
            region_name=region,
            endpoint_url=handler.endpoint_url,
            # One attempt per call, as the handler's client makes: a throttled answer is
            # retried by the check itself, after the handler's backoff, whatever botocore's
            # default retry mode and its attempts are in the installed version.
            config=Config(retries={"total_max_attempts": 1}),
        )
        if write:
            _write_and_read_back(handler, logs, report, say)
    except Exception as exc:
        if _transient(exc) and attempt < TRANSIENT_ATTEMPTS:
            raise _TryAgain(exc.operation_name, error_code(exc) or "") from exc
        code, sentence = _explain(exc, report, options)
        if _transient(exc) and attempt > 1:
            sentence += f" (the last of {attempt} attempts, with backoff between them)"
        return report.fail(code, sentence)
    return report


def _checked_region(
    session: boto3.Session, handler: RefreshingCloudWatchLogHandler, report: CheckReport
) -> str | None:
    """The region the handler would use, checked; None when the check fails there."""
    report.region = effective_region(session, handler.region_name)
    if not report.region:
        report.fail(
            EXIT_NO_REGION,
            "no AWS region is configured: pass --region (region_name in the handler's "
            "configuration) or set AWS_REGION; without one STS would use its global endpoint",
        )
        return None
    try:
        with warnings.catch_warnings(record=True) as unknown:
            warnings.simplefilter("always")
            check_region(report.region)
    except ConfigurationError as exc:
        report.fail(EXIT_INVALID, str(exc))
        return None
    report.warnings.extend(str(warning.message) for warning in unknown)
    return report.region


def _endpoints_regional(
    session: boto3.Session,
    handler: RefreshingCloudWatchLogHandler,
    options: Mapping[str, Any],
    report: CheckReport,
    region: str,
) -> bool:
    """Note the STS and Logs endpoints the handler would call; False when STS's is global."""
    # Placeholder keys: resolving an endpoint must not resolve credentials, which for an
    # assumed role is already an AssumeRole request.
    probe = {"aws_access_key_id": _PROBE_KEY, "aws_secret_access_key": _PROBE_KEY}
    if "role_arn" in options or "session_factory" in options:
        # our provider: regional even under the legacy setting
        sts_probe = regional_sts_client(session, region, **probe)
    else:  # botocore's providers and clients: the endpoint botocore picks
        sts_probe = session.client(
            "sts", region, aws_access_key_id=_PROBE_KEY, aws_secret_access_key=_PROBE_KEY
        )
    report.sts_endpoint = sts_probe.meta.endpoint_url
    logs_probe = session.client(
        "logs",
        region,
        endpoint_url=handler.endpoint_url,
        aws_access_key_id=_PROBE_KEY,
        aws_secret_access_key=_PROBE_KEY,
    )
    report.logs_endpoint = logs_probe.meta.endpoint_url
    if urlsplit(report.sts_endpoint).hostname == GLOBAL_STS_HOST:
        report.fail(
            EXIT_GLOBAL_STS,
            f"STS would be called on its global endpoint ({report.sts_endpoint}): unset "
            "AWS_STS_REGIONAL_ENDPOINTS=legacy (or set it to regional), remove "
            "sts_regional_endpoints = legacy from the profile, and remove any endpoint "
            "override that names sts.amazonaws.com",
        )
        return False
    return True


def _resolve_identity(
    session: boto3.Session, region: str, report: CheckReport, say: Callable[[str], None]
) -> None:
    """Resolve the credentials as the handler would, then ask STS whose they are."""
    say("resolving credentials")
    credentials = session.get_credentials()
    if credentials is None:
        raise NoCredentialsError
    credentials.get_frozen_credentials()
    report.credential_source = credentials.method
    report.refreshes = isinstance(credentials, RefreshableCredentials)
    expiry = credential_expiry(credentials)
    report.expires = expiry.isoformat() if expiry is not None else None
    say("asking STS who we are")
    report.identity = regional_sts_client(session, region).get_caller_identity()["Arn"]


def _transient(exc: Exception) -> TypeGuard[ClientError]:
    """An AWS answer the handler would back off from and retry: throttled, 5xx, 429.

    Connection errors are not: botocore has retried them already.
    """
    return isinstance(exc, ClientError) and classify(exc) is Outcome.BACKOFF


def _write_and_read_back(
    handler: RefreshingCloudWatchLogHandler,
    logs: Any,
    report: CheckReport,
    say: Callable[[str], None],
) -> None:
    group = report.log_group
    stream = f"watchtower-refresh-check/{platform.node() or 'host'}".replace(":", "-")
    report.log_stream = stream
    say(f"writing a test event to {group}")
    # The handler's own set-up and its rules: "already exists" is success, and a refusal
    # (access denied, invalid parameter) is warned about once while delivery goes on, since
    # someone who holds the permission may have set the group up. So the put decides.
    refused: list[ClientError] = []
    set_up(
        logs,
        group,
        stream,
        handler.options,
        Prepared(),
        lambda _, exc: _set_up(exc, refused, report.warnings),
    )
    message = f"watchtower-refresh check {uuid.uuid4()}"
    try:
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[{"timestamp": int(time.time() * 1000), "message": message}],
        )
    except ClientError as exc:
        if refused and error_code(exc) == "ResourceNotFoundException":
            raise refused[0] from exc  # the refusal is why the group or stream is missing
        raise
    for refusal in refused:
        report.warnings.append(
            f"{refusal.operation_name} was refused ({error_code(refusal)}: {_message(refusal)}); "
            f"the handler warns once and delivers all the same; "
            f"{permission_hint(refusal.operation_name)}"
        )
    report.written = True
    say("reading it back")
    deadline = time.monotonic() + _READ_BACK_SECONDS
    try:
        while True:
            events = logs.get_log_events(
                logGroupName=group, logStreamName=stream, startFromHead=False, limit=50
            )["events"]
            if any(event["message"] == message for event in events):
                report.read_back = True
                return
            if time.monotonic() >= deadline:
                report.read_back = False
                report.note = (
                    f"the event was accepted but not readable after {_READ_BACK_SECONDS:g} s"
                )
                return
            time.sleep(1.0)
    except ClientError as exc:
        if (error_code(exc) or "") not in DENIED_CODES:
            raise
        report.note = "the event was accepted; reading it back needs logs:GetLogEvents, not granted"


def _set_up(exc: Exception, refused: list[ClientError], warnings: list[str]) -> None:
    """Keep a refused set-up call to report it as the handler warns of it; raise anything else.

    An existing group with other settings than the handler's is a warning, as in the handler.
    """
    if isinstance(exc, GroupSettingsDiffer):
        warnings.append(str(exc))
        return
    if not isinstance(exc, ClientError):
        raise exc
    refused.append(exc)


def _explain(exc: Exception, report: CheckReport, options: Mapping[str, Any]) -> tuple[int, str]:
    """Map a failure to its exit code and the sentence that says what to change."""
    code = error_code(exc) or ""
    operation = exc.operation_name if isinstance(exc, ClientError) else ""
    if isinstance(exc, NoRegionError):
        return EXIT_NO_REGION, "no AWS region is configured: pass --region or set AWS_REGION"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return EXIT_NO_CREDENTIALS, (
            f"no valid AWS credentials were found ({type(exc).__name__}): run where a "
            "task, instance or pod role is available, or pass --profile or --role-arn with "
            "source credentials in the environment"
        )
    if code in UNRECOGNISED_CODES:
        source = report.credential_source or "the environment"
        return EXIT_NO_CREDENTIALS, (
            f"credentials were found ({source}) but AWS refused them: {operation} said "
            f"{code} ({_message(exc)}). The access key does not exist in this account's "
            "partition, was deleted or deactivated, or does not match its secret key or "
            "session token: check which keys are in use (AWS_ACCESS_KEY_ID, AWS_PROFILE, the "
            "shared files), and that a session token was not left over from other keys"
        )
    if code in EXPIRED_CODES:
        source = report.credential_source or "the environment"
        return EXIT_EXPIRED, (
            f"the credentials from {source} have expired and cannot refresh ({operation} said "
            f"{code}): keys copied from one AssumeRole answer die with their session; pass "
            "--role-arn (or role_arn in the configuration) so the handler assumes and renews "
            "the role itself, or use a profile with role_arn/credential_process"
        )
    if code in DENIED_CODES:
        return EXIT_ACCESS_DENIED, _denied(exc, operation, report, options)
    if _transient(exc):
        return EXIT_AWS_ERROR, f"{operation} failed: AWS answered {code}: {_message(exc)}"
    return EXIT_AWS_ERROR, f"{operation or 'the request'} failed: {exc}"


def _denied(exc: Exception, operation: str, report: CheckReport, options: Mapping[str, Any]) -> str:
    region, group = report.region or "<region>", report.log_group
    account = _account(report.identity) or _account(options.get("role_arn")) or "<account>"
    if operation != "AssumeRole":
        fix = f"watchtower-refresh policy --log-group {group} --region {region} --account {account}"
        return (
            f"logs:{operation} was denied: {_message(exc)}. "
            f"Print the statements that fix it with: {fix}"
        )
    role = options.get("role_arn", "<role-arn>")
    # The same two causes as the handler's warning names: either side can refuse.
    return (
        f"sts:AssumeRole was denied: {_message(exc)}. Either the caller's policy does not "
        f"allow sts:AssumeRole on {role}, or the role's trust policy does not trust the "
        f"caller. Print the caller's statement with: watchtower-refresh policy --document "
        f"caller --role-arn {role}; and the role's trust policy with: watchtower-refresh "
        "policy --document trust --trusted-role-arn <the caller's role ARN> (or --service "
        "ecs|lambda|ec2 when the caller is a service's own role)"
    )


def _message(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def _account(arn: object) -> str | None:
    parts = str(arn or "").split(":")
    return parts[4] if len(parts) > 4 and parts[4].isdigit() else None


# ----------------------------------------------------------------------------- the command


def run(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Run the check, print the report; return its exit code."""
    try:
        options = handler_options(args)
    except (UsageError, ConfigurationError) as exc:
        if not args.json:
            raise
        # Automation reads stdout: the problem goes there too, in the report's shape.
        report = CheckReport(
            log_group=args.log_group or DEFAULT_LOG_GROUP, default_log_group=not args.log_group
        )
        report.fail(EXIT_INVALID, str(exc))
        out(json.dumps(dataclasses.asdict(report), indent=2))
        raise
    report = run_check(
        options,
        write=not args.no_write,
        progress=lambda line: print(f"... {line}", file=sys.stderr, flush=True),
    )
    if args.json:
        out(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        out(_describe(report))
    if report.problem:
        print(f"watchtower-refresh check: {report.problem}", file=sys.stderr)
    return report.exit_code


def _describe(report: CheckReport) -> str:
    group = report.log_group
    if report.default_log_group:
        group += " (the handler's default: no --log-group or log_group_name was given)"
    rows = [
        ("credentials", _describe_credentials(report)),
        ("identity", report.identity),
        ("region", report.region),
        ("STS endpoint", report.sts_endpoint),
        ("Logs endpoint", report.logs_endpoint),
        ("log group", group),
        ("test event", _describe_event(report)),
        ("note", report.note),
        *(("warning", warning) for warning in report.warnings),
        ("result", "OK" if report.exit_code == EXIT_OK else f"FAILED (exit {report.exit_code})"),
    ]
    return "\n".join(f"{label:<14}{value}" for label, value in rows if value is not None)


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
    where = f"written to {report.log_stream} in {report.log_group}"
    return f"{where} and read back" if report.read_back else where
