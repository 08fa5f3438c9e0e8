"""What to do about a failed request, decided by its AWS error code, and what to tell people.

The code decides, not the HTTP status: ``ExpiredTokenException`` and ``AccessDenied`` are
both 400s, and only one of them is fixed by fresh credentials.
"""

from __future__ import annotations

import enum

from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "DENIED_CODES",
    "EXPIRED_CODES",
    "MAX_QUICK_RETRIES",
    "UNRECOGNISED_CODES",
    "Outcome",
    "advice",
    "classify",
    "error_code",
    "permission_hint",
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
_MISSING_CODES = frozenset(("ResourceNotFoundException",))
_TRANSIENT_CODES = frozenset(
    (
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
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
    """What to grant, or switch off, when a set-up call of ``action`` was refused."""
    switch = {
        "CreateLogGroup": "; or create the group beforehand and pass create_log_group=False",
        "CreateLogStream": "; or create the stream beforehand and pass create_log_stream=False",
    }.get(action, "")
    return f"grant logs:{action} on the group to the role in use{switch}"


def advice(exc: BaseException, group: str, stream: str) -> str:
    """One sentence: what failed for ``group``/``stream`` and what to change."""
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
    if code in DENIED_CODES:
        operation = exc.operation_name if isinstance(exc, ClientError) else "PutLogEvents"
        service = "sts" if operation in ("AssumeRole", "GetCallerIdentity") else "logs"
        return (
            f"{operation} was denied for {where}: {exc}. Grant {service}:{operation} on "
            "that resource to the identity in use ('watchtower-refresh policy' prints "
            "the statements)"
        )
    if code == "ResourceNotFoundException":
        return (
            f"{where} does not exist and create_log_group/create_log_stream are off: create "
            "it or turn creation on"
        )
    return f"sending to {where} failed: {exc}"
