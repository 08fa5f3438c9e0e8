"""What to do about a failed request, decided by its AWS error code, and what to tell people.

The code decides, not the HTTP status: ``ExpiredTokenException`` and ``AccessDenied`` are
both 400s, and only one of them is fixed by fresh credentials.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from .iam import call_named

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "DENIED_CODES",
    "EXPIRED_CODES",
    "MAX_QUICK_RETRIES",
    "MAX_SKEW",
    "SKEW_CODES",
    "UNRECOGNISED_CODES",
    "Outcome",
    "advice",
    "classify",
    "clock_skew",
    "error_code",
    "is_clock_skew",
    "is_throttling",
    "permission_hint",
    "setup_advice",
]

BACKOFF_BASE = 0.1
"""First backoff ceiling, in seconds; it doubles with each attempt."""
BACKOFF_CAP = 20.0
"""Largest backoff ceiling, in seconds."""
MAX_QUICK_RETRIES = 2
"""Refresh or create-and-resend this often before backing off too."""

EXPIRED_CODES = frozenset(("ExpiredTokenException", "ExpiredToken", "RequestExpired"))
DENIED_CODES = frozenset(("AccessDenied", "AccessDeniedException"))
UNRECOGNISED_CODES = frozenset(
    ("InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch")
)
SKEW_CODES = frozenset(
    ("RequestTimeTooSkewed", "SignatureDoesNotMatch", "InvalidSignatureException")
)
"""Codes AWS answers when the request's signing time is too far from its own clock; the
last two also mean a wrong secret key, so the message or the Date header decides."""
_SKEW_WORDS = ("signature expired", "not yet current", "too skewed")
MAX_SKEW = 300.0
"""Seconds between the signing time and the service's clock that AWS accepts."""
_MISSING_CODES = frozenset(("ResourceNotFoundException",))
_THROTTLING_CODES = frozenset(
    (
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    )
)
_TRANSIENT_CODES = _THROTTLING_CODES | frozenset(
    (
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
        "OperationAbortedException",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
    )
)


class Outcome(enum.Enum):
    """What the sender does about a failed put."""

    REFRESH = "refresh credentials and resend"
    CREATE = "create the group or stream and resend"
    BACKOFF = "back off and resend"
    GIVE_UP = "drop the batch"


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, or None for any other exception."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def is_throttling(exc: BaseException) -> bool:
    """Whether the service answered that requests come too fast (a code, or HTTP 429): the
    account's quota, shared by everyone who calls, not this request's fault."""
    code = error_code(exc)
    if code is None or not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in _THROTTLING_CODES or status == 429


def classify(exc: BaseException) -> Outcome:
    """Decide what to do about a failed put, from the error code rather than the HTTP status."""
    code = error_code(exc)
    if code is not None and isinstance(exc, ClientError):
        if code in EXPIRED_CODES:
            return Outcome.REFRESH
        if code in _MISSING_CODES and exc.operation_name == "PutLogEvents":
            return Outcome.CREATE
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return Outcome.BACKOFF
        return Outcome.GIVE_UP
    if isinstance(exc, (BotoConnectionError, HTTPClientError, CredentialRetrievalError)):
        return Outcome.BACKOFF
    # Anything else (a session_factory that raises, a botocore RuntimeError) drops this batch
    # with a warning; the next batch tries again, so delivery is never stuck behind it.
    return Outcome.GIVE_UP


def permission_hint(action: str) -> str:
    """What to grant, or switch off, when a set-up call of ``action`` was refused.

    Read from ``iam.HANDLER_CALLS``: ``action`` is the operation's name (``CreateLogGroup``).
    """
    call = call_named(action)
    if call is None:
        return f"grant logs:{action} on the group to the role in use"
    return f"grant {call.action} {call.scope.where} to the role in use{call.instead}"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def clock_skew(
    exc: BaseException, *, now: Callable[[], datetime.datetime] = _utc_now
) -> float | None:
    """How far this machine's clock is ahead of the service's, in seconds (negative: behind).

    Read from the ``Date`` header of the error answer, which has whole seconds; None when
    the answer has none.
    """
    if not isinstance(exc, ClientError):
        return None
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    stamp = headers.get("date") if isinstance(headers, dict) else None
    if not stamp:
        return None
    try:
        service = parsedate_to_datetime(str(stamp))
    except (TypeError, ValueError):
        return None
    if service.tzinfo is None:  # an HTTP date is GMT; "-0000" parses naive
        service = service.replace(tzinfo=datetime.timezone.utc)
    return (now() - service).total_seconds()


def is_clock_skew(exc: BaseException, *, now: Callable[[], datetime.datetime] = _utc_now) -> bool:
    """True when AWS refused the request because it was signed at a time too far from its own."""
    code = error_code(exc)
    if not isinstance(exc, ClientError) or code not in SKEW_CODES:
        return False
    if code == "RequestTimeTooSkewed":
        return True
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    if any(words in message for words in _SKEW_WORDS):
        return True
    skew = clock_skew(exc, now=now)
    return skew is not None and abs(skew) > MAX_SKEW


def _duration(seconds: float) -> str:
    whole = round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes or hours:
        parts.append(f"{minutes} min")
    parts.append(f"{secs} s")
    return " ".join(parts)


def _skew_sentence(
    exc: BaseException, what: str, now: Callable[[], datetime.datetime] = _utc_now
) -> str:
    code = error_code(exc)
    skew = clock_skew(exc, now=now)
    if skew is None:
        measured = "this machine's clock is probably off (the answer had no Date header to compare)"
    elif abs(skew) <= MAX_SKEW:
        measured = (
            f"this machine's clock is within {_duration(skew)} of AWS's now (the answer's Date "
            "header against the local clock), so it was off when the request was signed, or "
            "the request waited that long before it was sent"
        )
    else:
        direction = "ahead of" if skew > 0 else "behind"
        measured = (
            f"this machine's clock is {_duration(skew)} {direction} AWS's "
            "(the answer's Date header against the local clock)"
        )
    return (
        f"AWS refused {what} as signed at the wrong time ({code}): {measured}. Requests are "
        f"signed with the local time and AWS accepts at most {MAX_SKEW / 60:.0f} minutes of "
        "difference: synchronise the clock (NTP, chrony, systemd-timesyncd); no permission "
        "is missing"
    )


def _assume_role_denied(exc: BaseException, where: str) -> str:
    role = str(getattr(exc, "role_arn", "") or "") or "the role in role_arn"
    arn = role if role.startswith("arn:") else "ROLE_ARN"
    return (
        f"AssumeRole was denied for {role}, so nothing can be sent to {where}: either the "
        f"caller's policy does not allow sts:AssumeRole on {role}, or the role's trust policy "
        "does not trust the caller. 'watchtower-refresh policy --document caller "
        f"--role-arn {arn}' prints the statement the caller needs; 'watchtower-refresh "
        "policy --document trust --service ecs|lambda|ec2' prints a trust policy for a "
        "service's role"
    )


def setup_advice(exc: BaseException, action: str, group: str) -> str:
    """One sentence: a set-up call (``action`` on ``group``) failed, why, and what to change.

    A permission hint only for a refusal of permission; delivery goes on either way.
    """
    where = f"log group {group}"
    code = error_code(exc)
    operation = exc.operation_name if isinstance(exc, ClientError) else action
    if is_clock_skew(exc):
        return _skew_sentence(exc, f"{operation} on {where}")
    if code in DENIED_CODES:
        return f"{operation} on {where} was denied: {exc}; {permission_hint(operation)}"
    return f"{action} on {where} failed: {exc!r}; delivery is still tried"


def advice(
    exc: BaseException,
    group: str,
    stream: str,
    *,
    now: Callable[[], datetime.datetime] = _utc_now,
) -> str:
    """One sentence: what failed for ``group``/``stream`` and what to change.

    Args:
        exc: What the failed call raised.
        group: The log group the records were for.
        stream: Their stream.
        now: The local clock, against which a clock-skew answer's Date header is read.
    """
    code = error_code(exc)
    where = f"log group {group}, stream {stream}"
    if isinstance(exc, NoRegionError):
        return (
            f"no AWS region is configured for {where}: pass region_name= to the handler "
            "or set AWS_REGION"
        )
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return (
            f"no AWS credentials were found for {where}: pass role_arn= or profile_name=, "
            "or run where a task, instance or pod role is available"
        )
    if code in EXPIRED_CODES:
        return (
            f"the credentials used for {where} have expired and nothing can refresh them "
            "(keys from one AssumeRole answer, or a given boto3_client): pass role_arn=, "
            "profile_name= or a session_factory whose credentials refresh"
        )
    if is_clock_skew(exc, now=now):
        operation = exc.operation_name if isinstance(exc, ClientError) else "the request"
        return _skew_sentence(exc, f"{operation} for {where}", now)
    if code in DENIED_CODES:
        operation = exc.operation_name if isinstance(exc, ClientError) else "PutLogEvents"
        if operation == "AssumeRole":
            return _assume_role_denied(exc, where)
        return (
            f"{operation} was denied for {where}: {exc}. Grant logs:{operation} on that "
            "group to the identity in use ('watchtower-refresh policy' prints the statements)"
        )
    if code == "ResourceNotFoundException":
        return (
            f"{where} does not exist and create_log_group/create_log_stream are off: create "
            "it or turn creation on"
        )
    return f"sending to {where} failed: {exc}"
