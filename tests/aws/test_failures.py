"""The failure policy: the error code decides, and the advice names the fix."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from tests.conftest import ROLE_ARN, logger_for
from watchtower_refresh import WatchtowerRefreshWarning
from watchtower_refresh._aws.credentials import AssumeRoleError
from watchtower_refresh._aws.failures import (
    Outcome,
    advice,
    classify,
    clock_skew,
    error_code,
    is_clock_skew,
    is_throttling,
    permission_hint,
    setup_advice,
)
from watchtower_refresh.testing import FakeAWS, Fault

Read = Callable[[str], list[str]]
SERVICE_NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.timezone.utc)


def client_error(
    code: str,
    status: int,
    operation: str = "PutLogEvents",
    message: str = "m",
    date: str | None = None,
) -> ClientError:
    metadata: dict[str, Any] = {"HTTPStatusCode": status}
    if date is not None:
        metadata["HTTPHeaders"] = {"date": date}
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": metadata}
    return ClientError(response, operation)


def local_clock(offset_seconds: float) -> Callable[[], datetime.datetime]:
    """A local clock ``offset_seconds`` ahead of the service's (negative: behind)."""
    return lambda: SERVICE_NOW + datetime.timedelta(seconds=offset_seconds)


SERVICE_DATE = "Sun, 22 Nov 2026 12:00:00 GMT"
EXPIRED = "Signature expired: 20261122T115000Z is now earlier than 20261122T115500Z"


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (client_error("ExpiredTokenException", 400), Outcome.REFRESH),
        (client_error("ExpiredToken", 403, "AssumeRole"), Outcome.REFRESH),
        (client_error("RequestExpired", 400), Outcome.REFRESH),
        (client_error("ResourceNotFoundException", 400), Outcome.CREATE),
        (client_error("ResourceNotFoundException", 400, "CreateLogStream"), Outcome.GIVE_UP),
        (client_error("ThrottlingException", 400), Outcome.BACKOFF),
        (client_error("Throttling", 400, "AssumeRole"), Outcome.BACKOFF),
        (client_error("SomethingNew", 503), Outcome.BACKOFF),
        (client_error("SlowDown", 429), Outcome.BACKOFF),
        (client_error("AccessDeniedException", 400), Outcome.GIVE_UP),
        (client_error("UnrecognizedClientException", 400), Outcome.GIVE_UP),
        (client_error("InvalidParameterException", 400), Outcome.GIVE_UP),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), Outcome.BACKOFF),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), Outcome.BACKOFF),
        (NoRegionError(), Outcome.GIVE_UP),
        (RuntimeError("a session_factory broke"), Outcome.GIVE_UP),
    ],
)
def test_classify_by_code(exc: BaseException, outcome: Outcome) -> None:
    assert classify(exc) is outcome


@pytest.mark.parametrize(
    ("exc", "throttled"),
    [
        (client_error("ThrottlingException", 400), True),
        (client_error("TooManyRequestsException", 400), True),
        (client_error("SlowDown", 429), True),
        (client_error("ServiceUnavailableException", 503), False),
        (client_error("AccessDeniedException", 400), False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), False),
    ],
)
def test_throttling_is_the_quota_not_an_outage(exc: BaseException, throttled: bool) -> None:
    # Only these slow the process's puts down (its pace); an outage is backed off per batch.
    assert is_throttling(exc) is throttled


def test_error_code() -> None:
    assert error_code(client_error("X", 400)) == "X"
    assert error_code(RuntimeError()) is None


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (NoRegionError(), "pass region_name= to the handler or set AWS_REGION"),
        (NoCredentialsError(), "pass role_arn= or profile_name="),
        (client_error("ExpiredTokenException", 400), "nothing can refresh them"),
        (client_error("AccessDenied", 403, "AssumeRole"), "trust policy"),
        (client_error("AccessDeniedException", 400), "Grant logs:PutLogEvents"),
        (client_error("ResourceNotFoundException", 400), "create_log_group/create_log_stream"),
        (client_error("Other", 400), "sending to log group /g, stream s failed"),
    ],
)
def test_advice_names_the_fix(exc: BaseException, words: str) -> None:
    sentence = advice(exc, "/g", "s")
    assert "log group /g, stream s" in sentence
    assert words in sentence


def test_permission_hint() -> None:
    assert permission_hint("CreateLogGroup").endswith("pass create_log_group=False")
    assert permission_hint("DescribeLogGroups").endswith(
        "reads its ARN with it, and the group settings are compared with an existing group's"
    )
    assert permission_hint("PutRetentionPolicy") == (
        "grant logs:PutRetentionPolicy on the group to the role in use"
    )


def test_a_refused_assume_role_names_the_role_and_the_commands() -> None:
    refused = client_error("AccessDenied", 403, "AssumeRole", "not authorized")
    error = AssumeRoleError(refused.response, "AssumeRole", ROLE_ARN)
    sentence = advice(error, "/g", "s")
    assert f"AssumeRole was denied for {ROLE_ARN}" in sentence
    assert f"sts:AssumeRole on {ROLE_ARN}" in sentence
    assert "caller's policy" in sentence
    assert "role's trust policy" in sentence
    assert f"watchtower-refresh policy --document caller --role-arn {ROLE_ARN}" in sentence
    assert "watchtower-refresh policy --document trust --service" in sentence
    assert "on that resource" not in sentence  # the resource is the role, not the group


@pytest.mark.parametrize(
    ("exc", "offset", "words"),
    [
        (
            client_error("SignatureDoesNotMatch", 403, "AssumeRole", EXPIRED, SERVICE_DATE),
            -754,
            "12 min 34 s behind AWS's",
        ),
        (
            client_error("InvalidSignatureException", 400, "PutLogEvents", EXPIRED, SERVICE_DATE),
            3 * 3600 + 5,
            "3 h 0 min 5 s ahead of AWS's",
        ),
        (
            client_error("RequestTimeTooSkewed", 403, "CreateLogGroup", "m", SERVICE_DATE),
            -400,
            "6 min 40 s behind AWS's",
        ),
        (
            # No word of time in the message, but the Date header shows the clock is off.
            client_error("InvalidSignatureException", 400, "PutLogEvents", "m", SERVICE_DATE),
            600,
            "10 min 0 s ahead of AWS's",
        ),
        (
            client_error("RequestTimeTooSkewed", 403),
            0,
            "probably off",
        ),
        (
            client_error("SignatureDoesNotMatch", 403, "AssumeRole", EXPIRED, SERVICE_DATE),
            2,
            "within 2 s of AWS's now",
        ),
    ],
)
def test_clock_skew_says_by_how_much(exc: ClientError, offset: float, words: str) -> None:
    now = local_clock(offset)
    assert is_clock_skew(exc, now=now)
    sentence = advice(exc, "/g", "s", now=now)
    assert words in sentence
    assert "synchronise the clock" in sentence
    assert "grant" not in sentence.lower()
    assert "log group /g, stream s" in sentence


def test_a_wrong_key_is_not_clock_skew() -> None:
    wrong_key = client_error(
        "SignatureDoesNotMatch", 403, message="The request signature we calculated does not match"
    )
    assert not is_clock_skew(wrong_key, now=local_clock(0))
    with_date = client_error("InvalidSignatureException", 400, message="m", date=SERVICE_DATE)
    assert not is_clock_skew(with_date, now=local_clock(30))
    assert clock_skew(with_date, now=local_clock(30)) == 30
    numeric_zone = client_error("X", 400, date="Sun, 22 Nov 2026 12:00:00 -0000")
    assert clock_skew(numeric_zone, now=local_clock(-5)) == -5
    assert clock_skew(RuntimeError()) is None
    assert clock_skew(client_error("X", 400, date="not a date")) is None
    assert not is_clock_skew(client_error("AccessDeniedException", 400))


@pytest.mark.parametrize(
    ("exc", "words", "permission"),
    [
        (client_error("AccessDeniedException", 400, "CreateLogGroup"), "CreateLogGroup", True),
        (
            client_error("AccessDeniedException", 400, "DescribeLogGroups"),
            "DescribeLogGroups",
            True,
        ),
        (client_error("InvalidSignatureException", 400, "CreateLogGroup", EXPIRED), "clock", False),
        (client_error("InvalidParameterException", 400, "CreateLogGroup"), "still tried", False),
        (RuntimeError("broke"), "RuntimeError('broke')", False),
    ],
)
def test_set_up_advice_gives_a_permission_hint_only_for_a_refusal(
    exc: BaseException, words: str, permission: bool
) -> None:
    sentence = setup_advice(exc, "CreateLogGroup", "/g")
    assert "log group /g" in sentence
    assert words in sentence
    assert ("grant logs:" in sentence) is permission


def test_a_handler_says_which_role_was_refused(aws: FakeAWS, make_handler: Any) -> None:
    aws.injector.add_fault(Fault("AccessDenied", action="AssumeRole", status=403))
    handler = make_handler("/svc/refused-role", role_arn=ROLE_ARN)
    with pytest.warns(WatchtowerRefreshWarning) as caught:
        logger_for(handler).info("never sent")
        assert handler.flush(timeout=10)
    (text,) = [str(w.message) for w in caught]
    assert f"AssumeRole was denied for {ROLE_ARN}" in text
    assert "--document caller" in text
    assert "--document trust" in text
    assert handler.stats.dropped == {"AccessDenied": 1}


def test_a_skewed_clock_is_not_reported_as_a_missing_permission(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    boto3.client("logs").create_log_group(logGroupName="/svc/skewed")
    aws.injector.add_fault(
        Fault("InvalidSignatureException", action="CreateLogGroup", message=EXPIRED, times=1)
    )
    handler = make_handler("/svc/skewed")
    with pytest.warns(WatchtowerRefreshWarning) as caught:
        logger_for(handler).info("delivered anyway")
        assert handler.flush(timeout=10)
    (text,) = [str(w.message) for w in caught]
    assert "clock" in text
    assert "AWS's" in text  # measured against the answer's Date header
    assert "grant" not in text.lower()
    assert messages("/svc/skewed") == ["delivered anyway"]
