"""The failure policy: the error code decides, and the advice names the fix."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from watchtower_refresh._failures import Outcome, advice, classify, error_code, permission_hint


def client_error(code: str, status: int, operation: str = "PutLogEvents") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


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


def test_error_code() -> None:
    assert error_code(client_error("X", 400)) == "X"
    assert error_code(RuntimeError()) is None


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (NoRegionError(), "pass region_name= to the handler or set AWS_REGION"),
        (NoCredentialsError(), "pass role_arn= or profile_name="),
        (client_error("ExpiredTokenException", 400), "nothing can refresh them"),
        (client_error("AccessDenied", 403, "AssumeRole"), "Grant sts:AssumeRole"),
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
    assert permission_hint("PutRetentionPolicy") == (
        "grant logs:PutRetentionPolicy on the group to the role in use"
    )
